"""bench.cpu measures what it says: each answer's dips are answered from the source it
names, in process and through the real app, and the report carries every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import ROOT, free_port


@pytest.mark.slow
def test_a_short_cpu_run_answers_each_scenario_from_its_source_and_reports_every_way(
    tmp_path: Path,
) -> None:
    out = tmp_path / "cpu"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.cpu", "--quick"),
            *("--azurite-port", str(free_port()), "--out", str(out)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    expected = {"cached": "cache", "absent": "cache", "database": "database"}
    for answer, source in expected.items():
        data = result["answers"][answer]
        for way in ("in process", "real app"):
            assert data["sources"][way] == {source: 100}, (answer, way)
        assert data["sources"]["empty function"] == {"cache": 100}
        medians = data["medianCpuUsPerDip"]
        assert all(medians[w] > 0 for w in ("in process", "real app", "empty function"))
        assert data["appShareOfEmpty"] is not None
    imports = result["imports"]
    for variant in ("without telemetry", "with telemetry"):
        assert len(imports["seconds"][variant]) == 2
        assert 0 < imports["minimumSeconds"][variant] == min(imports["seconds"][variant])
    report = out.with_suffix(".md").read_text(encoding="utf-8")
    assert "| cached |" in report and "| database |" in report
    assert "Importing `function_app`" in report
