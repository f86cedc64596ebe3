"""bench.spike: its quick form runs end to end and its own verdicts hold, and its CPU
baseline is the committed run's dipguard figure. The thresholds live in the benchmark's
report; these tests only read the verdicts back. No timing is asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.benchmarks import run_python
from tests.support.services import Azurite, free_port

pytestmark = pytest.mark.slow


def test_spike_quick_keeps_dipguards_guarantees(azurite: Azurite, tmp_path: Path) -> None:
    done = run_python(
        [
            "-m",
            "bench.spike",
            "--quick",
            "--no-progress",
            "--out",
            str(tmp_path),
            "--azurite-port",
            str(azurite.port),
            "--redis-port",
            "0",
            "--port",
            str(free_port()),
        ],
        timeout=480,  # eight variants, two of them with a warm
    )
    report = tmp_path / "spike.json"
    assert report.exists(), done.stderr[-3000:]
    result = json.loads(report.read_text())
    assert (tmp_path / "spike.png").stat().st_size > 0
    summary = (tmp_path / "spike.md").read_text()
    assert "| dipguard |" in summary
    assert "| run | database | cache | stale | degraded |" in summary

    runs = {r["name"]: r for r in result["variants"]}
    assert set(runs) == {
        "dipguard",
        "warmed",
        "warm-at-onset",
        "seed",
        "no-valve",
        "drill-redis-kill",
        "drill-db-stall",
        "drill-db-down",
    }
    for r in runs.values():
        assert {
            "latency",
            "spikeLatency",
            "withinDeadlinePct",
            "sources",
            "status4xx",
            "status5xx",
            "db",
            "redis",
            "verdict",
        } <= set(r)
        assert r["answered"] > 0
    # The app ran as one EP2-sized instance: two worker processes, whose in-flight caps add
    # up to the database's slots. Its CPU is counted over the workers, not the supervisor.
    assert result["config"]["appWorkers"] == 2
    assert result["config"]["projectEnv"]["MAX_INFLIGHT_DB_READS"] == "4"
    # A budget the peak reaches on a busy machine, so the drills' recovery compares rates the
    # valve sets; while Redis is down the workers' local budgets add up to a fifth of it.
    assert result["config"]["maxDbQps"] == 50
    assert result["config"]["projectEnv"]["LOCAL_DB_QPS"] == "5"
    assert result["config"]["projectEnv"]["REDIS_TIMEOUT_MS"] == "250"
    assert runs["dipguard"]["cpuSeconds"]["app"] > 0.5
    # The app ran inside Microsoft's worker, and the report puts its CPU per dip next to the
    # committed full run's.
    assert result["machine"]["worker"]
    assert runs["dipguard"]["appCpuMsPerDip"] > 0
    assert result["cpuBaseline"]["file"] == "docs/bench/spike.json"
    assert "App CPU per dip answered: " in summary and "The committed full run" in summary
    ours = runs["dipguard"]["verdict"]
    assert set(ours["checks"]) == {"zero5xx", "allWithinDeadline", "dbNeverAboveCap"}
    assert set(ours["performance"]) == {"spikeP99Within50ms"}
    # Warmed first, known callers keep their own record; a warm started at the onset
    # completes and the database still never sees more than the cap, its pages included.
    warmed = runs["warmed"]
    assert {"warmCompleted", "knownCallersReal99Pct"} <= set(warmed["verdict"]["checks"])
    assert warmed["warm"]["completed"] is True and warmed["warm"]["entities"] > 8_000
    assert "warmCompleted" in runs["warm-at-onset"]["verdict"]["checks"]
    assert "| run | known callers real, whole run |" in summary
    names = ("dipguard", "warmed", "warm-at-onset", "drill-redis-kill", "drill-db-stall")
    for name in (*names, "drill-db-down"):
        verdict = runs[name]["verdict"]
        # A string, so pytest prints all of it rather than a truncated repr.
        detail = {
            "verdict": verdict,
            "db": runs[name]["db"],
            "recovery": runs[name].get("recovery"),
        }
        assert verdict["met"], f"{name}: {json.dumps(detail)}"
    for name in ("drill-redis-kill", "drill-db-stall", "drill-db-down"):
        assert {"recoveredWithin10s", "recoveryHeld"} <= set(runs[name]["verdict"]["checks"])
    # The baselines are measured, not judged.
    assert not runs["seed"]["verdict"]["targets"]
    assert not runs["no-valve"]["verdict"]["targets"]
    assert result["verdict"]["met"]
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_cpu_baseline_is_the_committed_runs_dipguard_figure(tmp_path: Path) -> None:
    from bench.report import markdown_cpu_per_dip
    from bench.spike import cpu_baseline

    committed = tmp_path / "spike.json"
    committed.write_text(
        json.dumps(
            {
                "machine": {"commit": "abc1234", "python": "3.11.7"},
                "variants": [
                    {"name": "seed", "cpuSeconds": {"app": 1.0}, "status2xx": 10},
                    {"name": "dipguard", "cpuSeconds": {"app": 31.3}, "status2xx": 17_443},
                ],
            }
        )
    )
    base = cpu_baseline(committed, root=tmp_path)
    assert base is not None
    assert (base["commit"], base["appCpuMsPerDip"], base["worker"]) == ("abc1234", 1.79, None)
    text = markdown_cpu_per_dip(
        {
            "machine": {"python": "3.13.0", "worker": "1.3.0"},
            "variants": [{"name": "dipguard", "appCpuMsPerDip": 2.5}],
            "cpuBaseline": base,
        }
    )
    assert "2.5 ms for dipguard, through Microsoft's worker (azure-functions-runtime 1.3.0)" in text
    assert "commit abc1234" in text and "1.8 ms" in text
    assert "the dev host calling the functions directly" in text
    assert cpu_baseline(tmp_path / "missing.json", root=tmp_path) is None
