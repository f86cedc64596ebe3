"""The weekly profile: read it, hold a schedule to it, suggest one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from shared.scale.schedule import parse_schedule
from tools.profile import (
    ProfileError,
    check,
    needed_always_ready,
    parse_profile,
    scheduled,
    suggest,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _profile(levels: list[float], start: str = "2026-11-30T00:00") -> str:
    """Hourly rows from ``start`` (a Monday) with these calls per hour."""
    first = datetime.fromisoformat(start)
    rows = ["start,calls"]
    rows += [f"{first + timedelta(hours=i):%Y-%m-%dT%H:%M},{c:g}" for i, c in enumerate(levels)]
    return "\n".join(rows) + "\n"


def test_a_bad_profile_row_is_reported_by_line_and_the_good_rows_still_load() -> None:
    text = _profile([3600, 7200, 3600]) + "2026-11-30T03:00,lots\nnot-a-date,5\n"
    profile = parse_profile(text)
    assert len(profile.intervals) == 3
    assert profile.step == timedelta(hours=1)
    assert profile.rejected == (
        "line 5: calls 'lots' is not a number",
        "line 6: start 'not-a-date' is not a date and time",
    )
    # 7,200 calls in an hour: 2 calls/s, 120 a minute.
    assert profile.peak_calls_per_minute == 120.0


def test_a_missing_interval_is_a_gap_not_a_longer_interval() -> None:
    # The second hour is missing: the step stays an hour, so the hours keep their rate.
    text = "start,calls\n2026-11-30T00:00,3600\n2026-11-30T02:00,3600\n2026-11-30T03:00,7200\n"
    profile = parse_profile(text)
    assert profile.step == timedelta(hours=1)
    assert [profile.dips_per_s(i, 1.0) for i in profile.intervals] == [1.0, 1.0, 2.0]
    assert profile.rejected == ()


def test_a_repeated_or_off_grid_start_is_rejected_by_line() -> None:
    text = _profile([3600] * 6) + "2026-11-30T01:00,10\n2026-11-30T01:30,10\n"
    profile = parse_profile(text)
    assert len(profile.intervals) == 6
    assert profile.step == timedelta(hours=1)
    assert profile.rejected == (
        "line 8: start 2026-11-30T01:00:00 is already on line 3",
        "line 9: start 2026-11-30T01:30:00 is off the profile's 1:00:00 grid",
    )


def test_an_unreadable_csv_is_reported_and_the_rows_before_it_still_load() -> None:
    text = _profile([3600, 3600]) + '2026-11-30T02:00,"' + "x" * 200_000 + "\n"
    profile = parse_profile(text)
    assert len(profile.intervals) == 2
    assert len(profile.rejected) == 1 and "unreadable CSV" in profile.rejected[0]


def test_a_profile_without_two_good_rows_is_refused() -> None:
    with pytest.raises(ProfileError, match="at least two rows"):
        parse_profile("start,calls\n2026-11-30T00:00,10\n")


def test_check_lists_each_stretch_where_the_schedule_is_short_of_a_spike() -> None:
    # 36,000 calls/h = 10 dips/s, x 10 = 100 dips/s; one instance runs 50 dips/s planned.
    levels = [3600.0] * 9 + [36000.0] * 3 + [3600.0] * 12
    schedule = parse_schedule(
        json.dumps(
            {
                "timezone": "UTC",
                "default": {"alwaysReady": 1, "preWarmed": 0},
                "windows": [{"start": "10:00", "end": "11:00", "alwaysReady": 2}],
            }
        )
    )
    shorts = check(
        parse_profile(_profile(levels)),
        schedule,
        planned=50.0,
        dips_per_call=1.0,
        spike_factor=10.0,
    )
    # 09:00-10:00 and 11:00-12:00 have 1 instance for 100 dips/s; 10:00 has the 2 it needs.
    assert [(s.start.hour, s.end.hour, s.needed) for s in shorts] == [(9, 10, 2), (11, 12, 2)]
    assert shorts[0].demand == pytest.approx(100.0) and shorts[0].capacity == 50.0


def test_the_suggested_schedule_covers_the_profile_at_its_minimum_and_parses() -> None:
    profile = parse_profile((EXAMPLES / "weekly-calls.csv").read_text(encoding="utf-8"))
    doc = suggest(
        profile, timezone="America/New_York", planned=284.0, dips_per_call=1.0, spike_factor=10.0
    )
    schedule = parse_schedule(json.dumps(doc))
    assert not check(profile, schedule, planned=284.0, dips_per_call=1.0, spike_factor=10.0)
    # Each interval gets exactly what its spike needs: one instance-hour less anywhere and
    # that hour would be short, so the total is the sum of the per-hour minimums.
    minimums = [
        needed_always_ready(profile.dips_per_s(i, 1.0) * 10.0, 284.0, 1) for i in profile.intervals
    ]
    assert [ready for _, ready, _, _ in scheduled(profile, schedule, 284.0)] == minimums
    assert doc["default"] == {"alwaysReady": 1, "preWarmed": 1}
    assert {w["alwaysReady"] for w in doc["windows"]} == {2, 3}
    assert all(w["days"] for w in doc["windows"])
