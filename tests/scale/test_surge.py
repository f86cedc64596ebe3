"""Surges: validation, storage in a real Azurite, the /api/surge switch applying at once
through azure-mgmt-web against the HTTPS fake ARM, and the function app's triggers."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from azure.data.tables.aio import TableClient
from shared.runtime import Runtime, set_runtime

from devhost.host import DevHost
from devhost.worker import Worker
from shared.scale import surge as store
from shared.scale.arm import AzureArmGateway
from shared.scale.retry import RetryPolicy
from shared.scale.surge_api import SurgeApi
from shared.scale.target import Target
from shared.scale.tick import run_tick
from shared.settings import Settings, load_settings
from tests.support.fake_arm import SUBSCRIPTION, FakeArm, StubCredential
from tests.support.services import AZURITE_CONNECTION_STRING, Azurite, free_port

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
# Whatever the wall clock says when the timer runs, this asks for 7.
ALL_DAY = {
    "timezone": "UTC",
    "default": {"alwaysReady": 1},
    "windows": [{"name": "all-day", "start": "00:00", "end": "24:00", "alwaysReady": 7}],
}

FAST = RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.02, budget_seconds=10)


def api(settings: Settings, table: TableClient, gateway: AzureArmGateway | None = None) -> SurgeApi:
    """The surge switch over a real table, with a ready gateway to the fake ARM."""
    return SurgeApi(settings, table, gateway=gateway, retry=FAST)


FUNCTION_KEY = "test-function-key"
MASTER_KEY = "test-master-key"


def scale_env(base_env: dict[str, str], schedule: dict[str, Any] = SCHEDULE) -> dict[str, str]:
    return {
        **base_env,
        "SCALE_SCHEDULE": json.dumps(schedule),
        "SCALE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "SCALE_RESOURCE_GROUP": "rg-dip",
        "SCALE_SITE_NAME": "dip-app",
    }


@pytest.fixture
def settings(base_env: dict[str, str]) -> Settings:
    return load_settings(scale_env(base_env))


@pytest.fixture
async def table(azurite: Azurite, base_env: dict[str, str]) -> AsyncIterator[TableClient]:
    async with TableClient.from_connection_string(
        azurite.connection_string, table_name=base_env["SURGE_TABLE"]
    ) as client:
        yield client


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeArm]:
    arm = FakeArm(tmp_path).start()
    arm.state.always_ready = 5  # where the schedule has it at NOON
    yield arm
    arm.stop()


@pytest.fixture
async def gateway(fake: FakeArm) -> AsyncIterator[AzureArmGateway]:
    async with AzureArmGateway(
        Target(SUBSCRIPTION, "rg-dip", "dip-app"),
        StubCredential(),
        endpoint=fake.endpoint,
        connection_verify=fake.ca_path,
        timeout=1.0,
    ) as gw:
        yield gw


def body(**values: Any) -> bytes:
    return json.dumps(
        {"alwaysReady": 20, "minutes": 30, "reason": "recall announced", **values}
    ).encode()


# --------------------------------------------------------------------------- validation


def test_a_valid_surge_request_is_parsed() -> None:
    assert store.parse_surge_request(body(reason="  recall  ")) == store.SurgeRequest(
        20, 30, "recall"
    )


INVALID_BODIES: list[tuple[str, bytes, str, str | None]] = [
    ("malformed JSON", b'{"alwaysReady": 5,', "invalid_json", None),
    ("not UTF-8", b"\xff\xfe", "invalid_json", None),
    ("not an object", b"[5, 30]", "invalid_body", None),
    ("unknown field", body(alwaysready=3), "unknown_field", "alwaysready"),
    (
        "missing count",
        json.dumps({"minutes": 5, "reason": "x"}).encode(),
        "missing_field",
        "alwaysReady",
    ),
    ("negative count", body(alwaysReady=-1), "out_of_range", "alwaysReady"),
    ("zero count", body(alwaysReady=0), "out_of_range", "alwaysReady"),
    ("oversize count", body(alwaysReady=21), "out_of_range", "alwaysReady"),
    ("count as text", body(alwaysReady="20"), "invalid_type", "alwaysReady"),
    ("count as bool", body(alwaysReady=True), "invalid_type", "alwaysReady"),
    ("count as float", body(alwaysReady=5.5), "invalid_type", "alwaysReady"),
    (
        "missing minutes",
        json.dumps({"alwaysReady": 5, "reason": "x"}).encode(),
        "missing_field",
        "minutes",
    ),
    ("zero minutes", body(minutes=0), "out_of_range", "minutes"),
    ("over 24 hours", body(minutes=24 * 60 + 1), "out_of_range", "minutes"),
    (
        "missing reason",
        json.dumps({"alwaysReady": 5, "minutes": 5}).encode(),
        "missing_field",
        "reason",
    ),
    ("blank reason", body(reason="   "), "missing_field", "reason"),
    ("reason not text", body(reason=5), "invalid_type", "reason"),
    ("reason too long", body(reason="x" * 501), "out_of_range", "reason"),
]


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [(r, c, f) for _, r, c, f in INVALID_BODIES],
    ids=[n for n, _, _, _ in INVALID_BODIES],
)
def test_bad_surge_requests_name_the_code_and_field(
    raw: bytes, code: str, field: str | None
) -> None:
    with pytest.raises(store.SurgeInputError) as caught:
        store.parse_surge_request(raw)
    assert caught.value.as_json() == {
        "error": code,
        "message": caught.value.message,
        "field": field,
    }
    assert caught.value.message


def test_a_full_day_is_the_longest_surge() -> None:
    assert store.parse_surge_request(body(minutes=24 * 60)).minutes == 1440


def test_zone_redundant_surges_need_three() -> None:
    with pytest.raises(store.SurgeInputError) as caught:
        store.parse_surge_request(body(alwaysReady=2), zone_redundant=True)
    assert caught.value.field == "alwaysReady"


def test_a_surge_above_a_lower_burst_limit_is_refused_naming_the_setting() -> None:
    # The plan maximum never goes below always-ready, so a surge must fit the region's limit.
    assert store.parse_surge_request(body(alwaysReady=20), max_burst_limit=20).always_ready == 20
    assert store.parse_surge_request(body(alwaysReady=10), max_burst_limit=10).always_ready == 10
    with pytest.raises(store.SurgeInputError) as caught:
        store.parse_surge_request(body(alwaysReady=11), max_burst_limit=10)
    assert (caught.value.code, caught.value.field) == ("out_of_range", "alwaysReady")
    assert "1 to 10" in caught.value.message
    assert "SCALE_MAX_BURST_LIMIT" in caught.value.message


# --------------------------------------------------------------------------- storage


async def test_a_created_surge_is_listed_until_it_expires(table: TableClient) -> None:
    created = await store.create_surge(table, store.SurgeRequest(12, 30, "recall"), now=NOON)
    assert len(created.id) == 32 and created.expires_at == NOON + timedelta(minutes=30)
    assert await store.list_active(table, now=NOON + timedelta(minutes=29)) == [created]
    assert await store.list_active(table, now=NOON + timedelta(minutes=30)) == []


async def test_surges_survive_a_new_client(azurite: Azurite, table: TableClient) -> None:
    created = await store.create_surge(table, store.SurgeRequest(9, 10, "restart"), now=NOON)
    async with TableClient.from_connection_string(
        azurite.connection_string, table_name=table.table_name
    ) as other:
        assert await store.list_active(other, now=NOON) == [created]


async def test_ending_a_surge_early_keeps_the_record(table: TableClient) -> None:
    created = await store.create_surge(table, store.SurgeRequest(12, 60, "drill"), now=NOON)
    ended = await store.end_surge(table, created.id, now=NOON + timedelta(minutes=5))
    assert ended is not None and ended.expires_at == NOON + timedelta(minutes=5)
    assert await store.list_active(table, now=NOON + timedelta(minutes=6)) == []
    kept = await table.get_entity(store.PARTITION, created.id)
    assert kept["Reason"] == "drill" and kept["EndedAt"] is not None


async def test_ending_an_unknown_surge_says_none(table: TableClient) -> None:
    assert await store.end_surge(table, "0" * 32, now=NOON) is None


# --------------------------------------------------------------------------- the switch


async def test_surge_post_is_applied_within_the_request_and_reverts_after_expiry(
    settings: Settings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
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
    settings: Settings, table: TableClient, gateway: AzureArmGateway
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
    settings: Settings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.fail(403, method="PATCH", times=5)
    response = await api(settings, table, gateway=gateway).handle("POST", None, body(), now=NOON)
    assert response.status == 201
    assert response.body["applied"] is False
    assert "Website Contributor" in response.body["reason"]
    assert "timer will apply it" in response.body["reason"]
    assert (await store.list_active(table, now=NOON))[0].always_ready == 20


async def test_surge_post_bad_input_is_a_400_and_stores_nothing(
    settings: Settings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    switch = api(settings, table, gateway=gateway)
    response = await switch.handle("POST", None, body(minutes=2000), now=NOON)
    assert response.status == 400
    assert response.body["error"] == "out_of_range" and response.body["field"] == "minutes"
    assert await store.list_active(table, now=NOON) == []
    assert fake.requests == []


async def test_surge_post_above_the_regions_burst_limit_is_a_400_and_stores_nothing(
    settings: Settings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
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
    settings: Settings, table: TableClient
) -> None:
    first = await store.create_surge(table, store.SurgeRequest(8, 10, "a"), now=NOON)
    second = await store.create_surge(table, store.SurgeRequest(9, 20, "b"), now=NOON)
    listed = await api(settings, table).handle("GET", None, b"", now=NOON)
    assert listed.status == 200 and listed.body["count"] == 2
    assert [s["id"] for s in listed.body["surges"]] == [first.id, second.id]
    one = await api(settings, table).handle("GET", second.id, b"", now=NOON)
    assert one.body["surge"]["reason"] == "b" and one.body["surge"]["active"] is True


async def test_delete_ends_a_surge_early_and_reverts_at_once(
    settings: Settings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
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
    settings: Settings, table: TableClient, method: str, sid: str | None, status: int, code: str
) -> None:
    response = await api(settings, table).handle(method, sid, b"", now=NOON)
    assert (response.status, response.body["error"]) == (status, code)
    assert set(response.body) == {"error", "message", "field"}


async def test_storage_down_is_a_503_not_a_crash(settings: Settings) -> None:
    dead = AZURITE_CONNECTION_STRING.format(port=free_port())
    async with TableClient.from_connection_string(
        dead, table_name="surgesdown", retry_total=0
    ) as table:
        response = await api(settings, table).handle("GET", None, b"")
    assert response.status == 503 and response.body["error"] == "storage_unavailable"


# --------------------------------------------------------------------------- function app


@pytest.fixture
async def host(
    base_env: dict[str, str], fake: FakeArm, monkeypatch: pytest.MonkeyPatch, app_worker: Worker
) -> AsyncIterator[TestClient[Any, Any]]:
    env = scale_env(base_env, ALL_DAY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rt = Runtime(
        load_settings(env),
        gateway_factory=lambda s, t: AzureArmGateway(
            t, StubCredential(), endpoint=fake.endpoint, connection_verify=fake.ca_path, timeout=1.0
        ),
    )
    set_runtime(rt)
    dev = DevHost(
        app_worker,
        enforce_keys=True,
        function_key=FUNCTION_KEY,
        master_key=MASTER_KEY,
        route_prefix="api",
    )
    try:
        async with TestClient(TestServer(dev.build())) as client:
            yield client
    finally:
        await rt.clients.close()
        set_runtime(None)


async def test_function_app_declares_the_timer_and_the_admin_surge_route(
    app_worker: Worker,
) -> None:
    # As Microsoft's worker reports them to the Functions host.
    specs = {f.name: f.trigger for f in app_worker.functions}
    timer = specs["scale_schedule"]
    assert (timer["type"], timer["schedule"], timer["runOnStartup"], timer["useMonitor"]) == (
        "timerTrigger",
        "%SCALE_TIMER_SCHEDULE%",
        False,
        True,
    )
    route = specs["surge"]
    assert route["route"] == "surge/{id?}"
    assert sorted(route["methods"]) == ["DELETE", "GET", "POST"]
    assert route["authLevel"] == "ADMIN"


async def test_one_run_of_scale_schedule_patches_once_and_a_second_run_not_at_all(
    host: TestClient[Any, Any], fake: FakeArm
) -> None:
    fake.state.always_ready = 2  # M=2, the window asks 7
    headers = {"x-functions-key": MASTER_KEY}
    assert (await host.post("/admin/functions/scale_schedule", headers=headers)).status == 202
    assert [r.body for r in fake.calls("PATCH")] == [
        {"properties": {"minimumElasticInstanceCount": 7}}
    ]
    assert (await host.post("/admin/functions/scale_schedule", headers=headers)).status == 202
    assert len(fake.calls("PATCH")) == 1
    assert fake.state.always_ready == 7


async def test_surge_route_takes_the_master_key_only(
    host: TestClient[Any, Any], fake: FakeArm
) -> None:
    data = body(alwaysReady=12)
    refused = await host.post("/api/surge", data=data, headers={"x-functions-key": FUNCTION_KEY})
    assert refused.status == 401
    assert fake.calls("PATCH") == []
    accepted = await host.post("/api/surge", data=data, headers={"x-functions-key": MASTER_KEY})
    assert accepted.status == 201
    assert accepted.headers["Content-Type"].startswith("application/json")
    payload = await accepted.json()
    assert payload["applied"] is True and fake.state.always_ready == 12
    listed = await host.get("/api/surge", headers={"x-functions-key": MASTER_KEY})
    assert (await listed.json())["count"] == 1
    gone = await host.delete(
        f"/api/surge/{payload['surge']['id']}", headers={"x-functions-key": MASTER_KEY}
    )
    assert gone.status == 200 and fake.state.always_ready == 7


@pytest.mark.parametrize("raw", [b"{oops", b'{"alwaysReady": ' + b"3" * 5000 + b"}"])
async def test_surge_route_malformed_json_is_a_400_with_the_error_shape(
    host: TestClient[Any, Any], raw: bytes
) -> None:
    response = await host.post("/api/surge", data=raw, headers={"x-functions-key": MASTER_KEY})
    assert response.status == 400
    payload = await response.json()
    assert set(payload) == {"error", "message", "field"}
    assert (payload["error"], payload["field"]) == ("invalid_json", None)
    assert "not valid JSON" in payload["message"]


async def test_a_broken_tick_fails_the_timer_invocation_so_the_alert_sees_it(
    host: TestClient[Any, Any], fake: FakeArm, caplog: pytest.LogCaptureFixture
) -> None:
    """Traces can be sampled away in Application Insights; failed invocations cannot."""
    fake.state.always_ready = 2
    fake.fail(403, method="PATCH", times=10)
    headers = {"x-functions-key": MASTER_KEY}
    with caplog.at_level("INFO", logger="dipguard.scale"):
        resp = await host.post("/admin/functions/scale_schedule", headers=headers)
    assert resp.status == 500
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("scale_tick ")]
    assert len(lines) == 1 and '"outcome":"failed"' in lines[0]
    assert "Website Contributor" in lines[0]
