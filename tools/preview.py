"""Preview a scale schedule: ``python -m tools.preview [--days 7]``.

Prints the coming transitions and the always-ready instance-hours against a flat schedule,
reading SCALE_SCHEDULE as the app would (environment, then local.settings.json), or a file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from shared.scale.schedule import (
    MAX_BURST_LIMIT_DEFAULT,
    MAX_BURST_MAX,
    Desired,
    Schedule,
    ScheduleError,
    local_instant,
    parse_schedule,
    summarize,
    transitions,
)
from shared.settings import with_local_settings

__all__ = ["main", "render_preview"]


@dataclass(frozen=True)
class _Source:
    text: str
    # Where the text came from, for the preview's heading.
    name: str
    zone_redundant: bool
    max_burst_limit: int


def _max_burst_limit(
    args: argparse.Namespace, env: Mapping[str, str], local_values: Mapping[str, str]
) -> int:
    """--max-burst-limit, else SCALE_MAX_BURST_LIMIT as the app reads it, else its default."""
    if args.max_burst_limit is not None:
        raw = str(args.max_burst_limit)
    else:
        raw = env.get("SCALE_MAX_BURST_LIMIT") or local_values.get("SCALE_MAX_BURST_LIMIT", "")
    if not raw.strip():
        return MAX_BURST_LIMIT_DEFAULT
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"SCALE_MAX_BURST_LIMIT: expected a whole number, got {raw!r}") from None
    if not 1 <= value <= MAX_BURST_MAX:
        raise ValueError(f"SCALE_MAX_BURST_LIMIT: expected 1 to {MAX_BURST_MAX}, got {value}")
    return value


def _read_source(args: argparse.Namespace, env: Mapping[str, str]) -> _Source:
    """The schedule text by --file, env, local settings, and the plan limits to check it by."""
    local_values = with_local_settings(args.settings, env={})  # the file's Values alone
    zr_text = env.get("SCALE_ZONE_REDUNDANT") or local_values.get("SCALE_ZONE_REDUNDANT", "")
    zone_redundant = args.zone_redundant or zr_text.strip().lower() in {"1", "true", "yes", "on"}
    limit = _max_burst_limit(args, env, local_values)
    if args.file:
        return _Source(
            Path(args.file).read_text(encoding="utf-8"), args.file, zone_redundant, limit
        )
    if env.get("SCALE_SCHEDULE", "").strip():
        return _Source(env["SCALE_SCHEDULE"], "SCALE_SCHEDULE", zone_redundant, limit)
    text = local_values.get("SCALE_SCHEDULE", "")
    if text.strip():
        return _Source(text, f"{args.settings} Values.SCALE_SCHEDULE", zone_redundant, limit)
    raise ScheduleError(
        None, f"no schedule: set SCALE_SCHEDULE, add it to {args.settings} Values, or pass --file"
    )


def _fmt_local(at: datetime, tz: ZoneInfo) -> str:
    return at.astimezone(tz).strftime("%a %Y-%m-%d %H:%M %Z")


def _why(d: Desired) -> str:
    """The windows and surges behind a state; "default" when none is."""
    names: list[str] = []
    for key in ("alwaysReady", "preWarmed", "maxBurst"):
        for name in d.reasons.get(key, ()):
            if name not in names and name not in {"default", "alwaysReady"}:
                names.append(name)
    return ", ".join(names) or "default"


def render_preview(
    schedule: Schedule, start: datetime, days: float, price_per_hour: float | None, source: str
) -> str:
    end = start + timedelta(days=days)
    tz = schedule.tz
    steps = transitions(schedule, start, end)
    summary = summarize(schedule, start, end)
    lines = [
        f"Scale schedule from {source} ({schedule.timezone}), {days:g} days from "
        f"{_fmt_local(start, tz)}",
        "",
        f"  {'local time':<24} {'alwaysReady':>11} {'preWarmed':>9} {'maxBurst':>8}  because",
    ]
    for step in steps:
        d = step.desired
        lines.append(
            f"  {_fmt_local(step.at, tz):<24} {d.always_ready:>11} {d.pre_warmed:>9} "
            f"{d.max_burst:>8}  {_why(d)}"
        )
    lines += [
        "",
        f"Always-ready instance-hours over {summary.hours:g} real hours:",
        f"  scheduled                {summary.instance_hours:>10.1f}",
        f"  flat at peak ({summary.peak:>2})       {summary.flat_instance_hours:>10.1f}",
    ]
    share = summary.saved / summary.flat_instance_hours * 100 if summary.flat_instance_hours else 0
    lines.append(f"  saved                    {summary.saved:>10.1f}  ({share:.1f}%)")
    if days != 7:
        per_week = 7 * 24 / summary.hours if summary.hours else 0.0
        lines.append(f"  scheduled per week       {summary.instance_hours * per_week:>10.1f}")
    if price_per_hour is not None:
        lines += [
            "",
            f"At {price_per_hour:g} per instance-hour:",
            f"  scheduled                {summary.instance_hours * price_per_hour:>10.2f}",
            f"  flat at peak             {summary.flat_instance_hours * price_per_hour:>10.2f}",
            f"  saved                    {summary.saved * price_per_hour:>10.2f}",
        ]
    return "\n".join(lines) + "\n"


def _parse_start(text: str | None, tz: ZoneInfo) -> datetime:
    if text is None:
        return datetime.now(UTC).replace(second=0, microsecond=0)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return local_instant(parsed, tz)
    return parsed.astimezone(UTC)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.preview",
        description="Check a scale schedule and print its coming transitions and instance-hours.",
    )
    parser.add_argument("--days", type=float, default=7.0, help="span to preview (default 7)")
    parser.add_argument("--file", help="read the schedule JSON from this file")
    parser.add_argument(
        "--settings", default="local.settings.json", help="local settings file to read Values from"
    )
    parser.add_argument("--start", help="start instead of now (ISO; no offset = schedule time)")
    parser.add_argument(
        "--price-per-hour",
        type=float,
        dest="price",
        help="price of one instance-hour, to print money too",
    )
    parser.add_argument(
        "--zone-redundant",
        action="store_true",
        help="check the schedule as for a zone-redundant plan (also read "
        "from SCALE_ZONE_REDUNDANT)",
    )
    parser.add_argument(
        "--max-burst-limit",
        type=int,
        metavar="N",
        help="the region's plan maximum burst to check maxBurst against "
        f"(default SCALE_MAX_BURST_LIMIT, else {MAX_BURST_LIMIT_DEFAULT})",
    )
    args = parser.parse_args(argv)

    if not 0 < args.days <= 366:
        parser.error("--days must be more than 0 and at most 366")
    if args.price is not None and args.price < 0:
        parser.error("--price-per-hour must not be negative")
    try:
        source = _read_source(args, os.environ if env is None else env)
        schedule = parse_schedule(
            source.text,
            zone_redundant=source.zone_redundant,
            max_burst_limit=source.max_burst_limit,
        )
        start = _parse_start(args.start, schedule.tz)
    except ScheduleError as exc:
        print(f"invalid schedule: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_preview(schedule, start, args.days, args.price, source.name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
