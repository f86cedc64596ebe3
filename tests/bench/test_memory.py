"""bench.memory: it runs end to end against Azurite, measures the read model and prints the
sizing table. No timing is asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.benchmarks import run_python
from tests.support.services import Azurite

pytestmark = pytest.mark.slow


def test_memory_benchmark_measures_the_read_model_and_prints_the_sizing_table(
    azurite: Azurite, tmp_path: Path
) -> None:
    out = tmp_path / "memory.json"
    table = "mem" + tmp_path.name.replace("_", "")[-20:]
    done = run_python(
        [
            "-m",
            "bench.memory",
            "--customers",
            "2000",
            "--azurite-port",
            str(azurite.port),
            "--table",
            table,
            "--json",
            str(out),
        ],
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["warmCompleted"] and result["filterKeys"] == 256
    # One answer per lookup key: 2,000 customers with one or two numbers, and the ids.
    assert 2 * 2000 < result["answerKeys"] < 3 * 2000
    assert result["bytesPerLookupKey"] > 0
    assert [row["customers"] for row in result["sizing"]] == [100_000, 1_000_000, 5_000_000]
    assert "| 5,000,000 |" in done.stdout
