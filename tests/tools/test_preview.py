"""The schedule preview command: transitions, instance-hours, and where it reads from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.schedules import example_schedule
from tools.preview import main

EXAMPLE = example_schedule(
    "America/New_York",
    {
        "name": "recall-briefing",
        "from": "2026-12-01T09:00",
        "to": "2026-12-01T12:00",
        "alwaysReady": 20,
    },
)


def _bad_start() -> str:
    doc = json.loads(json.dumps(EXAMPLE))
    doc["windows"][1]["start"] = "7am"
    return json.dumps(doc)


def test_preview_prints_the_weeks_transitions_and_instance_hours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(EXAMPLE))
    code = main(
        [
            "--file",
            str(path),
            "--start",
            "2026-11-30T00:00",
            "--settings",
            str(tmp_path / "none.json"),
            "--max-burst-limit",
            "100",
        ],
        env={},
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    rows = [line for line in lines if line.startswith(("  Mon ", "  Tue "))]
    assert rows[:5] == [
        "  Mon 2026-11-30 00:00 EST           1         1        1  default",
        "  Mon 2026-11-30 07:00 EST           5         1        5  business-hours",
        "  Mon 2026-11-30 22:00 EST           1         1        1  default",
        "  Tue 2026-12-01 07:00 EST           5         1        5  business-hours",
        "  Tue 2026-12-01 09:00 EST          20         1       20  recall-briefing",
    ]
    assert (
        "  Tue 2026-12-01 10:00 EST          20         2       60  weekly-promo, "
        "recall-briefing" in lines
    )
    # 5 weekdays x 15 h x 5, Tue 09:00-12:00 at 20 instead of 5, and 1 for the other hours.
    expected = 5 * 15 * 5 + 3 * (20 - 5) + (168 - 75) * 1
    assert f"  scheduled                {expected:>10.1f}" in lines
    assert f"  flat at peak (20)       {20 * 168:>10.1f}" in lines
    assert "per instance-hour" not in out


def test_preview_prints_money_with_a_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "--start",
            "2026-11-30T00:00",
            "--price-per-hour",
            "0.5",
            "--settings",
            str(tmp_path / "none.json"),
        ],
        env={"SCALE_SCHEDULE": json.dumps(EXAMPLE), "SCALE_MAX_BURST_LIMIT": "100"},
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "from SCALE_SCHEDULE" in out
    assert f"  scheduled                {513 * 0.5:>10.2f}" in out
    assert f"  saved                    {(3360 - 513) * 0.5:>10.2f}" in out


def test_preview_reads_local_settings_values_and_scales_to_a_week(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(
        json.dumps(
            {
                "Values": {
                    "SCALE_SCHEDULE": json.dumps({"timezone": "UTC", "default": {"alwaysReady": 2}})
                }
            }
        )
    )
    code = main(["--days", "1", "--start", "2026-12-02T00:00", "--settings", str(settings)], env={})
    out = capsys.readouterr().out
    assert code == 0
    assert "Values.SCALE_SCHEDULE" in out
    assert f"  scheduled                {48:>10.1f}" in out
    assert f"  scheduled per week       {336:>10.1f}" in out


def test_preview_reports_a_bad_schedule_with_its_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--settings", str(tmp_path / "none.json")],
        env={"SCALE_SCHEDULE": _bad_start(), "SCALE_MAX_BURST_LIMIT": "100"},
    )
    assert code == 2
    assert "windows[1].start" in capsys.readouterr().err


def test_preview_checks_bursts_against_the_limit_the_app_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Unset, the limit is the app's default of 20, and EXAMPLE's 60 is refused.
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(EXAMPLE))
    args = ["--file", str(path), "--start", "2026-11-30T00:00"]
    code = main([*args, "--settings", str(tmp_path / "none.json")], env={})
    assert code == 2
    err = capsys.readouterr().err
    assert "windows[1].maxBurst" in err and "limit of 20" in err
    # From local.settings.json, as the app would read it...
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"SCALE_MAX_BURST_LIMIT": "100"}}))
    assert main([*args, "--settings", str(settings)], env={}) == 0
    # ...the environment over the file, and the flag over both.
    assert main([*args, "--settings", str(settings)], env={"SCALE_MAX_BURST_LIMIT": "20"}) == 2
    assert (
        main(
            [*args, "--settings", str(settings), "--max-burst-limit", "60"],
            env={"SCALE_MAX_BURST_LIMIT": "20"},
        )
        == 0
    )
    capsys.readouterr()
    assert main([*args, "--settings", str(settings)], env={"SCALE_MAX_BURST_LIMIT": "lots"}) == 2
    assert "SCALE_MAX_BURST_LIMIT" in capsys.readouterr().err


def test_preview_without_any_schedule_says_where_it_looked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--settings", str(tmp_path / "none.json")], env={})
    assert code == 2
    assert "no schedule" in capsys.readouterr().err
