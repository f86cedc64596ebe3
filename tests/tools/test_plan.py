"""The planner command: the plan, a schedule held to a profile, a suggested schedule, the
chart, and the model held to the benchmark."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared.scale.schedule import parse_schedule
from tools.plan import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def plan_example(*more: str) -> int:
    """The planner on the docs' example inputs and weekly profile, plus ``more``."""
    inputs = ["--inputs", str(EXAMPLES / "plan-inputs.json")]
    return main([*inputs, "--profile", str(EXAMPLES / "weekly-calls.csv"), *more])


def test_the_readme_example_prints_the_plan_and_writes_the_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chart = tmp_path / "plan.png"
    code = plan_example(
        "--schedule", str(EXAMPLES / "scale-schedule.json"), "--check", "--chart", str(chart)
    )
    out = capsys.readouterr().out
    # The example schedule keeps 2 always-ready in business hours; the spike needs 3 at
    # the morning peak, so --check finds the gaps and exits 1.
    assert code == 1
    assert "instances the peak needs: 4" in out
    assert "= ceil(peak dips/s / dips/s per instance)" in out
    assert "CPU per dip from the bench.cpu report of" in out
    assert "Mon 2026-11-30 10:00 to Mon 12:00" in out
    assert "(alwaysReady 2; needs 3)" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_suggest_writes_a_schedule_the_app_accepts(tmp_path: Path) -> None:
    out = tmp_path / "schedule.json"
    code = plan_example("--suggest", "--out", str(out))
    assert code == 0
    assert parse_schedule(out.read_text(encoding="utf-8")).windows


def test_benchmark_mode_prints_the_comparison_and_passes_on_the_committed_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--benchmark"]) == 0
    out = capsys.readouterr().out
    assert "| dipguard | dbReadsPerS |" in out and "| warmed | degradedShare |" in out
    assert "NO" not in out


def test_bad_inputs_exit_2_with_a_message_naming_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps({"calls-per-minut": 100}))
    assert main(["--inputs", str(path)]) == 2
    assert "unknown input 'calls-per-minut'" in capsys.readouterr().err
    assert main(["--calls-per-minute", "100", "--check"]) == 2
    assert "--check and --suggest need a --profile" in capsys.readouterr().err
    missing = str(tmp_path / "cpu.json")
    assert main(["--calls-per-minute", "100", "--cpu-from", missing]) == 2
    assert f"no bench.cpu result at {missing}" in capsys.readouterr().err
    # Given a CPU per dip, the planner needs no bench.cpu result.
    assert main(["--calls-per-minute", "100", "--cpu-from", missing, "--cpu-ms-per-dip", "1"]) == 0


def test_the_operating_page_shows_what_the_planner_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    command = re.search(r"```bash\n\.venv/bin/python -m tools\.plan (.*?)\n```", page, re.S)
    example = re.search(r"```text\n(.*?)\n```", page, re.S)
    assert command and example, "docs/operating.md lost its example"
    args = command.group(1).replace("\\\n", " ").split()
    at = args.index("--chart")
    del args[at : at + 2]  # the page's chart is docs/img/plan-example.png
    # The page's schedule leaves gaps, so --check exits 1.
    assert main([str(ROOT / a) if a.startswith("docs/") else a for a in args]) == 1
    printed = capsys.readouterr().out.splitlines()
    for line in example.group(1).splitlines():
        if line.strip() and line.strip() != "...":
            assert line in printed, (
                f"docs/operating.md shows a line the planner no longer prints: {line!r}"
            )
    main(["--benchmark"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    for line in table:
        assert line in page, f"docs/operating.md lacks the comparison row {line!r}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for line in table[2:]:
        assert line in readme, f"README lacks the comparison row {line!r}"
