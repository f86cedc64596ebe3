"""A weekly call-volume profile, held against a scale schedule: check it, or suggest one.

Pure: text and schedules in, findings out. The profile is CSV with a header ``start,calls``:
each row is an interval's local start (``2026-11-30T09:00``, in the schedule's time zone)
and the calls that arrive in it. Intervals are equal, taken from the first two rows.

A spike can start in any interval, so an interval is covered when its always-ready plus
pre-warmed instances run the interval's dips times the spike factor without waiting for
scale-out (``planned``: one instance's dips/s at the planned CPU share).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from shared.scale.schedule import (
    DAYS,
    Schedule,
    desired_at,
    local_instant,
)
from tools.capacity import always_ready_for, instances_for

__all__ = [
    "Interval",
    "Profile",
    "ProfileError",
    "Short",
    "check",
    "instance_hours",
    "needed_always_ready",
    "parse_profile",
    "schedule_text",
    "scheduled",
    "suggest",
]


class ProfileError(ValueError):
    """The profile has no usable rows at all."""


@dataclass(frozen=True)
class Interval:
    start: datetime  # local, naive: read in the schedule's zone
    calls: float


@dataclass(frozen=True)
class Profile:
    intervals: tuple[Interval, ...]
    step: timedelta
    # Rows that could not be read, each with its line number; the good rows still load.
    rejected: tuple[str, ...] = ()

    def dips_per_s(self, interval: Interval, dips_per_call: float) -> float:
        return interval.calls * dips_per_call / self.step.total_seconds()

    @property
    def peak_calls_per_minute(self) -> float:
        return max(i.calls for i in self.intervals) * 60 / self.step.total_seconds()


def parse_profile(text: str) -> Profile:
    """Read ``start,calls`` rows; a bad row is reported by line number and skipped.

    The interval is the commonest gap between two starts, so a missing interval is a gap
    (no calls), never a longer interval that would spread its calls thinner, and one stray
    row cannot make it shorter. A start seen twice, or one off that grid, is rejected by
    line like any other bad row.
    """
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, Interval]] = []
    rejected: list[tuple[int, str]] = []
    header_seen = False
    try:
        for row in reader:
            line_no = reader.line_num
            if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
                continue
            if not header_seen:
                header_seen = True
                if [c.strip().lower() for c in row[:2]] == ["start", "calls"]:
                    continue
            parsed = _row(row)
            if isinstance(parsed, str):
                rejected.append((line_no, parsed))
            else:
                rows.append((line_no, parsed))
    except csv.Error as exc:
        rejected.append((reader.line_num, f"unreadable CSV ({exc}); the rest was not read"))
    rows.sort(key=lambda r: (r[1].start, r[0]))
    kept: list[tuple[int, Interval]] = []
    for line_no, interval in rows:
        if kept and kept[-1][1].start == interval.start:
            rejected.append(
                (line_no, f"start {interval.start.isoformat()} is already on line {kept[-1][0]}")
            )
        else:
            kept.append((line_no, interval))
    if len(kept) < 2:
        first = f" (line {rejected[0][0]}: {rejected[0][1]})" if rejected else ""
        raise ProfileError(f"a profile needs at least two rows of start,calls{first}")
    gaps = Counter(b[1].start - a[1].start for a, b in pairwise(kept))
    step = min(gaps, key=lambda gap: (-gaps[gap], gap))  # the commonest, then the shortest
    origin = kept[0][1].start
    on_grid = []
    for line_no, interval in kept:
        if (interval.start - origin) % step:
            rejected.append(
                (line_no, f"start {interval.start.isoformat()} is off the profile's {step} grid")
            )
        else:
            on_grid.append(interval)
    messages = tuple(f"line {n}: {m}" for n, m in sorted(rejected))
    return Profile(tuple(on_grid), step, messages)


def _row(row: Sequence[str]) -> Interval | str:
    """One row as an interval, or what is wrong with it."""
    if len(row) < 2:
        return f"expected start,calls, got {','.join(row)!r}"
    try:
        start = datetime.fromisoformat(row[0].strip())
    except ValueError:
        return f"start {row[0].strip()!r} is not a date and time"
    if start.tzinfo is not None:
        return "give local time without an offset"
    try:
        calls = float(row[1].strip())
    except ValueError:
        return f"calls {row[1].strip()!r} is not a number"
    if not math.isfinite(calls) or calls < 0:
        return f"calls must be 0 or more, got {row[1].strip()}"
    return Interval(start, calls)


@dataclass(frozen=True)
class Short:
    """A stretch of intervals whose scheduled capacity is below the predicted demand."""

    start: datetime
    end: datetime
    demand: float  # the stretch's highest dips/s, spike included
    capacity: float  # its lowest scheduled dips/s
    always_ready: int  # the stretch's lowest scheduled always-ready
    needed: int  # always-ready that would cover its highest demand

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(timespec="minutes"),
            "end": self.end.isoformat(timespec="minutes"),
            "demandDipsPerS": round(self.demand, 1),
            "capacityDipsPerS": round(self.capacity, 1),
            "alwaysReady": self.always_ready,
            "needed": self.needed,
        }


def needed_always_ready(demand: float, planned: float, pre_warmed: int) -> int:
    """Always-ready that, with the pre-warmed buffer, runs ``demand`` dips/s at once."""
    return always_ready_for(instances_for(demand, planned), pre_warmed)


def scheduled(
    profile: Profile, schedule: Schedule, planned: float
) -> list[tuple[Interval, int, int, float]]:
    """Each interval with its scheduled always-ready, pre-warmed and dips/s capacity."""
    out = []
    for interval in profile.intervals:
        desired = desired_at(schedule, local_instant(interval.start, schedule.tz))
        capacity = (desired.always_ready + desired.pre_warmed) * planned
        out.append((interval, desired.always_ready, desired.pre_warmed, capacity))
    return out


def check(
    profile: Profile,
    schedule: Schedule,
    *,
    planned: float,
    dips_per_call: float,
    spike_factor: float,
) -> list[Short]:
    """Every stretch where the schedule's instances cannot run the demand of a spike."""
    shorts: list[Short] = []
    current: list[tuple[Interval, int, int, float, float]] = []

    def close() -> None:
        if current:
            first, last = current[0], current[-1]
            demand = max(c[4] for c in current)
            shorts.append(
                Short(
                    start=first[0].start,
                    end=last[0].start + profile.step,
                    demand=demand,
                    capacity=min(c[3] for c in current),
                    always_ready=min(c[1] for c in current),
                    needed=needed_always_ready(demand, planned, min(c[2] for c in current)),
                )
            )
            current.clear()

    for interval, ready, warmed, capacity in scheduled(profile, schedule, planned):
        demand = profile.dips_per_s(interval, dips_per_call) * spike_factor
        if capacity + 1e-9 < demand:
            current.append((interval, ready, warmed, capacity, demand))
        else:
            close()
    close()
    return shorts


def suggest(
    profile: Profile,
    *,
    timezone: str,
    planned: float,
    dips_per_call: float,
    spike_factor: float,
    pre_warmed: int = 1,
) -> dict[str, Any]:
    """The schedule (as SCALE_SCHEDULE JSON) with the fewest always-ready instance-hours that
    covers every interval: each interval gets what its spike needs, the lowest of those is
    the default, and runs of equal levels become windows, one per weekday run, merged
    across days that share the same hours and level."""
    ZoneInfo(timezone)  # an unknown zone fails here, before any work
    levels = [
        (
            interval.start,
            needed_always_ready(
                profile.dips_per_s(interval, dips_per_call) * spike_factor, planned, pre_warmed
            ),
        )
        for interval in profile.intervals
    ]
    floor = min(level for _, level in levels)
    runs: list[tuple[datetime, datetime, int]] = []
    for start, level in levels:
        end = start + profile.step
        if level == floor:
            continue
        if runs and runs[-1][1] == start and runs[-1][2] == level and _same_day(runs[-1][0], start):
            runs[-1] = (runs[-1][0], end, level)
        else:
            runs.append((start, end, level))
    merged: dict[tuple[str, str, int], list[str]] = {}
    for start, end, level in runs:
        end_text = "24:00" if end.date() != start.date() else end.strftime("%H:%M")
        key = (start.strftime("%H:%M"), end_text, level)
        day = DAYS[start.weekday()]
        if day not in merged.setdefault(key, []):
            merged[key].append(day)
    windows = [
        {
            "name": f"{_days_label(days)} {start}-{end}",
            "days": sorted(days, key=DAYS.index),
            "start": start,
            "end": end,
            "alwaysReady": level,
        }
        for (start, end, level), days in sorted(
            merged.items(), key=lambda kv: (DAYS.index(kv[1][0]), kv[0][0])
        )
    ]
    return {
        "timezone": timezone,
        "comment": "written by python -m tools.plan --suggest",
        "default": {"alwaysReady": floor, "preWarmed": pre_warmed},
        "windows": windows,
    }


def _days_label(days: Sequence[str]) -> str:
    ordered = sorted(days, key=DAYS.index)
    named = {7: "daily", 5: "weekdays", 2: "weekend"}
    if len(ordered) in named and (
        len(ordered) == 7 or ordered == list(DAYS[:5]) or ordered == list(DAYS[5:])
    ):
        return named[len(ordered)]
    return ",".join(ordered)


def schedule_text(doc: dict[str, Any]) -> str:
    """SCALE_SCHEDULE JSON with one window per line, as the docs write it."""
    head = {k: v for k, v in doc.items() if k != "windows"}
    lines = [json.dumps(head)[:-1] + ',\n "windows": [']
    windows = [json.dumps(w) for w in doc.get("windows", [])]
    lines += [f"   {w}," for w in windows[:-1]] + ([f"   {windows[-1]}"] if windows else [])
    return "\n".join(lines) + "\n ]}"


def _same_day(a: datetime, b: datetime) -> bool:
    return a.date() == b.date()


def instance_hours(levels: Sequence[tuple[int, timedelta]]) -> float:
    """Always-ready instance-hours of (level, duration) pairs."""
    return sum(level * span.total_seconds() / 3600 for level, span in levels)
