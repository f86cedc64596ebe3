"""The capacity model behind ``python -m tools.plan``: pure arithmetic, no I/O.

Every figure is a formula over a few inputs, and each result keeps its formula as text, so
the plan can print why it says what it says. The inputs that are measured rather than
chosen (an instance's CPU per dip, the dip's latency) come from the spike benchmark's last
full run (``Measured.from_benchmark``), and the CPU per dip by how the dip is answered from
``python -m bench.cpu``'s committed report (``CpuBySource``, mixed by ``cpu_mix``); the
rest are the operator's.

The facts the model rests on:
- HTTP scale-out on Elastic Premium adds at most one instance per second
  (learn.microsoft.com/azure/azure-functions/event-driven-scaling), and a new instance
  serves only after it has started and warmed up (``warmup_s``, an input: Microsoft gives
  no figure). A pre-warmed instance serves at once.
- Genesys runs at most its org's concurrency limit of data actions at a time (30 by default,
  help.mypurecloud.com "data actions integration performance analysis"), so by Little's law
  its throughput is that limit divided by a dip's round trip.
- The valve admits ``MAX_DB_QPS`` reads per window of 1 s plus ``VALVE_GUARD_MS``, and each
  worker process holds at most its in-flight cap of reads (Little's law again).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.dip.settings import inflight_cap_for
from shared.scale.schedule import ALWAYS_READY_MAX, MAX_BURST_LIMIT_DEFAULT

__all__ = [
    "BENCHMARK_VARIANTS",
    "BYTES_PER_LOOKUP_KEY",
    "INSTANCE_SIZES",
    "KEYS_PER_CUSTOMER",
    "REDIS_SKUS",
    "TOLERANCES",
    "Comparison",
    "CpuBySource",
    "Figure",
    "Inputs",
    "Measured",
    "Plan",
    "RampStep",
    "Tolerance",
    "always_ready_for",
    "benchmark_inputs",
    "compare_with_benchmark",
    "cpu_mix",
    "instances_for",
    "measured_at_peak",
    "per_instance_dips",
    "plan",
    "predicted_at_peak",
    "redis_bytes",
    "redis_sku",
    "unannounced_ramp",
]

# Elastic Premium sizes: vCPUs and memory in GB (functions-premium-plan, "Available
# instance SKUs"). Bicep runs one Python worker process per vCPU.
INSTANCE_SIZES: Mapping[str, tuple[int, float]] = {
    "EP1": (1, 3.5),
    "EP2": (2, 7.0),
    "EP3": (4, 14.0),
}

# Azure Managed Redis Balanced SKUs and their memory in GB (learn.microsoft.com/azure/redis/
# overview, "Size (GB)"); bicep/main.bicep's redisSkuName description quotes the same list.
REDIS_SKUS: Sequence[tuple[str, float]] = (
    ("Balanced_B0", 0.5),
    ("Balanced_B1", 1.0),
    ("Balanced_B3", 3.0),
    ("Balanced_B5", 6.0),
    ("Balanced_B10", 12.0),
    ("Balanced_B20", 24.0),
    ("Balanced_B50", 60.0),
)
# SKU memory over the estimate: a SKU keeps about 20% for replication and other work, and
# the customer table grows.
REDIS_HEADROOM = 2.0
# Measured by python -m bench.memory on redis-server 7.0 (docs/readmodel.md): one cached
# answer per lookup key; and the benchmark population's lookup keys per customer (55% have
# one number, 45% two, plus the customer id).
BYTES_PER_LOOKUP_KEY = 319.3
KEYS_PER_CUSTOMER = 2.45
# The read model's Bloom filters (shared/dip/readmodel.py) take 16 bits per key with room to
# double, for at least a million keys, in power-of-two partitions: at most 8 bytes per key.
_FILTER_BYTES_PER_KEY = 8.0
_FILTER_MIN_KEYS = 1_000_000


@dataclass(frozen=True)
class Measured:
    """What one instance did in a measured run, and where the figures came from."""

    cpu_ms_per_dip: float  # app CPU per dip answered, all worker processes together
    latency_ms: float  # a dip's p95 inside the app at the peak
    source: str

    @classmethod
    def from_benchmark(cls, result: Mapping[str, Any], variant: str = "dipguard") -> Measured:
        """The figures of one variant of a spike benchmark result (bench.spike's JSON).

        The cold ``dipguard`` variant by default: its dips read the database, which costs
        more CPU per dip than a warm read model's, so planning with it errs towards more
        instances.
        """
        runs = {r["name"]: r for r in result["variants"]}
        if variant not in runs:
            raise ValueError(f"the benchmark result has no {variant!r} run")
        run = runs[variant]
        cpu = run.get("appCpuMsPerDip")
        if not cpu:
            raise ValueError(f"the benchmark's {variant!r} run has no appCpuMsPerDip")
        machine = result.get("machine", {})
        where = (
            f"spike benchmark, {'quick' if result.get('quick') else 'full'} run of "
            f"{machine.get('commit', '?')} on {machine.get('nproc', '?')} vCPU, "
            f"variant {variant}"
        )
        return cls(float(cpu), float(run["spikeLatency"]["p95Ms"]), where)


@dataclass(frozen=True)
class CpuBySource:
    """App CPU per dip (ms) by how the dip was answered: bench.cpu's "real app" medians, the
    app through the dev host and Microsoft's worker, so the platform's part of a dip is in
    each figure, as it is on an instance."""

    cached: float  # a known caller's answer from Redis
    absent: float  # "no customer" from the read model: a miss, then the filter
    database: float  # a miss, the valve, a Table point read, the copy written back
    source: str

    @classmethod
    def from_report(cls, result: Mapping[str, Any]) -> CpuBySource:
        """The figures of a bench.cpu result (its JSON)."""
        answers = result["answers"]
        ms = {a: float(answers[a]["medianCpuUsPerDip"]["real app"]) / 1000 for a in _CPU_ANSWERS}
        machine = result.get("machine", {})
        where = (
            f"bench.cpu report of {machine.get('commit', '?')} on {machine.get('nproc', '?')} "
            f"vCPU (the real app, medians of {result['config']['rounds']} rounds)"
        )
        return cls(ms["cached"], ms["absent"], ms["database"], where)


_CPU_ANSWERS = ("cached", "absent", "database")


def _peak_dips(inputs: Inputs) -> float:
    """Dips/s at the spike's peak."""
    return inputs.calls_per_minute / 60 * inputs.dips_per_call * inputs.spike_factor


def _valve_admits(inputs: Inputs) -> float:
    """Reads/s the valve admits, sustained: MAX_DB_QPS over its window and guard."""
    return inputs.db_safe_qps / (1 + inputs.valve_guard_ms / 1000)


def _reads_at_peak(inputs: Inputs, misses: float) -> float:
    """Database reads/s at the peak: the misses, as far as the valve and the database let."""
    limits = [_valve_admits(inputs)]
    if inputs.db_capacity_qps is not None:
        limits.append(inputs.db_capacity_qps)
    return min(misses, *limits)


def cpu_mix(inputs: Inputs, by_source: CpuBySource) -> tuple[float, str]:
    """CPU per dip at the peak (ms), weighted by how the peak's dips are answered, and how.

    Warm: customers added since the warm read the database, strangers are answered absent
    by the read model, everyone else from Redis. Cold: repeat callers from Redis; of the
    rest, what the valve admits (and the database serves) reads the database, and what it
    sheds costs what an absent answer does (a miss and one more Redis round trip, the
    valve's).
    """
    peak = _peak_dips(inputs)
    if inputs.warm:
        database = inputs.unwarmed_share
        absent = min(inputs.stranger_share, 1 - database)
        how = "warm: database = customers added since the warm, absent = strangers"
    else:
        database = _reads_at_peak(inputs, peak * (1 - inputs.repeat_share)) / peak
        absent = (1 - inputs.repeat_share) - database
        how = "cold: database = reads the valve admits, shed dips priced as absent"
    cached = max(0.0, 1 - database - absent)
    ms = cached * by_source.cached + absent * by_source.absent + database * by_source.database
    text = (
        f"{by_source.source}; cached {by_source.cached:.2f} ms x {cached:.0%}, absent "
        f"{by_source.absent:.2f} ms x {absent:.0%}, database {by_source.database:.2f} ms x "
        f"{database:.0%} ({how})"
    )
    return ms, text


@dataclass(frozen=True)
class Inputs:
    """The operator's inputs; defaults are the values a new deployment starts from."""

    calls_per_minute: float  # busy-hour inbound calls per minute before a spike
    measured: Measured
    spike_factor: float = 10.0
    dips_per_call: float = 1.0
    genesys_concurrency: int = 30  # the org's data action concurrency limit (default 30)
    action_timeout_s: float = 3.0
    size: str = "EP1"
    # Plan instances to this share of their CPU; the rest absorbs bursts and noisy neighbours.
    utilization: float = 0.6
    # Genesys to API Management to the app and back, outside the app's own latency.
    network_ms: float = 40.0
    db_safe_qps: int = 200  # reads per second the customer table takes safely: MAX_DB_QPS
    db_latency_ms: float = 40.0
    db_capacity_qps: float | None = None  # what the database serves at most, if known
    valve_guard_ms: int = 100
    customers: int = 100_000
    keys_per_customer: float = KEYS_PER_CUSTOMER
    warm: bool = True  # the read model is warmed before the spike
    # Cold only: dips whose key an earlier dip cached within CACHE_TTL_SECONDS.
    repeat_share: float = 0.0
    # Warm only: dips for customers added since the last warm (each needs a read).
    unwarmed_share: float = 0.0
    # Dips for numbers no customer has (bench/traffic.py's share).
    stranger_share: float = 0.07
    current_always_ready: int = 1
    pre_warmed: int = 1
    warmup_s: float = 30.0
    ramp_s: float = 150.0  # an unannounced spike reaches its peak in this long
    max_burst_limit: int = MAX_BURST_LIMIT_DEFAULT

    def __post_init__(self) -> None:
        if self.size not in INSTANCE_SIZES:
            raise ValueError(f"size: expected one of {', '.join(INSTANCE_SIZES)}, got {self.size}")
        for name in ("calls_per_minute", "spike_factor", "dips_per_call", "action_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be above 0")
        if not 0 < self.utilization <= 1:
            raise ValueError("utilization: must be above 0 and at most 1")
        for name in ("repeat_share", "unwarmed_share", "stranger_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be from 0 to 1")
        if self.genesys_concurrency < 1 or self.db_safe_qps < 1:
            raise ValueError("genesys_concurrency and db_safe_qps must be at least 1")

    @property
    def vcpus(self) -> int:
        return INSTANCE_SIZES[self.size][0]


@dataclass(frozen=True)
class Figure:
    """One figure of the plan: its value, unit, and the formula that gave it."""

    name: str
    value: float | str
    unit: str
    formula: str
    note: str = ""


@dataclass(frozen=True)
class RampStep:
    """One second of an unannounced spike's ramp."""

    t: int
    demand: float  # dips/s offered
    ready: int  # instances serving
    allocated: int  # instances serving or warming up
    over: float  # dips/s above what the ready instances can run


@dataclass(frozen=True)
class Plan:
    inputs: Inputs
    figures: dict[str, Figure] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ramp: list[RampStep] = field(default_factory=list)

    def value(self, key: str) -> float:
        value = self.figures[key].value
        if isinstance(value, str):
            raise TypeError(f"{key} is not a number: {value}")
        return value


def per_instance_dips(inputs: Inputs, utilization: float | None = None) -> float:
    """Dips per second one instance runs at ``utilization`` of its vCPUs."""
    share = inputs.utilization if utilization is None else utilization
    return inputs.vcpus * 1000.0 / inputs.measured.cpu_ms_per_dip * share


def instances_for(dips_per_s: float, per_instance: float) -> int:
    return max(1, math.ceil(dips_per_s / per_instance - 1e-9))


def always_ready_for(instances: int, pre_warmed: int) -> int:
    """Always-ready that, with the pre-warmed buffer (it serves as soon as the always-ready
    instances are busy), makes ``instances``: at least 1, at most Azure's 20 per app."""
    return min(max(1, instances - pre_warmed), ALWAYS_READY_MAX)


def redis_bytes(customers: int, keys_per_customer: float = KEYS_PER_CUSTOMER) -> float:
    """Redis memory for a warm read model: one answer per lookup key plus the filters."""
    keys = customers * keys_per_customer
    return keys * BYTES_PER_LOOKUP_KEY + _FILTER_BYTES_PER_KEY * max(keys, _FILTER_MIN_KEYS)


def redis_sku(estimate_bytes: float) -> str:
    for name, gb in REDIS_SKUS:
        if gb * 1e9 >= REDIS_HEADROOM * estimate_bytes:
            return name
    return "above Balanced_B50: use MemoryOptimized or clustering"


def unannounced_ramp(inputs: Inputs, base: float, peak: float, needed: int) -> list[RampStep]:
    """Second by second, a spike nobody scheduled: demand rises linearly from ``base`` to
    ``peak`` over ``ramp_s``; the scale controller allocates one instance a second while the
    instances it has cannot run the demand at the target utilization; a pre-warmed instance
    serves at once, any other after ``warmup_s``. Runs until ``needed`` instances serve."""
    planned = per_instance_dips(inputs)
    full = per_instance_dips(inputs, 1.0)
    ready_at: list[float] = [0.0] * inputs.current_always_ready
    buffer = inputs.pre_warmed
    steps: list[RampStep] = []
    horizon = int(inputs.ramp_s + inputs.warmup_s + needed + 1)
    for t in range(horizon + 1):
        demand = base + (peak - base) * min(1.0, t / inputs.ramp_s if inputs.ramp_s else 1.0)
        allocated = len(ready_at)
        if allocated < instances_for(demand, planned) and allocated < inputs.max_burst_limit:
            if buffer > 0:
                buffer -= 1
                ready_at.append(float(t))
            else:
                ready_at.append(t + inputs.warmup_s)
        ready = sum(1 for at in ready_at if at <= t)
        steps.append(RampStep(t, demand, ready, len(ready_at), max(0.0, demand - ready * full)))
        if ready >= needed and t >= inputs.ramp_s:
            break
    return steps


def plan(inputs: Inputs) -> Plan:
    """Every figure of the capacity plan, with its formula."""
    out = Plan(inputs)
    f = out.figures
    m = inputs.measured

    def put(key: str, name: str, value: float, unit: str, formula: str, note: str = "") -> None:
        f[key] = Figure(name, value, unit, formula, note)

    base = inputs.calls_per_minute / 60 * inputs.dips_per_call
    peak = _peak_dips(inputs)
    put(
        "baseDips",
        "dips/s before the spike",
        base,
        "dips/s",
        "calls per minute / 60 x dips per call",
    )
    put("peakDips", "dips/s at the peak", peak, "dips/s", "dips/s before x spike factor")

    per = per_instance_dips(inputs)
    put(
        "perInstance",
        f"dips/s one {inputs.size} runs at {inputs.utilization:.0%} CPU",
        per,
        "dips/s",
        f"{inputs.vcpus} vCPU x 1000 / {m.cpu_ms_per_dip} ms CPU per dip x {inputs.utilization}",
        f"CPU per dip from the {m.source}",
    )
    needed = instances_for(peak, per)
    put(
        "instances",
        "instances the peak needs",
        needed,
        "",
        "ceil(peak dips/s / dips/s per instance)",
    )
    always_ready = always_ready_for(needed, inputs.pre_warmed)
    put(
        "alwaysReady",
        "always-ready for the spike window",
        always_ready,
        "",
        f"instances the peak needs - {inputs.pre_warmed} pre-warmed (it serves at once), "
        f"at most {ALWAYS_READY_MAX} per app",
    )
    if always_ready + inputs.pre_warmed < needed:
        out.warnings.append(
            f"the peak needs {needed} instances; always-ready stops at {ALWAYS_READY_MAX}, so "
            f"{needed - always_ready - inputs.pre_warmed} must come from scale-out even in a "
            "scheduled window"
        )
    max_burst = min(inputs.max_burst_limit, max(needed + inputs.pre_warmed, always_ready))
    put(
        "maxBurst",
        "maximum burst",
        max_burst,
        "",
        f"instances the peak needs + {inputs.pre_warmed} pre-warmed, "
        f"at most the region's limit ({inputs.max_burst_limit})",
    )
    if needed + inputs.pre_warmed > inputs.max_burst_limit:
        out.warnings.append(
            f"the peak needs {needed} instances plus {inputs.pre_warmed} pre-warmed, above the "
            f"plan's maximum-burst limit of {inputs.max_burst_limit}: use a larger size than "
            f"{inputs.size} or a region that allows more"
        )

    # An unannounced spike: the ramp second by second.
    ramp = unannounced_ramp(inputs, base, peak, min(needed, inputs.max_burst_limit))
    out.ramp.extend(ramp)
    reached = next((s.t for s in ramp if s.ready >= min(needed, inputs.max_burst_limit)), None)
    put(
        "unannouncedSeconds",
        f"an unannounced spike from {inputs.current_always_ready} always-ready has "
        f"{min(needed, inputs.max_burst_limit)} instances serving after",
        float(reached if reached is not None else math.inf),
        "s",
        f"one instance a second while demand outgrows the instances at {inputs.utilization:.0%}"
        f" CPU; each serves {inputs.warmup_s:.0f} s after it is allocated (pre-warmed: at once);"
        f" demand ramps over {inputs.ramp_s:.0f} s",
    )
    over = sum(s.over for s in ramp)
    put(
        "overCapacityDips",
        "dips meanwhile above what the serving instances can run",
        over,
        "dips",
        "sum over each second of max(0, demand - serving instances x dips/s at 100% CPU)",
        "these queue on busy instances: answered late, or degraded at the deadline",
    )
    put(
        "overCapacityShare",
        "share of the ramp's dips above capacity",
        over / max(sum(s.demand for s in ramp), 1e-9),
        "share",
        "dips above capacity / dips offered during the ramp",
    )

    # Genesys: Little's law on the org's data action concurrency.
    round_trip_s = (m.latency_ms + inputs.network_ms) / 1000
    concurrency = math.ceil(peak * round_trip_s - 1e-9)  # slots are whole
    put(
        "genesysConcurrency",
        "Genesys data actions in flight at the peak",
        concurrency,
        "",
        f"peak dips/s x (app p95 {m.latency_ms} ms + network {inputs.network_ms:.0f} ms), "
        "rounded up",
    )
    genesys_ceiling = inputs.genesys_concurrency / round_trip_s
    put(
        "genesysCeiling",
        f"dips/s the org's limit of {inputs.genesys_concurrency} lets through",
        genesys_ceiling,
        "dips/s",
        "concurrency limit / round trip",
    )
    if concurrency > inputs.genesys_concurrency:
        out.warnings.append(
            f"the peak needs {concurrency} concurrent data actions, above the org's "
            f"limit of {inputs.genesys_concurrency}: ask Genesys to raise "
            "actions.concurrent.executions.max, or Genesys rejects the excess"
        )
    worst = inputs.genesys_concurrency / inputs.action_timeout_s
    put(
        "genesysAtTimeout",
        "dips/s the limit lets through if every dip hangs to the action timeout",
        worst,
        "dips/s",
        f"concurrency limit / action timeout ({inputs.action_timeout_s:g} s)",
        "why dipguard answers by its deadline whatever its dependencies do",
    )

    # API Management.
    put(
        "apimRateLimit",
        "rate-limit-by-key calls per second (renewal-period 1)",
        math.ceil(peak * 1.5),
        "calls",
        "peak dips/s x 1.5, headroom for a peak above the forecast",
    )
    put(
        "apimConcurrency",
        "limit-concurrency max-count",
        max(10, math.ceil(peak * round_trip_s * 2)),
        "calls",
        "Genesys in flight at the peak x 2 (at least 10)",
    )

    # The database and the valve.
    put("maxDbQps", "MAX_DB_QPS", inputs.db_safe_qps, "reads/s", "the database's safe read rate")
    admitted = _valve_admits(inputs)
    put(
        "valveReadsPerS",
        "reads/s the valve admits, sustained",
        admitted,
        "reads/s",
        f"MAX_DB_QPS / (1 s + VALVE_GUARD_MS {inputs.valve_guard_ms} ms)",
    )
    workers = inputs.vcpus
    inflight = inflight_cap_for(inputs.db_safe_qps, inputs.db_latency_ms, workers)
    put(
        "inflightPerWorker",
        "MAX_INFLIGHT_DB_READS per worker process",
        inflight,
        "reads",
        f"2 x MAX_DB_QPS x read latency {inputs.db_latency_ms:.0f} ms / {workers} workers per "
        f"{inputs.size} (Little's law, doubled)",
    )
    misses = peak * (inputs.unwarmed_share if inputs.warm else 1 - inputs.repeat_share)
    reads = _reads_at_peak(inputs, misses)
    put(
        "dbReads",
        "database reads/s at the peak",
        reads,
        "reads/s",
        (
            "peak dips/s x customers added since the warm (the warm read model answers the rest)"
            if inputs.warm
            else "min(peak dips/s x (1 - repeat share), reads/s the valve admits"
            + (", the database's capacity)" if inputs.db_capacity_qps is not None else ")")
        ),
    )
    put(
        "degradedShare",
        "share of dips at the peak answered degraded",
        (misses - reads) / peak,
        "share",
        "(dips needing a read - reads/s) / peak dips/s",
        "known callers keep their own record" if inputs.warm else "a cold read model",
    )

    # Redis.
    memory = redis_bytes(inputs.customers, inputs.keys_per_customer)
    put(
        "redisBytes",
        f"Redis memory for {inputs.customers:,} customers",
        memory,
        "bytes",
        f"customers x {inputs.keys_per_customer} keys x {BYTES_PER_LOOKUP_KEY:.0f} B "
        f"+ filters {_FILTER_BYTES_PER_KEY:.0f} B per key (at least 1M keys)",
        "bytes per key measured by python -m bench.memory",
    )
    f["redisSku"] = Figure(
        "Azure Managed Redis SKU",
        redis_sku(memory),
        "",
        f"the smallest Balanced SKU with {REDIS_HEADROOM:g}x the estimate",
    )
    return out


# --------------------------------------------------------------------------- the benchmark


@dataclass(frozen=True)
class Tolerance:
    relative: float | None = None  # |predicted - measured| / measured at most this
    absolute: float | None = None  # |predicted - measured| at most this

    def holds(self, predicted: float, measured: float) -> bool:
        gap = abs(predicted - measured)
        if self.relative is not None:
            return gap <= self.relative * max(abs(measured), 1e-9)
        return gap <= (self.absolute or 0.0)

    def describe(self) -> str:
        if self.relative is not None:
            return f"within {self.relative:.0%}"
        return f"within {(self.absolute or 0.0) * 100:.0f} points"


# How close the model must come to a measured run. Throughput is arithmetic on the offered
# load; database reads depend on how evenly the valve's admissions meet the in-flight slots;
# the degraded share also leaves out the few callers an earlier dip cached.
TOLERANCES: Mapping[str, Tolerance] = {
    "answeredPerS": Tolerance(relative=0.05),
    "dbReadsPerS": Tolerance(relative=0.15),
    "degradedShare": Tolerance(absolute=0.05),
}
# The variants the model describes: a cold read model, and one warmed before the spike.
BENCHMARK_VARIANTS: Mapping[str, bool] = {"dipguard": False, "warmed": True}
_SIZE_BY_VCPUS = {1: "EP1", 2: "EP2", 4: "EP3"}


@dataclass(frozen=True)
class Comparison:
    variant: str
    figure: str
    predicted: float
    measured: float
    tolerance: Tolerance

    @property
    def holds(self) -> bool:
        return self.tolerance.holds(self.predicted, self.measured)


def benchmark_inputs(result: Mapping[str, Any], variant: str) -> Inputs:
    """The benchmark's own scenario as planner inputs: its instance, database and traffic."""
    cfg = result["config"]
    run = {r["name"]: r for r in result["variants"]}[variant]
    workers = int(cfg.get("appWorkers", 1))
    guard = int(run.get("env", {}).get("VALVE_GUARD_MS", 100))
    return Inputs(
        calls_per_minute=float(cfg["baselineDipsPerS"]) * 60,
        measured=Measured.from_benchmark(result, "dipguard"),
        spike_factor=float(cfg["factor"]),
        size=_SIZE_BY_VCPUS.get(workers, "EP2"),
        genesys_concurrency=int(cfg.get("genesysConcurrency") or 1_000_000),
        db_safe_qps=int(cfg["maxDbQps"]),
        db_latency_ms=float(cfg["dbServiceMs"]),
        db_capacity_qps=float(cfg["dbCapacityPerS"]),
        valve_guard_ms=guard,
        customers=int(cfg["customers"]),
        warm=BENCHMARK_VARIANTS[variant],
        current_always_ready=1,
    )


def measured_at_peak(result: Mapping[str, Any], variant: str) -> dict[str, float]:
    """A run's figures over the whole of its peak (the profile's hold phase), per second."""
    cfg = result["config"]
    start = 0.0
    hold: tuple[float, float] | None = None
    for phase in cfg["mainProfile"]:
        if phase["name"] == "spike":  # bench.spike's name for the hold at the peak
            hold = (start, start + phase["seconds"])
        start += phase["seconds"]
    if hold is None:
        raise ValueError("the benchmark's profile has no spike phase")
    timeline = {r["name"]: r for r in result["variants"]}[variant]["timeline"]
    seconds = [i for i, t in enumerate(timeline["t"]) if hold[0] <= t < hold[1]]
    offered = sum(timeline["offered"][i] for i in seconds)
    return {
        "answeredPerS": sum(
            sum(timeline[f"src_{s}"][i] for s in ("database", "cache", "stale", "degraded", "none"))
            for i in seconds
        )
        / len(seconds),
        "dbReadsPerS": sum(timeline["dbReads"][i] for i in seconds) / len(seconds),
        "degradedShare": sum(timeline["src_degraded"][i] for i in seconds) / max(offered, 1),
    }


def predicted_at_peak(inputs: Inputs, instances: int = 1) -> dict[str, float]:
    """What the model says ``instances`` instances do at the peak of ``inputs``."""
    p = plan(inputs)
    ceiling = min(instances * per_instance_dips(inputs, 1.0), p.value("genesysCeiling"))
    return {
        "answeredPerS": min(p.value("peakDips"), ceiling),
        "dbReadsPerS": p.value("dbReads"),
        "degradedShare": p.value("degradedShare"),
    }


def compare_with_benchmark(result: Mapping[str, Any]) -> list[Comparison]:
    """The model against a measured spike run, figure by figure, for each variant it models."""
    out = []
    for variant in BENCHMARK_VARIANTS:
        predicted = predicted_at_peak(benchmark_inputs(result, variant))
        measured = measured_at_peak(result, variant)
        for figure, tolerance in TOLERANCES.items():
            out.append(Comparison(variant, figure, predicted[figure], measured[figure], tolerance))
    return out
