"""The seed's hour: a 10x spike held for an hour on the cold variant, ``python -m bench.hour``.

The spike benchmark (bench.spike) with a long hold, the dipguard variant only (no warm:
the valve, the database path and the caches all working), callers who return once the
population has called (so the hour is not all cache hits: a returning caller's answer is
long past fresh), and a sample of every worker's memory and file descriptors and of Redis
every 30 seconds. The report summarises the run in 5-minute slices and judges the hour:

* no slice after the first has p99, database reads/s or worker RSS more than 10% off the
  second slice's;
* file descriptors flat: no slice's highest count more than 10% (or 4) above the second's;
* every dip within the 2.5 s deadline, and no 5xx.

Only slices wholly inside the hold are judged; the first holds the baseline and the climb.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from bench.procs import ROOT
from bench.spike import DEADLINE_S, parse_args, run_benchmark

__all__ = ["judge", "main", "slice_rows"]

SLICE_S = 300.0
SAMPLE_EVERY_S = 30.0
DRIFT_SHARE = 0.10
FD_SLACK = 4
SOURCES = ("cache", "database", "stale", "degraded", "none")


def _sample_at(samples: list[dict[str, Any]], t: float) -> dict[str, Any] | None:
    """The last sample taken at or before ``t``."""
    taken = [s for s in samples if s["t"] <= t]
    return taken[-1] if taken else None


def slice_rows(
    variant: dict[str, Any], slice_s: float, hold: tuple[float, float]
) -> list[dict[str, Any]]:
    """One row per slice of the run: latency, reads, sources, and the samples at its end."""
    slices = variant["slices"]
    samples = variant.get("samples", [])
    rows: list[dict[str, Any]] = []
    for i, start in enumerate(slices["t"]):
        end = start + slice_s
        answered = sum(slices[f"src_{s}"][i] for s in (*SOURCES, "error"))
        if slices["offered"][i] == 0:
            continue
        sample = _sample_at(samples, end)
        workers = sample["workers"] if sample else []
        redis = sample["redis"] if sample else {}
        rows.append(
            {
                "slice": i,
                "fromS": start,
                "toS": end,
                "inHold": hold[0] <= start and end <= hold[1],
                "dips": slices["offered"][i],
                "p50Ms": slices["p50Ms"][i],
                "p99Ms": slices["p99Ms"][i],
                "maxMs": slices["maxMs"][i],
                "dbReadsPerS": round(slices["dbReads"][i] / slice_s, 1),
                "sourcesPct": {
                    s: round(100 * slices[f"src_{s}"][i] / answered, 1) if answered else None
                    for s in (*SOURCES, "error")
                },
                "workerRssMb": max((w["rssMb"] for w in workers), default=None),
                "workerFds": max((w["fds"] for w in workers), default=None),
                # Each worker's sockets to Redis, from the HTTP front, to the table: the most
                # any worker held.
                "workerSockets": {
                    name: max(w.get("sockets", {}).get(name, 0) for w in workers)
                    for name in ("redis", "http", "table")
                }
                if workers
                else None,
                "redisMb": redis.get("usedMemoryMb"),
                "redisKeys": redis.get("keys"),
            }
        )
    return rows


def _off(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return abs(value - reference) / reference


def judge(rows: list[dict[str, Any]], variant: dict[str, Any]) -> dict[str, Any]:
    """The hour's targets, against the second slice (the first judged one)."""
    held = [r for r in rows if r["inHold"]]
    checks: dict[str, bool] = {
        "allWithinDeadline": variant["withinDeadlinePctOfSent"] == 100.0,
        "zero5xx": variant["status5xx"] == 0
        and variant["timeouts"] == 0
        and variant["connectionErrors"] == 0,
    }
    worst: dict[str, float | None] = {}
    if len(held) >= 2:
        ref = held[0]
        for field, name in (
            ("p99Ms", "p99Within10Pct"),
            ("dbReadsPerS", "dbReadsWithin10Pct"),
            ("workerRssMb", "rssWithin10Pct"),
        ):
            offs = [_off(r[field], ref[field]) for r in held[1:]]
            known = [o for o in offs if o is not None]
            worst[field] = round(max(known), 3) if known else None
            checks[name] = len(known) == len(offs) and all(o <= DRIFT_SHARE for o in known)
        fds = [r["workerFds"] for r in held]
        if all(f is not None for f in fds):
            allowed = max(FD_SLACK, DRIFT_SHARE * fds[0])
            checks["fdsFlat"] = all(f - fds[0] <= allowed for f in fds[1:])
        else:
            checks["fdsFlat"] = False
    else:
        checks["enoughSlices"] = False
    return {"checks": checks, "worstOffSecondSlice": worst, "met": all(checks.values())}


def report_markdown(
    result: dict[str, Any], rows: list[dict[str, Any]], verdict: dict[str, Any]
) -> str:
    variant = result["variants"][0]
    cfg, machine = result["config"], result["machine"]
    lines = [
        "# The seed's hour: 10x held for an hour, cold variant",
        "",
        f"Run {result['startedAt']}, {result['seconds'] / 60:.0f} minutes. Machine: "
        f"{machine.get('nproc')} cores, {machine.get('cpu')}; Python {machine.get('python')}; "
        f"worker azure-functions-runtime {machine.get('worker')}; {machine.get('redis')}; "
        f"Azurite {machine.get('azurite')}. Commit {machine.get('commit')}"
        f"{' (with uncommitted app changes)' if machine.get('appFilesChanged') else ''}.",
        "",
        f"{cfg['customers']:,} customers who call again once every one has called; "
        f"{cfg['calls']:,} dips; baseline {cfg['baselineDipsPerS']:g}/s, 10x = "
        f"{cfg['baselineDipsPerS'] * cfg['factor']:g}/s; database budget (MAX_DB_QPS) "
        f"{cfg['maxDbQps']}/s, capacity {cfg['dbCapacityPerS']}/s; {cfg['appWorkers']} worker "
        "processes. Slices of "
        f"{result['hour']['sliceSeconds'] / 60:g} minutes from the schedule's start; samples "
        "at each slice's end.",
        "",
        f"**{'Met' if verdict['met'] else 'Not met'}**: "
        + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in verdict["checks"].items())
        + f". Every dip within {DEADLINE_S} s: {variant['withinDeadlinePctOfSent']}% of "
        f"{variant['sent']:,}; 5xx: {variant['status5xx']}; peak database reads in any 1 s: "
        f"{variant['db']['peakReadsIn1s']} (cap {variant['db']['cap']}).",
        "",
        "| slice | dips | p50 ms | p99 ms | max ms | db reads/s | cache | database | stale "
        "| degraded | none | worker RSS MB | worker fds (Redis/HTTP/table sockets) | Redis MB "
        "| Redis keys |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        src = r["sourcesPct"]
        mark = "" if r["inHold"] else " (not judged)"
        keys = "n/a" if r["redisKeys"] is None else f"{r['redisKeys']:,}"
        socks = r["workerSockets"]
        fds = f"{r['workerFds']}" + (
            f" ({socks['redis']}/{socks['http']}/{socks['table']})" if socks else ""
        )
        lines.append(
            f"| {r['fromS'] / 60:.0f}-{r['toS'] / 60:.0f} min{mark} | {r['dips']:,} | "
            f"{r['p50Ms']} | {r['p99Ms']} | {r['maxMs']} | {r['dbReadsPerS']} | "
            + " | ".join(f"{src[s]}%" for s in SOURCES)
            + f" | {r['workerRssMb']} | {fds} | {r['redisMb']} | {keys} |"
        )
    worst = verdict["worstOffSecondSlice"]
    lines += [
        "",
        "Largest difference from the second slice: "
        + ", ".join(f"{k} {v:.1%}" if v is not None else f"{k} n/a" for k, v in worst.items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hour", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=60.0, help="the hold (default 60)")
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument(
        "--slice-seconds", type=float, default=SLICE_S, help="slice length (default 300)"
    )
    parser.add_argument("--sample-seconds", type=float, default=SAMPLE_EVERY_S, help="default 30")
    parser.add_argument("--azurite-port", type=int, default=10002)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hour")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    spike_argv = [
        *("--only", "dipguard", "--callers-return"),
        *("--hold", str(args.minutes * 60), "--customers", str(args.customers)),
        *("--sample-every", str(args.sample_seconds), "--slice", str(args.slice_seconds)),
        *("--azurite-port", str(args.azurite_port), "--out", str(args.out.parent)),
    ]
    if args.no_progress:
        spike_argv.append("--no-progress")
    cfg = parse_args(spike_argv)
    result = asyncio.run(run_benchmark(cfg))
    variant = result["variants"][0]
    profile = cfg.main_profile()
    rows = slice_rows(variant, args.slice_seconds, profile.span("spike"))
    verdict = judge(rows, variant)
    result["hour"] = {"sliceSeconds": args.slice_seconds, "slices": rows, "verdict": verdict}
    # The 1-second timeline of an hour is the bulk of the spike result; the slices carry it.
    variant.pop("timeline", None)
    text = report_markdown(result, rows, verdict)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(text)
    return 0 if verdict["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
