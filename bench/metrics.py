"""From raw timings to the numbers the report shows: percentiles, windows, recovery."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from bench.driver import CAP_REJECTED, CONN_ERROR, TIMEOUT, Driven
from bench.stats import peak_in_window, percentile
from bench.traffic import Arrival, Profile

__all__ = ["known_callers", "peak_in_window", "percentile", "recovery", "summarise", "timeline"]

SOURCES = ("database", "cache", "stale", "degraded", "none")


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def latency_stats(latencies: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(latencies),
        "p50Ms": _ms(percentile(latencies, 50)),
        "p95Ms": _ms(percentile(latencies, 95)),
        "p99Ms": _ms(percentile(latencies, 99)),
        "maxMs": _ms(max(latencies) if latencies else None),
    }


# Answers that carry the caller's own record; "degraded" and "none" do not.
REAL_SOURCES = ("cache", "database", "stale")


def known_callers(run: Driven, schedule: Sequence[Arrival], calls: Iterable[int]) -> dict[str, Any]:
    """Of the calls from customers the table holds, how many got their own record back.

    A call the app did not answer 200 (or a Genesys cap rejected), or answered "no
    customer", counts as not real: a known caller told "no customer" was denied."""
    known = [i for i in calls if schedule[i].kind != "stranger"]
    real = sum(
        1 for i in known if run.status[i] == 200 and run.source[i] in REAL_SOURCES and run.found[i]
    )
    return {
        "calls": len(known),
        "realAnswers": real,
        "realPct": round(100 * real / len(known), 3) if known else None,
    }


def summarise(
    run: Driven, schedule: Sequence[Arrival], profile: Profile, *, deadline_s: float
) -> dict[str, Any]:
    n = len(schedule)
    statuses = Counter(run.status)
    sent = [i for i in range(n) if run.status[i] != CAP_REJECTED]
    answered = [i for i in sent if run.status[i] > 0]
    # A call with no answer counts at the time it gave up, so percentiles cannot flatter.
    lat = [run.latency[i] for i in sent]
    spike_lo, spike_hi = profile.span("spike")
    in_spike = [i for i in sent if spike_lo <= schedule[i].t < spike_hi]
    on_time = sum(1 for i in sent if run.status[i] == 200 and run.latency[i] <= deadline_s)
    sources = Counter(run.source[i] for i in answered if run.status[i] == 200)
    by_kind: dict[str, dict[str, int]] = {}
    for i in answered:
        kind = by_kind.setdefault(schedule[i].kind, {})
        kind[run.source[i] or str(run.status[i])] = (
            kind.get(run.source[i] or str(run.status[i]), 0) + 1
        )
    spike_lat = [run.latency[i] for i in in_spike]
    by_source: dict[str, list[float]] = {}
    for i in in_spike:
        if run.status[i] == 200:
            by_source.setdefault(run.source[i], []).append(run.latency[i])
    spike_mean = sum(spike_lat) / len(spike_lat) if spike_lat else None
    spike_calls = [i for i in range(n) if spike_lo <= schedule[i].t < spike_hi]
    # Before the spike: the same app at the baseline rate, the latency a spike is held to.
    base_lo, base_hi = profile.span("baseline")
    base_lat = [run.latency[i] for i in sent if base_lo <= schedule[i].t < base_hi]
    spike_ok = sum(1 for i in spike_calls if run.status[i] == 200)
    return {
        "calls": n,
        "sent": len(sent),
        "answered": len(answered),
        "status2xx": sum(v for k, v in statuses.items() if 200 <= k < 300),
        "status4xx": sum(v for k, v in statuses.items() if 400 <= k < 500),
        "status5xx": sum(v for k, v in statuses.items() if k >= 500),
        "timeouts": statuses.get(TIMEOUT, 0),
        "connectionErrors": statuses.get(CONN_ERROR, 0),
        "genesysRejected": statuses.get(CAP_REJECTED, 0),
        # Over every call: one the Genesys cap rejected was not answered either.
        "withinDeadlinePct": round(100 * on_time / n, 3) if n else None,
        # Over the calls that reached the app: what the app itself is judged on.
        "withinDeadlinePctOfSent": round(100 * on_time / len(sent), 3) if sent else None,
        "latency": latency_stats(lat),
        "spikeLatency": latency_stats(spike_lat),
        "spikeLatencyBySource": {k: latency_stats(v) for k, v in sorted(by_source.items())},
        "baselineLatency": latency_stats(base_lat),
        "knownCallers": known_callers(run, schedule, range(n)),
        "knownCallersAtSpike": known_callers(run, schedule, spike_calls),
        "sources": {s: sources.get(s, 0) for s in SOURCES},
        "sourcesByCaller": by_kind,
        # Offered and answered (HTTP 200) at the peak; with a Genesys concurrency cap, the
        # answered rate is the dips/s that cap allows.
        "spikeOfferedPerS": round(len(spike_calls) / max(spike_hi - spike_lo, 1e-6), 1),
        "spikeAnsweredPerS": round(spike_ok / max(spike_hi - spike_lo, 1e-6), 1),
        # Little's law: the dips/s a 30-slot Genesys org could keep up at this latency.
        "genesys30SlotDipsPerS": (round(30 / spike_mean, 1) if spike_mean else None),
        "driverLagP99Ms": _ms(percentile(run.lag, 99)),
        "driverLagMaxMs": _ms(max(run.lag) if run.lag else None),
        "peakInflight": run.peak_inflight,
        "errorKinds": run.error_kinds,
    }


def timeline(
    run: Driven,
    schedule: Sequence[Arrival],
    seconds: float,
    reads: Sequence[float],
    served: Sequence[float],
    samples: Sequence[Sequence[float]],
    bucket: float = 1.0,
) -> dict[str, list[Any]]:
    """Per-bucket series, times in seconds from the start of the schedule."""
    count = math.ceil(seconds / bucket) + 6
    lat: list[list[float]] = [[] for _ in range(count)]
    src: dict[str, list[int]] = {s: [0] * count for s in (*SOURCES, "error")}
    offered = [0] * count
    for i, arrival in enumerate(schedule):
        b = min(int(arrival.t / bucket), count - 1)
        offered[b] += 1
        if run.status[i] == CAP_REJECTED:
            continue
        lat[b].append(run.latency[i])
        key = run.source[i] if run.status[i] == 200 and run.source[i] in src else "error"
        src[key][b] += 1

    def per_bucket(times: Sequence[float]) -> list[int]:
        out = [0] * count
        for t in times:
            b = int(t / bucket)
            if 0 <= b < count:
                out[b] += 1
        return out

    queue = [0] * count
    for t, waiting, _ in samples:
        b = int(t / bucket)
        if 0 <= b < count:
            queue[b] = max(queue[b], int(waiting))
    return {
        "t": [round(b * bucket, 3) for b in range(count)],
        "offered": offered,
        "p50Ms": [_ms(percentile(x, 50)) for x in lat],
        "p95Ms": [_ms(percentile(x, 95)) for x in lat],
        "p99Ms": [_ms(percentile(x, 99)) for x in lat],
        "maxMs": [_ms(max(x)) if x else None for x in lat],
        **{f"src_{k}": v for k, v in src.items()},
        "dbReads": per_bucket(reads),
        "dbServed": per_bucket(served),
        "dbQueueMax": queue,
    }


def recovery(
    run: Driven,
    schedule: Sequence[Arrival],
    fault: tuple[float, float],
    *,
    spike_start: float,
    spike_end: float,
    share: float = 0.8,
    horizon: float = 20.0,
) -> dict[str, Any]:
    """How long after a fault clears until answers come from the database or the cache again.

    Recovered: the first 1-second window, sliding in 0.1 s steps from the moment the fault
    cleared, whose database + cache answers reach ``share`` of their rate in the 5 seconds
    before the fault (at the peak). The clock runs from the fault clearing to that window's start.
    ``goodPerSAfter`` is their rate from the end of that window to the end of the peak (None
    when less than a second of the peak is left): one good window is not a recovery if the
    rate falls back after it.
    """
    start, end = fault
    good = sorted(
        schedule[i].t
        for i in range(len(schedule))
        if run.status[i] == 200 and run.source[i] in {"database", "cache"}
    )
    # The reference: the peak's own rate before the fault, never the ramp below it.
    ref_from = max(spike_start, start - 5.0)
    before = [t for t in good if ref_from <= t < start]
    baseline = len(before) / max(start - ref_from, 1e-6)
    target = share * baseline

    def first_after(source: str) -> float | None:
        return next(
            (
                schedule[i].t - end
                for i in range(len(schedule))
                if schedule[i].t >= end and run.status[i] == 200 and run.source[i] == source
            ),
            None,
        )

    first_db, first_cache = first_after("database"), first_after("cache")
    during = [t for t in good if start <= t < end]
    result: dict[str, Any] = {
        "faultStartS": round(start, 2),
        "faultEndS": round(end, 2),
        "goodPerSBefore": round(baseline, 1),
        "goodPerSDuring": round(len(during) / max(end - start, 1e-6), 1),
        "firstDatabaseAfterS": None if first_db is None else round(first_db, 2),
        "firstCacheAfterS": None if first_cache is None else round(first_cache, 2),
        "recoverySeconds": None,
        "goodPerSAfter": None,
    }
    steps = round(horizon / 0.1)
    for k in range(steps):
        lo = end + k * 0.1
        count = bisect.bisect_left(good, lo + 1.0) - bisect.bisect_left(good, lo)
        if count >= target and baseline > 0:
            result["recoverySeconds"] = round(k * 0.1, 1)
            # From the end of that window: what follows it, not the climb into it.
            held_from = lo + 1.0
            after = [t for t in good if held_from <= t < spike_end]
            result["goodPerSAfter"] = (
                round(len(after) / (spike_end - held_from), 1)
                if spike_end - held_from >= 1.0
                else None
            )
            break
    return result
