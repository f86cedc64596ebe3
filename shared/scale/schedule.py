"""The scale schedule: parse and check SCALE_SCHEDULE, and say what "now" asks for.

Pure: time in, desired state out. ARM lives in shared/scale/arm.py and tick.py, surges in
shared/scale/surge.py; the operators' preview command is tools/preview.py.

Time semantics (DST):
- Everything is computed on real instants (UTC). Window boundaries are local wall-clock
  times in the schedule's IANA zone, turned into instants by one rule: a boundary happens
  at the first instant the local clock reads that time or later on that date.
- So a 07:00 start is 07:00 local every day of the year. A boundary inside the
  spring-forward gap (02:30 in New York) happens when the clock jumps (03:00 EDT), and a
  01:00-03:00 window on that day lasts one real hour. On fall-back an ambiguous boundary
  is its first occurrence: 01:00-03:00 lasts three real hours, and a window ending at 01:30
  ends the first time the clock reads 01:30 instead of switching back on half an hour later.
- Instance-hours integrate over real elapsed time, so a fall-back night counts 25 hours.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.http import BodyError, decode_json

__all__ = [
    "ALWAYS_READY_MAX",
    "MAX_BURST_LIMIT_DEFAULT",
    "MAX_BURST_MAX",
    "PRE_WARMED_MAX",
    "ZONE_REDUNDANT_MIN",
    "Desired",
    "Levels",
    "Schedule",
    "ScheduleError",
    "Summary",
    "Surge",
    "Transition",
    "Window",
    "desired_at",
    "parse_schedule",
    "summarize",
    "transitions",
]

# Platform limits (docs: functions-premium-plan). Always-ready is capped at 20 per app,
# and every Premium plan keeps at least one billed instance, so 0 would only mislead.
ALWAYS_READY_MAX = 20
# A zone-redundant plan is rejected by ARM below 3 always-ready instances.
ZONE_REDUNDANT_MIN = 3
# The plan maximum burst ARM accepts depends on the region: for Linux Elastic Premium it is
# 100 in some regions and 20 in most (functions-premium-plan, region table). The region's
# figure comes from SCALE_MAX_BURST_LIMIT; these bound it and give its default.
MAX_BURST_MAX = 100
MAX_BURST_LIMIT_DEFAULT = 20
# The API's published bounds for the site config's preWarmedInstanceCount: 0 to 10 (Azure's
# types for Microsoft.Web/sites/config, API 2024-11-01, generated from the REST spec in
# Azure/bicep-types-az web/microsoft.web/2024-11-01/types.json; a copy is in tests/bicep/types/).
# A schedule that asks for more than the API's spec allows is refused here, at start-up,
# rather than sent to ARM on every tick.
PRE_WARMED_MAX = 10

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^(\d{2}):(\d{2})$")
# An IANA zone name: path components of letters, digits, "_", "+" and "-" ("Etc/GMT+5",
# "America/Port-au-Prince"). Nothing else reaches ZoneInfo, which reads the name as a path
# under its zone directories.
_TZ_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_TZ_NAME_MAX = 64
# A key shown as it is in a field name; any other key is shown as JSON, cut short.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
# The most characters of a value an error message shows, and of the JSON decoder's own
# message (which says where in the text it stopped, and echoes none of it).
_SHOWN_MAX = 60
_DECODER_MESSAGE_MAX = 120
# Windows and surges are matched against local dates a little either side of an instant,
# enough for a midnight-crossing window and for zones that once skipped a whole day.
_LOOKBACK_DAYS = 2


class ScheduleError(ValueError):
    """The schedule is unusable. ``field`` names the part at fault (None: the whole text)."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Levels:
    """Instance counts one schedule entry asks for; None means it does not say."""

    always_ready: int | None = None
    pre_warmed: int | None = None
    max_burst: int | None = None


@dataclass(frozen=True)
class Window:
    """A recurring (days + start/end) or dated (from/to) window of raised levels."""

    name: str
    levels: Levels
    days: frozenset[int] = frozenset()
    start: time | None = None
    # None with a start means 24:00, the end of the start day.
    end: time | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None

    @property
    def dated(self) -> bool:
        return self.date_from is not None


@dataclass(frozen=True)
class Schedule:
    timezone: str
    tz: ZoneInfo
    default: Levels
    windows: tuple[Window, ...]


@dataclass(frozen=True)
class Surge:
    """An operator surge as the schedule sees it: always-ready at least this, until expiry."""

    id: str
    always_ready: int
    starts_at: datetime
    expires_at: datetime
    reason: str

    @property
    def label(self) -> str:
        return f"surge:{self.id}"


@dataclass(frozen=True)
class Desired:
    """What the app should run at one instant, and which entries asked for it."""

    always_ready: int
    pre_warmed: int
    # The plan maximum to make sure of: never below always-ready, which ARM requires.
    max_burst: int
    reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def levels(self) -> tuple[int, int, int]:
        return (self.always_ready, self.pre_warmed, self.max_burst)

    def as_json(self) -> dict[str, int]:
        return {
            "alwaysReady": self.always_ready,
            "preWarmed": self.pre_warmed,
            "maxBurst": self.max_burst,
        }


# --------------------------------------------------------------------------- parsing


_LEVEL_FIELDS = {"alwaysReady": "always_ready", "preWarmed": "pre_warmed", "maxBurst": "max_burst"}
_COMMENT = "comment"


def parse_schedule(
    text: str, *, zone_redundant: bool = False, max_burst_limit: int = MAX_BURST_MAX
) -> Schedule:
    """Parse SCALE_SCHEDULE and check every limit; raise ScheduleError naming the field.

    ScheduleError is the only exception any text raises: the text is decoded by
    shared.http.decode_json, which bounds numbers and nesting, and no message echoes more
    than a few dozen characters of what it was given. ``max_burst_limit`` is the region's
    plan maximum (SCALE_MAX_BURST_LIMIT): no level may ask for more, since ARM would refuse
    the plan update.
    """
    if not text or not text.strip():
        raise ScheduleError(None, "SCALE_SCHEDULE is empty")
    if "\x00" in text:
        # Never valid JSON. Left in, it would let the decoder read the text as UTF-16 or
        # UTF-32 bytes, which it detects by their NULs.
        raise ScheduleError(None, "SCALE_SCHEDULE is not valid JSON: it holds a NUL character")
    try:
        # surrogatepass encodes any str, and the decoder reads lone surrogates back the same.
        doc = decode_json(text.encode("utf-8", "surrogatepass"))
    except BodyError as exc:
        raise ScheduleError(
            None, f"SCALE_SCHEDULE is not valid JSON: {_clip(str(exc), _DECODER_MESSAGE_MAX)}"
        ) from None
    return schedule_from_obj(doc, zone_redundant=zone_redundant, max_burst_limit=max_burst_limit)


def schedule_from_obj(
    doc: object, *, zone_redundant: bool = False, max_burst_limit: int = MAX_BURST_MAX
) -> Schedule:
    if not 1 <= max_burst_limit <= MAX_BURST_MAX:
        raise ValueError(f"max_burst_limit must be 1 to {MAX_BURST_MAX}, got {max_burst_limit}")
    limits = _Limits(zone_redundant, max_burst_limit)
    if not isinstance(doc, dict):
        raise ScheduleError(None, "expected a JSON object with timezone, default and windows")
    _no_unknown(doc, "", {"timezone", "default", "windows", _COMMENT})

    tzname = doc.get("timezone")
    if not isinstance(tzname, str) or not tzname.strip():
        raise ScheduleError("timezone", "expected an IANA time zone name such as America/New_York")
    tz = _zone(tzname)

    if "default" not in doc:
        raise ScheduleError("default", "is required (the levels outside every window)")
    default_obj = _object(doc["default"], "default")
    _no_unknown(default_obj, "default", {*_LEVEL_FIELDS, _COMMENT})
    default = _levels(default_obj, "default", limits)
    if default.always_ready is None:
        raise ScheduleError("default.alwaysReady", "is required")
    if default.pre_warmed is None:
        # The platform default, and what the docs advise for most apps.
        default = Levels(default.always_ready, 1, default.max_burst)

    raw_windows = doc.get("windows", [])
    if not isinstance(raw_windows, list):
        raise ScheduleError("windows", "expected a list of windows")
    windows = tuple(_window(w, f"windows[{i}]", limits, tz) for i, w in enumerate(raw_windows))
    return Schedule(timezone=tzname, tz=tz, default=default, windows=windows)


def _clip(text: str, limit: int = _SHOWN_MAX) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _shown(value: object) -> str:
    """``value`` for an error message: JSON (ASCII, control characters escaped) cut to
    _SHOWN_MAX characters; a list or an object by its kind alone."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**_SHOWN_MAX:
        return "a number too long to show"
    return _clip(json.dumps(value))


def _key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else _shown(key)


def _zone(name: str) -> ZoneInfo:
    """The zone named ``name``; ScheduleError for any name that is not an installed zone."""
    unknown = ScheduleError("timezone", f"unknown IANA time zone {_shown(name)}")
    if len(name) > _TZ_NAME_MAX or not _TZ_NAME.fullmatch(name):
        raise unknown
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name that is a directory of zones ("America"), or one the file system
        # refuses.
        raise unknown from None


def _no_unknown(obj: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    for key in obj:
        if key not in allowed:
            name = f"{where}.{_key(key)}" if where else _key(key)
            expected = ", ".join(sorted(allowed))
            raise ScheduleError(name, f"unknown field (expected one of {expected})")


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScheduleError(where, "expected a JSON object")
    return value


def _count(value: object, where: str, lo: int, hi: int) -> int:
    # bool is an int in Python, and 5.0 is a float in JSON; both are typos here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ScheduleError(where, f"expected a whole number, got {_shown(value)}")
    if not lo <= value <= hi:
        raise ScheduleError(where, f"expected {lo} to {hi}, got {_shown(value)}")
    return value


@dataclass(frozen=True)
class _Limits:
    """What the plan allows: zone redundancy and the region's maximum burst."""

    zone_redundant: bool
    max_burst_limit: int


def _over_burst_limit(value: int, where: str, limit: int) -> None:
    # The plan maximum follows maxBurst, and never goes below alwaysReady: either above the
    # region's limit is a plan update ARM refuses, so say which setting sets the limit.
    if value > limit:
        raise ScheduleError(
            where,
            f"{value} is above the plan's maximum-burst limit of {limit} "
            "(SCALE_MAX_BURST_LIMIT, the region's Elastic Premium "
            "maximum)",
        )


def _levels(obj: Mapping[str, Any], where: str, limits: _Limits) -> Levels:
    zone_redundant = limits.zone_redundant
    ar_lo = ZONE_REDUNDANT_MIN if zone_redundant else 1
    ar = obj.get("alwaysReady")
    pw = obj.get("preWarmed")
    mb = obj.get("maxBurst")
    always_ready = None
    if ar is not None:
        if zone_redundant and isinstance(ar, int) and not isinstance(ar, bool) and 0 <= ar < 3:
            raise ScheduleError(
                f"{where}.alwaysReady",
                f"a zone-redundant plan needs at least {ZONE_REDUNDANT_MIN}, got {ar}",
            )
        always_ready = _count(ar, f"{where}.alwaysReady", ar_lo, ALWAYS_READY_MAX)
        _over_burst_limit(always_ready, f"{where}.alwaysReady", limits.max_burst_limit)
    pre_warmed = None if pw is None else _count(pw, f"{where}.preWarmed", 0, PRE_WARMED_MAX)
    max_burst = None
    if mb is not None:
        max_burst = _count(mb, f"{where}.maxBurst", 1, MAX_BURST_MAX)
        _over_burst_limit(max_burst, f"{where}.maxBurst", limits.max_burst_limit)
    if always_ready is not None and max_burst is not None and max_burst < always_ready:
        raise ScheduleError(
            f"{where}.maxBurst", f"must be at least alwaysReady ({always_ready}), got {max_burst}"
        )
    return Levels(always_ready, pre_warmed, max_burst)


def _hhmm(value: object, where: str, *, allow_24: bool) -> time | None:
    """Parse "HH:MM"; "24:00" (end only) returns None, meaning the end of the day."""
    match = _HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        raise ScheduleError(where, f'expected a time as "HH:MM", got {_shown(value)}')
    hour, minute = int(match.group(1)), int(match.group(2))
    if allow_24 and hour == 24 and minute == 0:
        return None
    if hour > 23 or minute > 59:
        raise ScheduleError(
            where, f"expected 00:00 to 23:59{' or 24:00' if allow_24 else ''}, got {value}"
        )
    return time(hour, minute)


def _local_datetime(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise ScheduleError(
            where,
            f'expected a local date and time such as "2026-12-01T09:00", got {_shown(value)}',
        )
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ScheduleError(
            where,
            f'expected a local date and time such as "2026-12-01T09:00", got {_shown(value)}',
        ) from None
    if parsed.tzinfo is not None:
        raise ScheduleError(
            where, "give local time without an offset: dated windows use the schedule's timezone"
        )
    return parsed


def _instant(local: datetime, tz: ZoneInfo, where: str) -> None:
    """Refuse a local time that is no instant datetime can hold in ``tz`` (year 1 east of
    UTC, year 9999 west of it)."""
    try:
        local_instant(local, tz)
    except (OverflowError, ValueError, OSError):
        raise ScheduleError(
            where, f"{local.isoformat()} in {tz.key} is outside the years a date can hold"
        ) from None


def _window(raw: object, where: str, limits: _Limits, tz: ZoneInfo) -> Window:
    obj = _object(raw, where)
    recurring_keys = {"days", "start", "end"}
    dated_keys = {"from", "to"}
    _no_unknown(obj, where, {"name", _COMMENT, *_LEVEL_FIELDS, *recurring_keys, *dated_keys})

    name = obj.get("name", where)
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(f"{where}.name", "expected a non-empty string")
    levels = _levels(obj, where, limits)
    if levels == Levels():
        raise ScheduleError(where, "sets none of alwaysReady, preWarmed, maxBurst")

    has_recurring = bool(recurring_keys & obj.keys())
    has_dated = bool(dated_keys & obj.keys())
    if has_recurring and has_dated:
        raise ScheduleError(where, "use either days/start/end or from/to, not both")
    if has_dated:
        for key in ("from", "to"):
            if key not in obj:
                raise ScheduleError(f"{where}.{key}", "is required in a dated window")
        date_from = _local_datetime(obj["from"], f"{where}.from")
        date_to = _local_datetime(obj["to"], f"{where}.to")
        if date_to <= date_from:
            raise ScheduleError(f"{where}.to", "must be later than from")
        _instant(date_from, tz, f"{where}.from")
        _instant(date_to, tz, f"{where}.to")
        return Window(name=name, levels=levels, date_from=date_from, date_to=date_to)

    for key in ("start", "end"):
        if key not in obj:
            raise ScheduleError(
                f"{where}.{key}", "is required (or give from/to for a dated window)"
            )
    start = _hhmm(obj["start"], f"{where}.start", allow_24=False)
    assert start is not None
    end = _hhmm(obj["end"], f"{where}.end", allow_24=True)
    if end == start:
        raise ScheduleError(f"{where}.end", 'equals start; use "24:00" as the end of the day')

    days_raw = obj.get("days", list(DAYS))
    if not isinstance(days_raw, list) or not days_raw:
        raise ScheduleError(f"{where}.days", 'expected a non-empty list such as ["mon", "tue"]')
    days: set[int] = set()
    for i, day in enumerate(days_raw):
        key = day.strip().lower() if isinstance(day, str) else ""
        if key not in DAYS:
            raise ScheduleError(
                f"{where}.days[{i}]", f"expected one of {', '.join(DAYS)}, got {_shown(day)}"
            )
        days.add(DAYS.index(key))
    return Window(name=name, levels=levels, days=frozenset(days), start=start, end=end)


# --------------------------------------------------------------------------- instants


def local_instant(naive: datetime, tz: ZoneInfo) -> datetime:
    """The first UTC instant at which the local clock in ``tz`` reads ``naive`` or later."""
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _wall(first, tz) == naive:
        # Exists; fold=0 is the earlier of two readings on a fall-back night.
        return first
    # In a spring-forward gap: find when the clock jumps past it. The two fold readings
    # bracket the jump; zone transitions fall on whole seconds.
    lo, hi = sorted((first, naive.replace(tzinfo=tz, fold=1).astimezone(UTC)))
    lo_s, hi_s = math.floor(lo.timestamp()), math.ceil(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), tz) >= naive:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def _wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def occurrences(
    window: Window, tz: ZoneInfo, first: date, last: date
) -> Iterator[tuple[datetime, datetime]]:
    """UTC [start, end) intervals of ``window`` that begin on local dates first..last."""
    if window.dated:
        assert window.date_from is not None and window.date_to is not None
        if first <= window.date_from.date() <= last:
            yield local_instant(window.date_from, tz), local_instant(window.date_to, tz)
        return
    assert window.start is not None
    day = first
    while day <= last:
        if day.weekday() in window.days:
            start = datetime.combine(day, window.start)
            if window.end is None:
                end = datetime.combine(day + timedelta(days=1), time(0))
            elif window.end < window.start:
                # Crosses midnight: it belongs to the day it starts on.
                end = datetime.combine(day + timedelta(days=1), window.end)
            else:
                end = datetime.combine(day, window.end)
            yield local_instant(start, tz), local_instant(end, tz)
        day += timedelta(days=1)


def _active(window: Window, tz: ZoneInfo, at: datetime) -> bool:
    if window.dated:
        return any(s <= at < e for s, e in occurrences(window, tz, date.min, date.max))
    today = at.astimezone(tz).date()
    return any(
        s <= at < e
        for s, e in occurrences(window, tz, today - timedelta(days=_LOOKBACK_DAYS), today)
    )


def _aware_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("instants must be timezone-aware")
    return at.astimezone(UTC)


# --------------------------------------------------------------------------- evaluation


def desired_at(schedule: Schedule, at: datetime, surges: Iterable[Surge] = ()) -> Desired:
    """What the schedule and the active surges ask for at instant ``at``.

    Fields a window sets override the default; where windows overlap, the largest value of
    each field wins. A surge only raises always-ready. Max burst is at least always-ready.
    """
    at = _aware_utc(at)
    active = [w for w in schedule.windows if _active(w, schedule.tz, at)]
    values: dict[str, int] = {}
    reasons: dict[str, tuple[str, ...]] = {}
    for json_name, attr in _LEVEL_FIELDS.items():
        asked = [
            (getattr(w.levels, attr), w.name) for w in active if getattr(w.levels, attr) is not None
        ]
        if asked:
            top = max(v for v, _ in asked)
            values[json_name] = top
            reasons[json_name] = tuple(n for v, n in asked if v == top)
        else:
            fallback = getattr(schedule.default, attr)
            values[json_name] = 0 if fallback is None else fallback
            reasons[json_name] = ("default",) if fallback is not None else ()

    live = [s for s in surges if _aware_utc(s.starts_at) <= at < _aware_utc(s.expires_at)]
    if live:
        top = max(s.always_ready for s in live)
        labels = tuple(s.label for s in live if s.always_ready == top)
        if top > values["alwaysReady"]:
            values["alwaysReady"], reasons["alwaysReady"] = top, labels
        elif top == values["alwaysReady"]:
            reasons["alwaysReady"] += labels

    always_ready = values["alwaysReady"]
    if values["maxBurst"] < always_ready:
        values["maxBurst"] = always_ready
        reasons["maxBurst"] = ("alwaysReady",)
    return Desired(
        always_ready=always_ready,
        pre_warmed=values["preWarmed"],
        max_burst=values["maxBurst"],
        reasons=reasons,
    )


@dataclass(frozen=True)
class Transition:
    at: datetime
    desired: Desired
    previous: Desired | None


def _boundaries(
    schedule: Schedule, start: datetime, end: datetime, surges: Sequence[Surge]
) -> list[datetime]:
    tz = schedule.tz
    first = start.astimezone(tz).date() - timedelta(days=_LOOKBACK_DAYS)
    last = end.astimezone(tz).date() + timedelta(days=1)
    points: set[datetime] = set()
    for window in schedule.windows:
        for s, e in occurrences(
            window, tz, date.min if window.dated else first, date.max if window.dated else last
        ):
            points.update((s, e))
    for surge in surges:
        points.update((_aware_utc(surge.starts_at), _aware_utc(surge.expires_at)))
    return sorted(p for p in points if start < p < end)


def transitions(
    schedule: Schedule, start: datetime, end: datetime, surges: Sequence[Surge] = ()
) -> list[Transition]:
    """The state at ``start`` and every change of levels up to ``end`` (UTC instants)."""
    start, end = _aware_utc(start), _aware_utc(end)
    current = desired_at(schedule, start, surges)
    out = [Transition(start, current, None)]
    for point in _boundaries(schedule, start, end, surges):
        nxt = desired_at(schedule, point, surges)
        if nxt.levels != current.levels:
            out.append(Transition(point, nxt, current))
            current = nxt
    return out


@dataclass(frozen=True)
class Summary:
    hours: float
    instance_hours: float
    peak: int
    flat_instance_hours: float

    @property
    def saved(self) -> float:
        return self.flat_instance_hours - self.instance_hours


def summarize(
    schedule: Schedule, start: datetime, end: datetime, surges: Sequence[Surge] = ()
) -> Summary:
    """Always-ready instance-hours over real elapsed time, and a flat peak to compare."""
    start, end = _aware_utc(start), _aware_utc(end)
    steps = transitions(schedule, start, end, surges)
    total = 0.0
    for this, nxt in zip(steps, [*steps[1:], None], strict=True):
        until = end if nxt is None else nxt.at
        total += this.desired.always_ready * (until - this.at).total_seconds() / 3600
    hours = (end - start).total_seconds() / 3600
    peak = max(t.desired.always_ready for t in steps)
    return Summary(hours=hours, instance_hours=total, peak=peak, flat_instance_hours=peak * hours)
