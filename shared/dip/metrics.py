"""The dip's OpenTelemetry metrics: one place for every name, attribute and allowed value.

Application Insights samples log lines (host.json keeps about 20 items/s per host), so the
per-dip log line cannot be counted at 500 dips/s. Metrics are pre-aggregated in the worker
(Azure Monitor's exporter sends one sum per attribute set per minute) and never sampled.
They land in the ``customMetrics`` table: ``name``, ``value``, ``valueCount``, ``valueSum``,
``valueMin``, ``valueMax``, the attributes in ``customDimensions``.

Azure Monitor keeps a histogram only as count/sum/min/max, never its buckets, so each dip is
also counted under ``latency_le``, the upper bound of its latency bucket: the workbook
derives p50/p95/p99 by source from those counts.

The workbook and alert queries are written against these names: rename nothing without
changing them too.

Recording never raises into a dip and is kept cheap: attribute sets are built once, counters
count in process and reach the SDK once per collection (see DipMetrics).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import (
    CallbackOptions,
    Counter,
    MeterProvider,
    NoOpMeterProvider,
    Observation,
)

__all__ = [
    "ATTR_KEY_KIND",
    "ATTR_LATENCY_LE",
    "ATTR_OUTCOME",
    "ATTR_REASON",
    "ATTR_SOURCE",
    "ATTR_VALVE",
    "DB_INFLIGHT",
    "DB_OUTCOMES",
    "DB_READS",
    "DB_READ_DURATION",
    "DIPS",
    "DIP_DURATION",
    "KEY_KINDS",
    "LATENCY_BOUNDS_MS",
    "LATENCY_LE",
    "LOOKUP_KEY_SECRETS",
    "METER_NAME",
    "READMODEL_AGE",
    "SHEDS",
    "SHED_REASONS",
    "SOURCES",
    "VALVES",
    "VALVE_DECISIONS",
    "VALVE_OUTCOMES",
    "DipMetrics",
    "db_outcome",
    "latency_le",
    "shed_reason",
]

log = logging.getLogger("dipguard.metrics")

METER_NAME = "dipguard"

# --- instruments: (name, kind, unit, attributes) ---

# Counter {dip}: every answered dip. source, key_kind, latency_le.
DIPS = "dipguard.dips"
# Counter {dip}: dips answered stale or degraded, by why. reason.
SHEDS = "dipguard.sheds"
# Histogram ms: how long each dip took to answer. source.
DIP_DURATION = "dipguard.dip.duration"
# Counter {decision}: every decision of the fleet valve or its local fallback. outcome, valve.
VALVE_DECISIONS = "dipguard.valve.decisions"
# Counter {read}: every Table point read the dip path starts. outcome.
DB_READS = "dipguard.db.reads"
# Histogram ms: how long each of those reads took. outcome.
DB_READ_DURATION = "dipguard.db.read.duration"
# ObservableGauge {read}: this worker process's Table reads in flight.
DB_INFLIGHT = "dipguard.db.inflight"
# ObservableGauge s: age of the last complete warm, as this worker process last read it.
READMODEL_AGE = "dipguard.readmodel.age"
# How many lookup key secrets the process holds: 2 during a rotation. Each instance reports
# its own, so a rotation's reload can wait until every instance reports 2.
LOOKUP_KEY_SECRETS = "dipguard.lookup_keys.secrets"

# --- attribute names ---

ATTR_SOURCE = "source"
ATTR_KEY_KIND = "key_kind"
ATTR_LATENCY_LE = "latency_le"
ATTR_REASON = "reason"
ATTR_OUTCOME = "outcome"
ATTR_VALVE = "valve"

# --- attribute values ---

# source: exactly the answer's source (shared.dip.contract.Source).
SOURCES = ("database", "cache", "stale", "degraded", "none")
# key_kind: the lookup key's kind as shared.dip.customers.KeyKind names it; "none" when the
# request had no usable key.
KEY_KINDS = ("ani", "customerId", "none")
# latency_le: the upper bound, in ms, of the dip's latency bucket; a dip of exactly a bound
# counts in that bound's bucket (Prometheus' "le").
LATENCY_BOUNDS_MS: tuple[float, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500)
LATENCY_LE = (*(f"{bound:g}" for bound in LATENCY_BOUNDS_MS), "+Inf")
# reason of dipguard.sheds: why a dip got no database or cache answer.
SHED_REASONS = (
    "budget",  # the valve said no: the fleet's read budget is spent
    "inflight",  # no in-flight slot for an admitted read in time
    "deadline",  # the deadline ran out first
    "database_error",  # the Table read failed
    "database_timeout",  # the Table read timed out
    "internal_error",  # a bug: the dip answered its fallback
)
# outcome/valve of dipguard.valve.decisions; valve "local" is the per-process fallback
# budget while the Redis breaker is open (or Redis failed this call).
VALVE_OUTCOMES = ("admitted", "shed")
VALVES = ("fleet", "local")
# outcome of dipguard.db.reads and dipguard.db.read.duration.
DB_OUTCOMES = ("ok", "not_found", "error", "timeout")

# Only these answers can have been shed; a dip answered otherwise never counts as one.
_FALLBACK_SOURCES = frozenset({"stale", "degraded"})
_PLAIN_REASONS = frozenset({"budget", "inflight", "deadline", "internal_error"})
_DATABASE_REASON = "database: "

type Attributes = dict[str, str]


def latency_le(latency_ms: float) -> str:
    """The latency_le bucket of a dip that took ``latency_ms``."""
    return LATENCY_LE[bisect_left(LATENCY_BOUNDS_MS, latency_ms)]


def _is_timeout(name: str) -> bool:
    # DatabaseUnavailable carries the failing exception's class name: TimeoutError (the
    # read's own deadline), azure-core's ServiceRequestTimeoutError and
    # ServiceResponseTimeoutError, aiohttp's ServerTimeoutError.
    return name.endswith("TimeoutError")


def db_outcome(exc: BaseException) -> str:
    """timeout or error: the outcome of a Table read that raised ``exc``."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    # DatabaseUnavailable's message is the name of the exception it stands for.
    return "timeout" if _is_timeout(str(exc)) or _is_timeout(type(exc).__name__) else "error"


def shed_reason(reason: str | None) -> str | None:
    """The dip's shed or fallback reason (``DipLog.reason``) as one of SHED_REASONS.

    None for a dip with no reason, and for a reason that is not a fallback's
    ("absent_from_read_model" answers from the cache). A fallback for a reason this does
    not know is counted as internal_error, so the reasons always add up to the stale and
    degraded answers.
    """
    if reason is None or reason == "absent_from_read_model":
        return None
    if reason in _PLAIN_REASONS:
        return reason
    if reason.startswith(_DATABASE_REASON):
        failed = reason.removeprefix(_DATABASE_REASON)
        return "database_timeout" if _is_timeout(failed) else "database_error"
    return "internal_error"


def _attrs(**values: str) -> Attributes:
    return values


class _Tally[K]:
    """A Counter's adds, kept as plain integers in process and handed to the Counter in
    one add per attribute set when the SDK collects (DipMetrics._flush).

    An SDK Counter.add costs 6 to 10 microseconds (the measurement's attributes are
    copied, cleaned and hashed each time); an integer in a dict costs a tenth of one. What
    the Counter exports is the same: a sum per attribute set per collection.

    Only the dip's event loop writes ``counts`` (cumulative, never reset) and only the
    collection reads it, keeping what it has added in ``_added``, so no increment is lost
    to the other thread.
    """

    def __init__(self, counter: Counter, attributes: dict[K, Attributes]) -> None:
        self.counter = counter
        self.attributes = attributes
        self.counts: dict[K, int] = dict.fromkeys(attributes, 0)
        self._added: dict[K, int] = {}

    def flush(self) -> None:
        for key, total in list(self.counts.items()):  # one C call: safe from the loop
            done = self._added.get(key, 0)
            if total > done:
                self.counter.add(total - done, self.attributes[key])
                self._added[key] = total


class DipMetrics:
    """The dip's instruments on one MeterProvider, with every attribute set built once.

    Pass the SDK's MeterProvider (Runtime.meter_provider); without one, ``DipMetrics()``
    records into OpenTelemetry's no-op provider.

    The counters are OpenTelemetry Counters, fed from in-process tallies when the SDK
    collects (every 60 s for Azure Monitor, at once for an InMemoryMetricReader): the
    first thing the collection does is call the gauges' callbacks, and the first of them
    adds what was counted since the last collection. The histograms record each dip as it
    is answered (an SDK record per dip is their floor: each must count every value).
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        provider = meter_provider if meter_provider is not None else NoOpMeterProvider()
        meter = provider.get_meter(METER_NAME)
        bounds = list(LATENCY_BOUNDS_MS)
        self._dip_duration = meter.create_histogram(
            DIP_DURATION,
            unit="ms",
            description="Time to answer a dip",
            explicit_bucket_boundaries_advisory=bounds,
        )
        self._db_duration = meter.create_histogram(
            DB_READ_DURATION,
            unit="ms",
            description="Time of a Table point read",
            explicit_bucket_boundaries_advisory=bounds,
        )
        self._dips = _Tally(
            meter.create_counter(DIPS, unit="{dip}", description="Dips answered"),
            {
                (source, kind, bucket): _attrs(source=source, key_kind=kind, latency_le=le)
                for source in SOURCES
                for kind in KEY_KINDS
                for bucket, le in enumerate(LATENCY_LE)
            },
        )
        self._sheds = _Tally(
            meter.create_counter(
                SHEDS, unit="{dip}", description="Dips answered stale or degraded, by reason"
            ),
            {reason: _attrs(reason=reason) for reason in SHED_REASONS},
        )
        self._valve = _Tally(
            meter.create_counter(VALVE_DECISIONS, unit="{decision}", description="Valve decisions"),
            {
                (valve, admitted): _attrs(outcome="admitted" if admitted else "shed", valve=valve)
                for valve in VALVES
                for admitted in (True, False)
            },
        )
        self._db_reads = _Tally(
            meter.create_counter(
                DB_READS, unit="{read}", description="Table point reads started by dips"
            ),
            {outcome: _attrs(outcome=outcome) for outcome in DB_OUTCOMES},
        )
        self._tallies: tuple[_Tally[Any], ...] = (
            self._dips,
            self._sheds,
            self._valve,
            self._db_reads,
        )
        self._source_attrs = {source: _attrs(source=source) for source in SOURCES}
        self._db_attrs = self._db_reads.attributes
        self._inflight: Callable[[], int] | None = None
        self._readmodel_age: Callable[[], float | None] | None = None
        self._key_secrets: Callable[[], int] | None = None
        # Created last: their callbacks use everything above. The first one flushes.
        meter.create_observable_gauge(
            DB_INFLIGHT,
            callbacks=[self._observe_inflight],
            unit="{read}",
            description="Table reads in flight in this worker process",
        )
        meter.create_observable_gauge(
            READMODEL_AGE,
            callbacks=[self._observe_readmodel_age],
            unit="s",
            description="Age of the last complete warm this worker process has read",
        )
        meter.create_observable_gauge(
            LOOKUP_KEY_SECRETS,
            callbacks=[self._observe_key_secrets],
            unit="{secret}",
            description="Lookup key secrets this worker process holds (2 during a rotation)",
        )

    # --- recording, on the dip path: never raises ---

    def dip(self, source: str, key_kind: str, latency_ms: float, reason: str | None) -> None:
        """One answered dip: counted by source, key kind and latency bucket, timed by
        source, and counted as shed when it was answered stale or degraded."""
        try:
            bucket = bisect_left(LATENCY_BOUNDS_MS, latency_ms)
            counts = self._dips.counts
            key = (source, key_kind, bucket)
            if key in counts:
                counts[key] += 1
            else:  # a kind of key added since; bounded by the code, not by callers
                self._dips.attributes[key] = _attrs(
                    source=source, key_kind=key_kind, latency_le=LATENCY_LE[bucket]
                )
                counts[key] = 1
            attrs = self._source_attrs.get(source)
            if attrs is None:
                attrs = self._source_attrs[source] = _attrs(source=source)
            self._dip_duration.record(latency_ms, attrs)
            if source in _FALLBACK_SOURCES:
                why = shed_reason(reason)
                if why is not None:
                    self._sheds.counts[why] += 1
        except Exception:
            log.debug("recording a dip's metrics failed", exc_info=True)

    def valve_decision(self, admitted: bool, *, local: bool) -> None:
        """One decision of the fleet valve, or of the local budget standing in for it."""
        try:
            self._valve.counts["local" if local else "fleet", admitted] += 1
        except Exception:
            log.debug("recording a valve decision failed", exc_info=True)

    def db_read(self, outcome: str, duration_ms: float) -> None:
        """One Table point read the dip path started, by outcome (DB_OUTCOMES)."""
        try:
            if outcome not in self._db_attrs:
                outcome = "error"
            self._db_reads.counts[outcome] += 1
            self._db_duration.record(duration_ms, self._db_attrs[outcome])
        except Exception:
            log.debug("recording a database read failed", exc_info=True)

    def _flush(self) -> None:
        for tally in self._tallies:
            try:
                tally.flush()
            except Exception:
                log.debug("adding counted dips to a counter failed", exc_info=True)

    # --- what the gauges observe: read when the SDK collects, never on the dip path ---

    def watch_inflight(self, reads_in_flight: Callable[[], int]) -> None:
        """dipguard.db.inflight reports what this returns (the DipService's count)."""
        self._inflight = reads_in_flight

    def watch_readmodel_age(self, age_s: Callable[[], float | None]) -> None:
        """dipguard.readmodel.age reports what this returns, nothing while it is None. It
        runs on the SDK's collection thread, so it must answer from memory."""
        self._readmodel_age = age_s

    def watch_lookup_key_secrets(self, count: Callable[[], int]) -> None:
        """dipguard.lookup_keys.secrets reports what this returns."""
        self._key_secrets = count

    def _observe_key_secrets(self, options: CallbackOptions) -> Iterable[Observation]:
        return _observe(self._key_secrets, "the lookup key secrets")

    def _observe_inflight(self, options: CallbackOptions) -> Iterable[Observation]:
        self._flush()
        return _observe(self._inflight, "the reads in flight")

    def _observe_readmodel_age(self, options: CallbackOptions) -> Iterable[Observation]:
        return _observe(self._readmodel_age, "the read model's age")


def _observe(source: Callable[[], float | None] | None, what: str) -> Iterable[Observation]:
    """What a gauge's source reports: nothing while there is no source or it answers None,
    and nothing (logged at DEBUG) when it fails, since the SDK's collection must go on."""
    if source is None:
        return ()
    try:
        value = source()
    except Exception:
        log.debug("observing %s failed", what, exc_info=True)
        return ()
    return () if value is None else (Observation(value),)
