"""Surge requests and the scale settings of the surge tests: a schedule that asks for 5
always-ready instances at NOON, and a request body with overrides."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tests.support.fake_arm import SUBSCRIPTION

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # Wednesday, business hours

SCHEDULE = {
    "timezone": "America/New_York",
    "default": {"alwaysReady": 1},
    "windows": [
        {
            "name": "business-hours",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "07:00",
            "end": "22:00",
            "alwaysReady": 5,
        }
    ],
}


def scale_env(base_env: dict[str, str], schedule: dict[str, Any] = SCHEDULE) -> dict[str, str]:
    return {
        **base_env,
        "SCALE_SCHEDULE": json.dumps(schedule),
        "SCALE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "SCALE_RESOURCE_GROUP": "rg-dip",
        "SCALE_SITE_NAME": "dip-app",
    }


def body(**values: Any) -> bytes:
    return json.dumps(
        {"alwaysReady": 20, "minutes": 30, "reason": "recall announced", **values}
    ).encode()
