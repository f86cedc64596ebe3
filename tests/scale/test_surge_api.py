"""The /api/surge switch: a surge stored in a real Azurite and applied at once through
azure-mgmt-web against the HTTPS fake ARM; what it refuses; storage down."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableClient

from shared.scale import surge as store
from shared.scale.arm import AzureArmGateway
from shared.scale.retry import RetryPolicy
from shared.scale.settings import ScaleSettings, load_scale_settings
from shared.scale.surge_api import SurgeApi
from shared.scale.tick import run_tick
from tests.support.fake_arm import FakeArm
from tests.support.services import AZURITE_CONNECTION_STRING, free_port
from tests.support.surges import NOON, body, scale_env

FAST = RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.02, budget_seconds=10)


def api(
    settings: ScaleSettings, table: TableClient, gateway: AzureArmGateway | None = None
) -> SurgeApi:
    """The surge switch over a real table, with a ready gateway to the fake ARM."""
    return SurgeApi(settings, table, gateway=gateway, retry=FAST)


@pytest.fixture
def settings(base_env: dict[str, str]) -> ScaleSettings:
    return load_scale_settings(scale_env(base_env))


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeArm]:
    arm = FakeArm(tmp_path).start()
    arm.state.always_ready = 5  # where the schedule has it at NOON
    yield arm
    arm.stop()


async def test_surge_post_is_applied_within_the_request_and_reverts_after_expiry(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    switch = api(settings, table, gateway=gateway)
    response = await switch.handle("POST", None, body(alwaysReady=20, minutes=30), now=NOON)
    assert response.status == 201
    assert response.body["applied"] is True and response.body["reason"] is None
    assert response.body["surge"]["alwaysReady"] == 20
    assert fake.state.always_ready == 20
    assert [r.body for r in fake.calls("PATCH", "/config/web")] == [
        {"properties": {"minimumElasticInstanceCount": 20}}
    ]

    # The timer honours it while it lasts...
    fake.clear()
    during = await run_tick(
        settings, now=NOON + timedelta(minutes=29), gateway=gateway, surge_table=table, retry=FAST
    )
    assert during.outcome == "unchanged" and fake.calls("PATCH") == []
    # ...and goes back to the schedule once it has expired.
    after = await run_tick(
        settings, now=NOON + timedelta(minutes=30), gateway=gateway, surge_table=table, retry=FAST
    )
    assert after.outcome == "applied"
    assert fake.state.always_ready == 5
    listed = await api(settings, table).handle("GET", None, b"", now=NOON + timedelta(minutes=30))
    assert listed.body == {"surges": [], "count": 0}


async def test_a_started_surge_asks_for_a_warm_and_its_answer_says_what_was_done(
    settings: ScaleSettings, table: TableClient, gateway: AzureArmGateway
) -> None:
    calls: list[str] = []

    async def on_start() -> dict[str, Any]:
        calls.append("warm")
        return {"started": True, "lastCompleteAgeSeconds": 7200, "reason": None}

    switch = SurgeApi(settings, table, gateway=gateway, retry=FAST, on_start=on_start)
    created = await switch.handle("POST", None, body(), now=NOON)
    assert created.status == 201 and created.body["warm"]["started"] is True
    # Listing, ending and refusing a surge start nothing.
    await switch.handle("GET", None, b"", now=NOON)
    await switch.handle("DELETE", created.body["surge"]["id"], b"", now=NOON)
    assert (await switch.handle("POST", None, body(minutes=0), now=NOON)).status == 400
    assert calls == ["warm"]


async def test_surge_post_with_arm_failing_is_stored_and_says_not_applied(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.fail(403, method="PATCH", times=5)
    response = await api(settings, table, gateway=gateway).handle("POST", None, body(), now=NOON)
    assert response.status == 201
    assert response.body["applied"] is False
    assert "Website Contributor" in response.body["reason"]
    assert "timer will apply it" in response.body["reason"]
    assert (await store.list_active(table, now=NOON))[0].always_ready == 20


async def test_surge_post_bad_input_is_a_400_and_stores_nothing(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    switch = api(settings, table, gateway=gateway)
    response = await switch.handle("POST", None, body(minutes=2000), now=NOON)
    assert response.status == 400
    assert response.body["error"] == "out_of_range" and response.body["field"] == "minutes"
    assert await store.list_active(table, now=NOON) == []
    assert fake.requests == []


async def test_surge_post_above_the_regions_burst_limit_is_a_400_and_stores_nothing(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    lowered = dataclasses.replace(settings, scale_max_burst_limit=10)
    switch = api(lowered, table, gateway=gateway)
    response = await switch.handle("POST", None, body(alwaysReady=12), now=NOON)
    assert response.status == 400
    assert (response.body["error"], response.body["field"]) == ("out_of_range", "alwaysReady")
    assert "SCALE_MAX_BURST_LIMIT" in response.body["message"]
    assert await store.list_active(table, now=NOON) == []
    assert fake.requests == []


async def test_get_lists_the_active_surges_and_one_by_id(
    settings: ScaleSettings, table: TableClient
) -> None:
    first = await store.create_surge(table, store.SurgeRequest(8, 10, "a"), now=NOON)
    second = await store.create_surge(table, store.SurgeRequest(9, 20, "b"), now=NOON)
    listed = await api(settings, table).handle("GET", None, b"", now=NOON)
    assert listed.status == 200 and listed.body["count"] == 2
    assert [s["id"] for s in listed.body["surges"]] == [first.id, second.id]
    one = await api(settings, table).handle("GET", second.id, b"", now=NOON)
    assert one.body["surge"]["reason"] == "b" and one.body["surge"]["active"] is True


async def test_delete_ends_a_surge_early_and_reverts_at_once(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    switch = api(settings, table, gateway=gateway)
    started = await switch.handle("POST", None, body(alwaysReady=15), now=NOON)
    assert fake.state.always_ready == 15
    sid = started.body["surge"]["id"]
    ended = await switch.handle("DELETE", sid, b"", now=NOON + timedelta(minutes=1))
    assert ended.status == 200 and ended.body["applied"] is True
    assert ended.body["surge"]["active"] is False
    assert fake.state.always_ready == 5


@pytest.mark.parametrize(
    ("method", "sid", "status", "code"),
    [
        ("DELETE", None, 400, "missing_field"),
        ("DELETE", "not-an-id", 400, "invalid_id"),
        ("DELETE", "0" * 32, 404, "not_found"),
        ("GET", "0" * 32, 404, "not_found"),
        ("POST", "0" * 32, 405, "method_not_allowed"),
        ("PUT", None, 405, "method_not_allowed"),
    ],
)
async def test_surge_switch_refuses_what_it_cannot_do(
    settings: ScaleSettings,
    table: TableClient,
    method: str,
    sid: str | None,
    status: int,
    code: str,
) -> None:
    response = await api(settings, table).handle(method, sid, b"", now=NOON)
    assert (response.status, response.body["error"]) == (status, code)
    assert set(response.body) == {"error", "message", "field"}


async def test_storage_down_is_a_503_not_a_crash(settings: ScaleSettings) -> None:
    dead = AZURITE_CONNECTION_STRING.format(port=free_port())
    async with TableClient.from_connection_string(
        dead, table_name="surgesdown", retry_total=0
    ) as table:
        response = await api(settings, table).handle("GET", None, b"")
    assert response.status == 503 and response.body["error"] == "storage_unavailable"
