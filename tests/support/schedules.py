"""The example day/night schedule the schedule and scaler tests share (README's shape),
and the hostile SCALE_SCHEDULE texts their property tests draw from."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

WEEKDAY_WINDOWS: list[dict[str, Any]] = [
    {
        "name": "business-hours",
        "days": ["mon", "tue", "wed", "thu", "fri"],
        "start": "07:00",
        "end": "22:00",
        "alwaysReady": 5,
    },
    {
        "name": "weekly-promo",
        "days": ["tue"],
        "start": "10:00",
        "end": "11:00",
        "alwaysReady": 20,
        "preWarmed": 2,
        "maxBurst": 60,
    },
]


def example_schedule(timezone: str, *extra_windows: dict[str, Any]) -> dict[str, Any]:
    """Business hours and a weekly promotion in ``timezone``, plus any one-off windows."""
    return {
        "timezone": timezone,
        "default": {"alwaysReady": 1, "preWarmed": 1},
        "windows": [*WEEKDAY_WINDOWS, *extra_windows],
    }


# --------------------------------------------------------------------------- hostile text

# A dated window, so mutations reach from/to as well as the recurring windows' fields.
DATED_WINDOW: dict[str, Any] = {
    "name": "recall-briefing",
    "from": "2026-12-01T09:00",
    "to": "2026-12-01T12:00",
    "alwaysReady": 20,
}

# JSON tokens Python's own decoder fails on in ways other than JSONDecodeError, or that
# ask the validator for more than a wrong type: numbers past the int/str digit limit,
# nesting past the recursion limit, NaN, NUL and lone surrogates, zone names that are
# paths, dates no datetime can hold in a zone.
HOSTILE_TOKENS: tuple[str, ...] = (
    "9" * 5000,
    "-" + "1" * 4301,
    "1" * 4300,
    "1e999",
    "-1e999",
    "1.5",
    "NaN",
    "-Infinity",
    "[" * 100_000,
    '{"a":' * 50_000,
    "[" * 900 + "]" * 900,
    "\x00",
    '"\\u0000"',
    '"UTC\\u0000"',
    '"\\ud800"',
    '"../../etc/passwd"',
    '"/etc/passwd"',
    '"America"',
    '"."',
    '"' + "A" * 5000 + '"',
    '"' + "a/" * 3000 + 'a"',
    '"9999-12-31T23:59"',
    '"0001-01-01T00:00"',
    '"2026-02-30T09:00"',
    '"24:00"',
    '"99:99"',
)

# Arbitrary JSON values, strings with any code point (lone surrogates included) and floats
# with NaN and infinities, which json.dumps writes as the non-JSON NaN and Infinity.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(exclude_categories=()), max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

_HOLE = "@@hole@@"


def _paths(value: Any, here: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every place in ``value``, the whole of it first."""
    yield here
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*here, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*here, index))


@st.composite
def mutated_schedules(draw: st.DrawFn) -> str:
    """A valid schedule's text with one place replaced by an arbitrary JSON value or a
    hostile token, deleted, or given an arbitrary key."""
    zone = draw(st.sampled_from(["America/New_York", "UTC", "Asia/Tokyo"]))
    doc: Any = copy.deepcopy(example_schedule(zone, DATED_WINDOW))
    path = draw(st.sampled_from(list(_paths(doc))))
    if not path:
        return draw(st.sampled_from(HOSTILE_TOKENS))
    parent: Any = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    how = draw(st.sampled_from(["value", "token", "delete", "rename"]))
    if how == "delete":
        del parent[last]
    elif how == "rename" and isinstance(last, str):
        parent[draw(st.text(st.characters(exclude_categories=()), max_size=50))] = parent.pop(last)
    elif how == "value":
        parent[last] = draw(json_values)
    else:
        parent[last] = _HOLE
        return json.dumps(doc).replace(json.dumps(_HOLE), draw(st.sampled_from(HOSTILE_TOKENS)))
    return json.dumps(doc)


# Any text SCALE_SCHEDULE might hold: arbitrary text, any JSON value, a valid schedule
# with one thing wrong.
schedule_texts: st.SearchStrategy[str] = (
    st.text(st.characters(exclude_categories=()))
    | json_values.map(json.dumps)
    | mutated_schedules()
)
