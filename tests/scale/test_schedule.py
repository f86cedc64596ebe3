"""The schedule's rules: windows, overlaps, dated windows, DST, validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.scale.schedule import (
    MAX_BURST_LIMIT_DEFAULT,
    MAX_BURST_MAX,
    ScheduleError,
    Surge,
    desired_at,
    local_instant,
    parse_schedule,
    summarize,
    transitions,
)
from tests.support.schedules import example_schedule, schedule_texts

NY = ZoneInfo("America/New_York")

EXAMPLE = example_schedule(
    "America/New_York",
    {
        "name": "recall-briefing",
        "from": "2026-12-01T09:00",
        "to": "2026-12-01T12:00",
        "alwaysReady": 20,
    },
)


def sched(
    windows: list[dict[str, Any]] | None = None,
    *,
    default: dict[str, Any] | None = None,
    tz: str = "America/New_York",
    zone_redundant: bool = False,
    max_burst_limit: int = MAX_BURST_MAX,
) -> Any:
    doc = {"timezone": tz, "default": default or {"alwaysReady": 1}, "windows": windows or []}
    return parse_schedule(
        json.dumps(doc), zone_redundant=zone_redundant, max_burst_limit=max_burst_limit
    )


def local(text: str, tz: ZoneInfo = NY, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- windows


def test_example_schedule_gives_night_day_and_promo_levels() -> None:
    s = parse_schedule(json.dumps(EXAMPLE))
    assert desired_at(s, local("2026-11-30T03:00")).levels == (1, 1, 1)  # Monday night
    assert desired_at(s, local("2026-11-30T07:00")).levels == (5, 1, 5)  # start is inclusive
    assert desired_at(s, local("2026-11-30T21:59")).levels == (5, 1, 5)
    assert desired_at(s, local("2026-11-30T22:00")).levels == (1, 1, 1)  # end is exclusive
    assert desired_at(s, local("2026-12-05T12:00")).levels == (1, 1, 1)  # Saturday


def test_overlapping_windows_take_the_largest_value_of_each_field() -> None:
    s = sched(
        [
            {"name": "a", "start": "09:00", "end": "12:00", "alwaysReady": 8, "preWarmed": 1},
            {
                "name": "b",
                "start": "10:00",
                "end": "11:00",
                "alwaysReady": 4,
                "preWarmed": 3,
                "maxBurst": 30,
            },
        ]
    )
    d = desired_at(s, local("2026-12-02T10:30"))
    assert (d.always_ready, d.pre_warmed, d.max_burst) == (8, 3, 30)
    assert d.reasons["alwaysReady"] == ("a",)
    assert d.reasons["preWarmed"] == ("b",)
    assert d.reasons["maxBurst"] == ("b",)


def test_a_window_overrides_the_default_even_downwards() -> None:
    s = sched(
        [{"name": "night", "start": "22:00", "end": "07:00", "alwaysReady": 1}],
        default={"alwaysReady": 5},
    )
    assert desired_at(s, local("2026-12-02T23:00")).always_ready == 1
    assert desired_at(s, local("2026-12-02T12:00")).always_ready == 5


def test_max_burst_is_never_below_always_ready() -> None:
    s = sched(
        [{"name": "peak", "start": "09:00", "end": "10:00", "alwaysReady": 12}],
        default={"alwaysReady": 2, "maxBurst": 10},
    )
    d = desired_at(s, local("2026-12-02T09:30"))
    assert d.max_burst == 12 and d.reasons["maxBurst"] == ("alwaysReady",)
    assert desired_at(s, local("2026-12-02T11:00")).max_burst == 10


def test_pre_warmed_defaults_to_one() -> None:
    assert desired_at(sched(), local("2026-12-02T12:00")).pre_warmed == 1


def test_midnight_crossing_window_belongs_to_the_day_it_starts_on() -> None:
    s = sched(
        [{"name": "fri-night", "days": ["fri"], "start": "22:00", "end": "02:00", "alwaysReady": 6}]
    )
    assert desired_at(s, local("2026-12-04T23:30")).always_ready == 6  # Fri
    assert desired_at(s, local("2026-12-05T01:59")).always_ready == 6  # Sat, from Fri
    assert desired_at(s, local("2026-12-05T02:00")).always_ready == 1
    # Friday 01:00 would belong to a Thursday start, and Thursday is not listed.
    assert desired_at(s, local("2026-12-04T01:00")).always_ready == 1
    # Saturday 22:00 is not a Friday either.
    assert desired_at(s, local("2026-12-05T23:00")).always_ready == 1


def test_end_of_day_is_written_24_00() -> None:
    s = sched([{"name": "evening", "start": "18:00", "end": "24:00", "alwaysReady": 3}])
    assert desired_at(s, local("2026-12-02T23:59")).always_ready == 3
    assert desired_at(s, local("2026-12-03T00:00")).always_ready == 1


def test_windows_without_days_run_every_day() -> None:
    s = sched([{"name": "daily", "start": "12:00", "end": "13:00", "alwaysReady": 3}])
    for day in range(7):
        at = local("2026-11-30T12:30") + timedelta(days=day)
        assert desired_at(s, at).always_ready == 3


def test_dated_window_uses_the_schedule_timezone() -> None:
    s = parse_schedule(json.dumps(EXAMPLE))
    # 09:00 in New York on 1 Dec (EST) is 14:00 UTC.
    assert desired_at(s, utc("2026-12-01T13:59:59")).always_ready == 5
    assert desired_at(s, utc("2026-12-01T14:00")).always_ready == 20
    assert desired_at(s, utc("2026-12-01T17:00")).always_ready == 5


def test_dated_window_in_another_zone_moves_with_it() -> None:
    s = sched(
        [{"name": "tokyo", "from": "2026-12-01T09:00", "to": "2026-12-01T10:00", "alwaysReady": 7}],
        tz="Asia/Tokyo",
    )
    assert desired_at(s, utc("2026-12-01T00:00")).always_ready == 7  # 09:00 JST
    assert desired_at(s, utc("2026-12-01T01:00")).always_ready == 1


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        desired_at(sched(), datetime(2026, 12, 1, 9))


# --------------------------------------------------------------------------- DST


def test_spring_forward_start_is_still_0700_local() -> None:
    s = sched([{"name": "day", "start": "07:00", "end": "22:00", "alwaysReady": 5}])
    # 7 March is EST (UTC-5), 8 March 2026 is the spring-forward Sunday (EDT, UTC-4).
    assert transitions(s, utc("2026-03-07T05:00"), utc("2026-03-07T23:59"))[1].at == utc(
        "2026-03-07T12:00"
    )
    assert transitions(s, utc("2026-03-08T05:00"), utc("2026-03-08T23:59"))[1].at == utc(
        "2026-03-08T11:00"
    )


def test_spring_forward_window_over_the_gap_lasts_one_real_hour() -> None:
    s = sched(
        [{"name": "early", "start": "01:00", "end": "03:00", "alwaysReady": 4}],
        default={"alwaysReady": 1},
    )
    summary = summarize(s, local("2026-03-08T00:00"), local("2026-03-09T00:00"))
    assert summary.hours == 23
    # 22 hours at 1, plus one real hour at 4.
    assert summary.instance_hours == pytest.approx(22 * 1 + 1 * 4)


def test_boundary_inside_the_spring_gap_happens_when_the_clock_jumps() -> None:
    s = sched([{"name": "gap", "start": "02:30", "end": "05:00", "alwaysReady": 4}])
    assert local_instant(datetime(2026, 3, 8, 2, 30), NY) == utc("2026-03-08T07:00")
    assert desired_at(s, utc("2026-03-08T06:59:59")).always_ready == 1  # 01:59:59 EST
    assert desired_at(s, utc("2026-03-08T07:00")).always_ready == 4  # 03:00 EDT


def test_fall_back_window_over_the_repeated_hour_lasts_three_real_hours() -> None:
    s = sched([{"name": "early", "start": "01:00", "end": "03:00", "alwaysReady": 4}])
    steps = transitions(s, local("2026-11-01T00:00"), local("2026-11-01T12:00"))
    assert [(t.at, t.desired.always_ready) for t in steps[1:]] == [
        (utc("2026-11-01T05:00"), 4),  # 01:00 EDT, the first 01:00
        (utc("2026-11-01T08:00"), 1),  # 03:00 EST
    ]


def test_fall_back_ambiguous_end_is_the_first_occurrence_without_flapping() -> None:
    s = sched([{"name": "late", "start": "22:00", "end": "01:30", "alwaysReady": 4}])
    assert local_instant(datetime(2026, 11, 1, 1, 30), NY) == utc("2026-11-01T05:30")
    assert desired_at(s, utc("2026-11-01T05:29")).always_ready == 4  # 01:29 EDT
    assert desired_at(s, utc("2026-11-01T05:30")).always_ready == 1  # 01:30 EDT
    assert desired_at(s, utc("2026-11-01T06:15")).always_ready == 1  # 01:15 EST: stays off


def test_fall_back_day_counts_25_real_hours() -> None:
    s = sched(default={"alwaysReady": 2})
    summary = summarize(s, local("2026-11-01T00:00"), local("2026-11-02T00:00"))
    assert summary.hours == 25
    assert summary.instance_hours == pytest.approx(50)


def test_a_dst_week_loses_and_gains_no_hour_of_the_daily_window() -> None:
    # The 07:00-22:00 window is 15 real hours on the spring-forward and fall-back days too.
    s = sched(
        [{"name": "day", "start": "07:00", "end": "22:00", "alwaysReady": 3}],
        default={"alwaysReady": 1},
    )
    for start in ("2026-03-05T00:00", "2026-10-29T00:00"):
        begin = local(start)
        end = datetime.combine(begin.date() + timedelta(days=7), begin.time(), NY)
        summary = summarize(s, begin, end)
        night_hours = summary.hours - 7 * 15
        assert summary.instance_hours == pytest.approx(7 * 15 * 3 + night_hours * 1)
    assert summarize(s, local("2026-03-05T00:00"), local("2026-03-12T00:00")).hours == 167
    assert summarize(s, local("2026-10-29T00:00"), local("2026-11-05T00:00")).hours == 169


# --------------------------------------------------------------------------- surges


def surge(ar: int, start: datetime, minutes: int, sid: str = "a" * 32) -> Surge:
    return Surge(
        sid,
        ar,
        start.astimezone(UTC),
        (start + timedelta(minutes=minutes)).astimezone(UTC),
        "recall",
    )


def test_surge_raises_always_ready_until_it_expires() -> None:
    s = parse_schedule(json.dumps(EXAMPLE))
    start = local("2026-11-30T12:00")
    up = surge(15, start, 30)
    d = desired_at(s, start + timedelta(minutes=29), [up])
    assert d.always_ready == 15 and d.reasons["alwaysReady"] == (up.label,)
    assert d.max_burst == 15
    assert desired_at(s, start + timedelta(minutes=30), [up]).always_ready == 5


def test_surge_below_the_schedule_changes_nothing() -> None:
    s = parse_schedule(json.dumps(EXAMPLE))
    at = local("2026-11-30T12:00")
    d = desired_at(s, at, [surge(3, at, 30)])
    assert d.always_ready == 5 and d.reasons["alwaysReady"] == ("business-hours",)


def test_surge_start_and_expiry_are_transitions() -> None:
    s = sched(default={"alwaysReady": 2})
    start = utc("2026-12-02T15:00")
    steps = transitions(
        s, start - timedelta(hours=1), start + timedelta(hours=2), [surge(9, start, 45)]
    )
    assert [(t.at, t.desired.always_ready) for t in steps] == [
        (start - timedelta(hours=1), 2),
        (start, 9),
        (start + timedelta(minutes=45), 2),
    ]


# --------------------------------------------------------------------------- validation


def doc_with(**changes: Any) -> str:
    doc = json.loads(json.dumps(EXAMPLE))
    for path, value in changes.items():
        target: Any = doc
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if value is _DELETE:
            del target[int(last) if last.isdigit() else last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return json.dumps(doc)


_DELETE = object()

INVALID: list[tuple[str, str, str | None]] = [
    ("empty", "", None),
    ("malformed JSON", '{"timezone": ', None),
    ("not an object", "[1, 2]", None),
    ("unknown top-level field", doc_with(timezones="UTC"), "timezones"),
    ("missing timezone", doc_with(timezone=_DELETE), "timezone"),
    ("timezone not a string", doc_with(timezone=5), "timezone"),
    ("unknown timezone", doc_with(timezone="Mars/Olympus_Mons"), "timezone"),
    ("missing default", doc_with(default=_DELETE), "default"),
    ("default not an object", doc_with(default=3), "default"),
    ("default without alwaysReady", doc_with(default={"preWarmed": 1}), "default.alwaysReady"),
    ("always-ready above 20", doc_with(default__alwaysReady=21), "default.alwaysReady"),
    ("always-ready zero", doc_with(default__alwaysReady=0), "default.alwaysReady"),
    ("always-ready negative", doc_with(default__alwaysReady=-1), "default.alwaysReady"),
    ("always-ready as text", doc_with(default__alwaysReady="5"), "default.alwaysReady"),
    ("always-ready as float", doc_with(default__alwaysReady=5.0), "default.alwaysReady"),
    ("always-ready as bool", doc_with(default__alwaysReady=True), "default.alwaysReady"),
    ("pre-warmed too large", doc_with(windows__1__preWarmed=21), "windows[1].preWarmed"),
    ("pre-warmed negative", doc_with(default__preWarmed=-1), "default.preWarmed"),
    ("max burst too large", doc_with(windows__1__maxBurst=101), "windows[1].maxBurst"),
    ("max burst below always-ready", doc_with(windows__1__maxBurst=10), "windows[1].maxBurst"),
    ("windows not a list", doc_with(windows={}), "windows"),
    ("window not an object", doc_with(windows__0="x"), "windows[0]"),
    ("window field typo", doc_with(windows__0__alwaysready=3), "windows[0].alwaysready"),
    ("window sets no level", doc_with(windows__0__alwaysReady=_DELETE), "windows[0]"),
    ("window name empty", doc_with(windows__0__name=" "), "windows[0].name"),
    ("start without leading zero", doc_with(windows__1__start="7:00"), "windows[1].start"),
    ("start hour 25", doc_with(windows__1__start="25:00"), "windows[1].start"),
    ("start 24:00", doc_with(windows__1__start="24:00"), "windows[1].start"),
    ("end minute 60", doc_with(windows__1__end="10:60"), "windows[1].end"),
    ("end 24:30", doc_with(windows__1__end="24:30"), "windows[1].end"),
    ("start equals end", doc_with(windows__1__end="10:00"), "windows[1].end"),
    ("missing start", doc_with(windows__0__start=_DELETE), "windows[0].start"),
    ("missing end", doc_with(windows__0__end=_DELETE), "windows[0].end"),
    ("days as a string", doc_with(windows__0__days="mon"), "windows[0].days"),
    ("days empty", doc_with(windows__0__days=[]), "windows[0].days"),
    ("unknown day", doc_with(windows__0__days=["mon", "monday"]), "windows[0].days[1]"),
    ("recurring and dated mixed", doc_with(windows__2__days=["tue"]), "windows[2]"),
    ("dated without to", doc_with(windows__2__to=_DELETE), "windows[2].to"),
    ("dated from malformed", doc_with(windows__2__from="1 Dec 2026"), "windows[2].from"),
    (
        "dated from with offset",
        doc_with(windows__2__from="2026-12-01T09:00+00:00"),
        "windows[2].from",
    ),
    ("dated to before from", doc_with(windows__2__to="2026-12-01T08:00"), "windows[2].to"),
]


@pytest.mark.parametrize(
    ("text", "field"), [(t, f) for _, t, f in INVALID], ids=[name for name, _, _ in INVALID]
)
def test_invalid_schedule_names_the_field(text: str, field: str | None) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text)
    assert caught.value.field == field
    if field:
        assert str(caught.value).startswith(f"{field}: ")


def test_zone_redundant_plan_needs_three_always_ready() -> None:
    with pytest.raises(ScheduleError, match="zone-redundant") as caught:
        parse_schedule(doc_with(default__alwaysReady=2), zone_redundant=True)
    assert caught.value.field == "default.alwaysReady"
    ok = doc_with(default__alwaysReady=3)
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(ok.replace('"alwaysReady": 5', '"alwaysReady": 1'), zone_redundant=True)
    assert caught.value.field == "windows[0].alwaysReady"
    assert parse_schedule(doc_with(default__alwaysReady=3), zone_redundant=True)


def test_max_burst_above_the_regions_limit_names_the_field_and_the_limit() -> None:
    # EXAMPLE's promotion asks for 60: fine where the limit is 100, not where it is 20.
    assert parse_schedule(json.dumps(EXAMPLE), max_burst_limit=100)
    assert parse_schedule(json.dumps(EXAMPLE), max_burst_limit=60)
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(json.dumps(EXAMPLE), max_burst_limit=20)
    assert caught.value.field == "windows[1].maxBurst"
    assert str(caught.value) == (
        "windows[1].maxBurst: 60 is above the plan's maximum-burst limit of 20 "
        "(SCALE_MAX_BURST_LIMIT, the region's Elastic Premium maximum)"
    )
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(doc_with(default__maxBurst=21, windows__1__maxBurst=20), max_burst_limit=20)
    assert caught.value.field == "default.maxBurst"


def test_always_ready_above_a_lower_burst_limit_is_refused_too() -> None:
    # The plan maximum never goes below always-ready, so that too must fit the limit.
    with pytest.raises(ScheduleError) as caught:
        sched(
            [{"name": "w", "start": "08:00", "end": "09:00", "alwaysReady": 12}], max_burst_limit=10
        )
    assert caught.value.field == "windows[0].alwaysReady"
    assert "limit of 10" in str(caught.value)
    assert sched(
        [{"name": "w", "start": "08:00", "end": "09:00", "alwaysReady": 10}], max_burst_limit=10
    )


def test_the_burst_limit_setting_accepts_what_the_schedule_accepts() -> None:
    # SCALE_MAX_BURST_LIMIT's spec takes its bounds and default from schedule.py's own
    # constants; the setting and the schedule agree on the limits either side of them.
    from shared.scale.settings import load_scale_settings
    from shared.settings import SettingsError

    assert load_scale_settings({}).scale_max_burst_limit == MAX_BURST_LIMIT_DEFAULT == 20
    for good in ("1", str(MAX_BURST_MAX)):
        assert load_scale_settings({"SCALE_MAX_BURST_LIMIT": good}).scale_max_burst_limit == int(
            good
        )
    for bad in ("0", str(MAX_BURST_MAX + 1)):
        with pytest.raises(SettingsError, match="SCALE_MAX_BURST_LIMIT"):
            load_scale_settings({"SCALE_MAX_BURST_LIMIT": bad})
        with pytest.raises(ValueError, match="max_burst_limit"):
            parse_schedule(json.dumps(EXAMPLE), max_burst_limit=int(bad))


def test_comments_are_allowed_where_operators_write_notes() -> None:
    s = parse_schedule(doc_with(comment="owner: IVR team", windows__0__comment="weekdays"))
    assert len(s.windows) == 3


def test_pre_warmed_above_arms_bound_of_ten_is_refused_by_name() -> None:
    # ARM refuses preWarmedInstanceCount above 10, so a window asking for 11 would fail every
    # tick; the schedule refuses it at start-up instead, naming the field.
    window = {"name": "w", "start": "08:00", "end": "09:00", "alwaysReady": 2}
    assert sched([{**window, "preWarmed": 10}])
    with pytest.raises(ScheduleError) as caught:
        sched([{**window, "preWarmed": 11}])
    assert caught.value.field == "windows[0].preWarmed"
    with pytest.raises(ScheduleError) as caught:
        sched(default={"alwaysReady": 1, "preWarmed": 20})
    assert caught.value.field == "default.preWarmed"


def test_the_schedules_instance_bounds_are_arms_published_ones() -> None:
    # Azure's published types for Microsoft.Web/sites/config (kept in tests/bicep/types/) are
    # the source of PRE_WARMED_MAX and ALWAYS_READY_MAX; this reads them, not a copy.
    from shared.scale.schedule import ALWAYS_READY_MAX, PRE_WARMED_MAX

    types_file = Path(__file__).resolve().parents[1] / "bicep" / "types" / "web"
    types = json.loads((types_file / "microsoft.web" / "2024-11-01" / "types.json").read_text())

    def bounds(name: str) -> tuple[int, int]:
        (prop,) = [
            t["properties"][name]
            for t in types
            if t.get("$type") == "ObjectType" and name in t.get("properties", {})
        ]
        found = types[int(prop["type"]["$ref"].removeprefix("#/"))]
        return found["minValue"], found["maxValue"]

    assert bounds("preWarmedInstanceCount") == (0, PRE_WARMED_MAX)
    assert bounds("minimumElasticInstanceCount")[1] == ALWAYS_READY_MAX


# --------------------------------------------------------------------------- hostile text

# No error message shows more of the text than this, however long the text is.
MESSAGE_MAX = 200

_NUMBER = "@@number@@"

# (case, text, what the message starts with: the setting or the field, what it says)
HOSTILE: list[tuple[str, str, str, str]] = [
    (
        "5,000-digit number",
        doc_with(default__alwaysReady=_NUMBER).replace(json.dumps(_NUMBER), "9" * 5000),
        "SCALE_SCHEDULE ",
        "too many digits",
    ),
    ("100,000 nested arrays", "[" * 100_000, "SCALE_SCHEDULE ", "nested too deeply"),
    (
        "NUL byte in the text",
        doc_with(timezone="UTC").replace('"UTC"', '"UTC\x00"'),
        "SCALE_SCHEDULE ",
        "NUL",
    ),
    ("NUL in the time zone", doc_with(timezone="UTC\x00"), "timezone: ", "unknown IANA"),
    ("time zone as a relative path", doc_with(timezone="../../etc/passwd"), "timezone: ", "IANA"),
    ("time zone as an absolute path", doc_with(timezone="/etc/passwd"), "timezone: ", "IANA"),
    ("time zone as a zone directory", doc_with(timezone="America"), "timezone: ", "IANA"),
    ("time zone of 5,000 letters", doc_with(timezone="A" * 5000), "timezone: ", "IANA"),
    # A key too long to show whole is named as JSON, cut short.
    ("key of 5,000 letters", doc_with(default={"k" * 5000: 1}), 'default."kkk', "unknown field"),
    (
        "day of 5,000 letters",
        doc_with(windows__0__days=["x" * 5000]),
        "windows[0].days[0]: ",
        "mon",
    ),
    ("date of 5,000 digits", doc_with(windows__2__from="2" * 5000), "windows[2].from: ", "local"),
    (
        "date past year 9999 once in UTC",
        doc_with(windows__2__to="9999-12-31T23:59"),
        "windows[2].to: ",
        "years",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [(t, w, s) for _, t, w, s in HOSTILE],
    ids=[name for name, _, _, _ in HOSTILE],
)
def test_hostile_text_is_a_schedule_error_naming_the_setting_or_field_without_echoing_it(
    text: str, where: str, says: str
) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text)
    message = str(caught.value)
    assert message.startswith(where)
    if caught.value.field is None:
        assert where == "SCALE_SCHEDULE "
    else:
        assert message.startswith(f"{caught.value.field}: ")
    assert says in message
    assert len(message) <= MESSAGE_MAX


@settings(max_examples=300, deadline=None)
@given(schedule_texts, st.booleans(), st.integers(1, MAX_BURST_MAX))
def test_parse_schedule_raises_nothing_but_a_short_schedule_error_for_any_text(
    text: str, zone_redundant: bool, max_burst_limit: int
) -> None:
    try:
        parse_schedule(text, zone_redundant=zone_redundant, max_burst_limit=max_burst_limit)
    except ScheduleError as exc:
        assert len(str(exc)) <= MESSAGE_MAX
