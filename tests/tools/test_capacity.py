"""The capacity model: its formulas, the unannounced ramp, and the model against measurement."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from app.settings import load_settings
from bench.memory import sizing
from tests.support.keys import SECRET
from tools import capacity
from tools.capacity import (
    BYTES_PER_LOOKUP_KEY,
    TOLERANCES,
    CpuBySource,
    Inputs,
    Measured,
    compare_with_benchmark,
    cpu_mix,
    plan,
    redis_bytes,
    redis_sku,
    unannounced_ramp,
)

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK = ROOT / "docs" / "bench" / "spike.json"
# 10 ms of CPU per dip: one vCPU runs 100 dips/s flat out, easy to reason about.
TEN_MS = Measured(cpu_ms_per_dip=10.0, latency_ms=60.0, source="test")


def _inputs(**overrides: Any) -> Inputs:
    values: dict[str, Any] = {"calls_per_minute": 600.0, "measured": TEN_MS, "utilization": 1.0}
    values.update(overrides)
    return Inputs(**values)


def _committed() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(BENCHMARK.read_text(encoding="utf-8"))
    return result


def test_peak_dips_and_instances_follow_the_calls_and_the_cpu_per_dip() -> None:
    # 600 calls/min = 10 calls/s x 2 dips x 10 = 200 dips/s at the peak; an EP2 runs
    # 2 x 1000 / 10 ms x 0.5 = 100 dips/s at half its CPU, so the peak needs 2.
    p = plan(_inputs(dips_per_call=2.0, size="EP2", utilization=0.5))
    assert p.value("baseDips") == 20.0
    assert p.value("peakDips") == 200.0
    assert p.value("perInstance") == 100.0
    assert p.value("instances") == 2
    assert p.value("alwaysReady") == 1  # and the pre-warmed one
    assert p.value("maxBurst") == 3  # room for a new pre-warmed one once it serves
    assert "2 vCPU x 1000 / 10.0 ms" in p.figures["perInstance"].formula


def test_always_ready_stops_at_twenty_and_the_burst_at_the_regions_limit_with_warnings() -> None:
    p = plan(_inputs(calls_per_minute=15_000, max_burst_limit=20))  # 2,500 dips/s, 25 EP1
    assert p.value("instances") == 25
    assert p.value("alwaysReady") == 20
    assert p.value("maxBurst") == 20
    assert any("always-ready stops at 20" in w for w in p.warnings)
    assert any("maximum-burst limit of 20" in w for w in p.warnings)


def test_genesys_concurrency_is_rate_times_round_trip_against_the_orgs_limit() -> None:
    # 100 dips/s x (60 ms + 40 ms) = 10 in flight; 30 slots / 0.1 s = 300 dips/s.
    p = plan(_inputs(genesys_concurrency=30))
    assert p.value("genesysConcurrency") == pytest.approx(10.0)
    assert p.value("genesysCeiling") == pytest.approx(300.0)
    assert p.value("genesysAtTimeout") == pytest.approx(10.0)
    assert not any("concurrent data actions" in w for w in p.warnings)
    tight = plan(_inputs(genesys_concurrency=5))
    assert any("above the org's limit of 5" in w for w in tight.warnings)


def test_the_in_flight_cap_is_the_one_the_app_derives_from_the_same_settings() -> None:
    p = plan(_inputs(db_safe_qps=300, db_latency_ms=50.0, size="EP2"))
    settings = load_settings(
        {
            "CustomerStorage": "UseDevelopmentStorage=true",
            "LOOKUP_KEY_SECRET": SECRET,
            "MAX_DB_QPS": "300",
            "DB_READ_LATENCY_MS": "50",
            "FUNCTIONS_WORKER_PROCESS_COUNT": "2",
        }
    )
    assert p.value("inflightPerWorker") == settings.dip.inflight_cap
    assert p.value("valveReadsPerS") == pytest.approx(300 / 1.1)


def test_a_cold_read_model_reads_the_valves_budget_and_degrades_the_rest() -> None:
    cold = plan(_inputs(calls_per_minute=3000, warm=False, db_safe_qps=110))  # 500 dips/s
    assert cold.value("dbReads") == pytest.approx(100.0)  # 110 per 1.1 s
    assert cold.value("degradedShare") == pytest.approx(0.8)
    capped = plan(_inputs(calls_per_minute=3000, warm=False, db_safe_qps=110, db_capacity_qps=50))
    assert capped.value("dbReads") == 50.0
    warm = plan(_inputs(calls_per_minute=3000, unwarmed_share=0.02))
    assert warm.value("dbReads") == pytest.approx(10.0)
    assert warm.value("degradedShare") == 0.0


def test_an_instant_spike_waits_for_warm_up_beyond_the_pre_warmed_instance() -> None:
    # 0 to 300 dips/s at once, 100 dips/s per instance, 1 always-ready + 1 pre-warmed:
    # the third instance serves after its 10 s warm-up; 100 dips/s over for 11 seconds.
    inputs = _inputs(ramp_s=0.0, warmup_s=10.0, current_always_ready=1, pre_warmed=1)
    steps = unannounced_ramp(inputs, base=0.0, peak=300.0, needed=3)
    assert [s.ready for s in steps[:3]] == [2, 2, 2]
    assert steps[-1].t == 11 and steps[-1].ready == 3
    assert sum(s.over for s in steps) == pytest.approx(1100.0)


def test_a_slow_ramp_is_covered_by_scale_out_while_instances_keep_headroom() -> None:
    # Planned at half their CPU, instances are added while the running ones still have the
    # other half: a ramp of 0.8 dips/s per second never outruns a 10 s warm-up.
    inputs = _inputs(ramp_s=300.0, warmup_s=10.0, utilization=0.5)
    steps = unannounced_ramp(inputs, base=10.0, peak=250.0, needed=5)
    assert sum(s.over for s in steps) == 0.0
    assert max(s.allocated for s in steps) == 5
    assert steps[-1].ready == 5


def test_redis_memory_matches_the_measured_sizing_table() -> None:
    # bench.memory sizes the filters exactly (shared.dip.readmodel); the planner bounds them.
    expected = {100_000: "Balanced_B0", 1_000_000: "Balanced_B3", 5_000_000: "Balanced_B10"}
    for row in sizing(BYTES_PER_LOOKUP_KEY):
        estimate = redis_bytes(row["customers"])
        assert estimate == pytest.approx(row["totalMB"] * 1e6, rel=0.05)
        assert redis_sku(estimate) == expected[row["customers"]]


def test_the_model_holds_to_the_committed_benchmark_within_tolerance() -> None:
    comparisons = compare_with_benchmark(_committed())
    assert {(c.variant, c.figure) for c in comparisons} == {
        (v, f) for v in ("dipguard", "warmed") for f in TOLERANCES
    }
    failed = [(c.variant, c.figure, c.predicted, c.measured) for c in comparisons if not c.holds]
    assert not failed


def test_a_benchmark_figure_beyond_the_tolerance_fails_the_check() -> None:
    result = _committed()
    more_reads = copy.deepcopy(result)
    timeline = {r["name"]: r for r in more_reads["variants"]}["dipguard"]["timeline"]
    timeline["dbReads"] = [round(x * 1.5) for x in timeline["dbReads"]]
    failed = {(c.variant, c.figure) for c in compare_with_benchmark(more_reads) if not c.holds}
    assert failed == {("dipguard", "dbReadsPerS")}


def test_a_model_change_beyond_the_tolerance_fails_the_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cold run modelled as if its read model were warm: no reads, nothing degraded."""
    monkeypatch.setitem(capacity.BENCHMARK_VARIANTS, "dipguard", True)
    failed = {(c.variant, c.figure) for c in compare_with_benchmark(_committed()) if not c.holds}
    assert failed == {("dipguard", "dbReadsPerS"), ("dipguard", "degradedShare")}


def test_measured_figures_come_from_the_benchmarks_own_run() -> None:
    measured = Measured.from_benchmark(_committed())
    run = {r["name"]: r for r in _committed()["variants"]}["dipguard"]
    assert measured.cpu_ms_per_dip == run["appCpuMsPerDip"]
    assert "variant dipguard" in measured.source and "full run" in measured.source
    with pytest.raises(ValueError, match="no 'nope' run"):
        Measured.from_benchmark(_committed(), "nope")


def test_inputs_out_of_range_name_themselves() -> None:
    with pytest.raises(ValueError, match="size: expected one of EP1, EP2, EP3"):
        _inputs(size="EP9")
    with pytest.raises(ValueError, match="utilization"):
        _inputs(utilization=1.5)
    with pytest.raises(ValueError, match="calls_per_minute"):
        _inputs(calls_per_minute=0)
    assert math.isfinite(plan(_inputs()).value("unannouncedSeconds"))


# 1, 2 and 10 ms: each share of the mix shows in the sum.
BY_SOURCE = CpuBySource(cached=1.0, absent=2.0, database=10.0, source="test")


def test_a_warm_peak_is_priced_by_its_cached_absent_and_database_shares() -> None:
    ms, how = cpu_mix(_inputs(stranger_share=0.1, unwarmed_share=0.05), BY_SOURCE)
    # 85% cached x 1 + 10% absent x 2 + 5% database x 10
    assert ms == pytest.approx(0.85 + 0.2 + 0.5)
    assert "cached 1.00 ms x 85%" in how and "database 10.00 ms x 5%" in how


def test_a_cold_peak_reads_what_the_valve_admits_and_prices_the_shed_as_absent() -> None:
    # 6,000 calls/min = 1,000 dips/s at the peak; the valve admits 200 / 1.1 s = 181.8 reads/s.
    inputs = _inputs(calls_per_minute=6_000, warm=False, repeat_share=0.2, db_safe_qps=200)
    ms, how = cpu_mix(inputs, BY_SOURCE)
    database = 200 / 1.1 / 1000
    absent = 0.8 - database
    assert ms == pytest.approx(0.2 * 1.0 + absent * 2.0 + database * 10.0)
    assert how.startswith("test; cached 1.00 ms x 20%") and "cold" in how


def test_the_cpu_report_gives_the_real_apps_medians_in_ms() -> None:
    report = json.loads((ROOT / "docs" / "bench" / "cpu.json").read_text(encoding="utf-8"))
    by_source = CpuBySource.from_report(report)
    real = {a: d["medianCpuUsPerDip"]["real app"] for a, d in report["answers"].items()}
    assert by_source.cached == real["cached"] / 1000
    assert by_source.absent == real["absent"] / 1000
    assert by_source.database == real["database"] / 1000
    assert by_source.cached < by_source.absent < by_source.database
    assert report["machine"]["commit"] in by_source.source
