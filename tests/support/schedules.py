"""The example day/night schedule the schedule and scaler tests share (README's shape)."""

from __future__ import annotations

from typing import Any

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
