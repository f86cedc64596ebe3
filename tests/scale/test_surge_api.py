"""The /api/surge switch: a surge stored in a real Azurite and applied at once through
azure-mgmt-web against the HTTPS fake ARM; what it refuses; storage down; and the operators
App Service Authentication signs in, with the headers it sets: who may, who may not, and
what each surge row and log line record of them."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.scale import surge as store
from shared.scale.arm import AzureArmGateway
from shared.scale.retry import RetryPolicy
from shared.scale.settings import ScaleSettings, load_scale_settings
from shared.scale.surge_api import SurgeApi
from shared.scale.tick import run_tick
from shared.settings import SettingsError
from tests.support.fake_arm import FakeArm
from tests.support.services import AZURITE_CONNECTION_STRING, free_port
from tests.support.surges import (
    ADA,
    NOON,
    OPERATOR,
    OPERATOR_NAME,
    OPERATOR_OID,
    body,
    encoded,
    principal,
    principal_headers,
    scale_env,
)

OTHER_OID = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"
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
    response = await switch.handle(
        "POST", None, body(alwaysReady=20, minutes=30), now=NOON, headers=OPERATOR
    )
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
    listed = await api(settings, table).handle(
        "GET", None, b"", now=NOON + timedelta(minutes=30), headers=OPERATOR
    )
    assert listed.body == {"surges": [], "count": 0}


async def test_a_started_surge_asks_for_a_warm_and_its_answer_says_what_was_done(
    settings: ScaleSettings, table: TableClient, gateway: AzureArmGateway
) -> None:
    calls: list[str] = []

    async def on_start() -> dict[str, Any]:
        calls.append("warm")
        return {"started": True, "lastCompleteAgeSeconds": 7200, "reason": None}

    switch = SurgeApi(settings, table, gateway=gateway, retry=FAST, on_start=on_start)
    created = await switch.handle("POST", None, body(), now=NOON, headers=OPERATOR)
    assert created.status == 201 and created.body["warm"]["started"] is True
    # Listing, ending and refusing a surge start nothing.
    await switch.handle("GET", None, b"", now=NOON, headers=OPERATOR)
    await switch.handle("DELETE", created.body["surge"]["id"], b"", now=NOON, headers=OPERATOR)
    assert (
        await switch.handle("POST", None, body(minutes=0), now=NOON, headers=OPERATOR)
    ).status == 400
    assert calls == ["warm"]


async def test_surge_post_with_arm_failing_is_stored_and_says_not_applied(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.fail(403, method="PATCH", times=5)
    response = await api(settings, table, gateway=gateway).handle(
        "POST", None, body(), now=NOON, headers=OPERATOR
    )
    assert response.status == 201
    assert response.body["applied"] is False
    assert "Website Contributor" in response.body["reason"]
    assert "timer will apply it" in response.body["reason"]
    assert (await store.list_active(table, now=NOON))[0].always_ready == 20


async def test_surge_post_bad_input_is_a_400_and_stores_nothing(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    switch = api(settings, table, gateway=gateway)
    response = await switch.handle("POST", None, body(minutes=2000), now=NOON, headers=OPERATOR)
    assert response.status == 400
    assert response.body["error"] == "out_of_range" and response.body["field"] == "minutes"
    assert await store.list_active(table, now=NOON) == []
    assert fake.requests == []


async def test_surge_post_above_the_regions_burst_limit_is_a_400_and_stores_nothing(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    lowered = dataclasses.replace(settings, scale_max_burst_limit=10)
    switch = api(lowered, table, gateway=gateway)
    response = await switch.handle("POST", None, body(alwaysReady=12), now=NOON, headers=OPERATOR)
    assert response.status == 400
    assert (response.body["error"], response.body["field"]) == ("out_of_range", "alwaysReady")
    assert "SCALE_MAX_BURST_LIMIT" in response.body["message"]
    assert await store.list_active(table, now=NOON) == []
    assert fake.requests == []


async def test_get_lists_the_active_surges_and_one_by_id(
    settings: ScaleSettings, table: TableClient
) -> None:
    first = await store.create_surge(table, store.SurgeRequest(8, 10, "a"), ADA, now=NOON)
    second = await store.create_surge(table, store.SurgeRequest(9, 20, "b"), ADA, now=NOON)
    listed = await api(settings, table).handle("GET", None, b"", now=NOON, headers=OPERATOR)
    assert listed.status == 200 and listed.body["count"] == 2
    assert [s["id"] for s in listed.body["surges"]] == [first.id, second.id]
    one = await api(settings, table).handle("GET", second.id, b"", now=NOON, headers=OPERATOR)
    assert one.body["surge"]["reason"] == "b" and one.body["surge"]["active"] is True


async def test_delete_ends_a_surge_early_and_reverts_at_once(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, gateway: AzureArmGateway
) -> None:
    switch = api(settings, table, gateway=gateway)
    started = await switch.handle("POST", None, body(alwaysReady=15), now=NOON, headers=OPERATOR)
    assert fake.state.always_ready == 15
    sid = started.body["surge"]["id"]
    ended = await switch.handle(
        "DELETE", sid, b"", now=NOON + timedelta(minutes=1), headers=OPERATOR
    )
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
    response = await api(settings, table).handle(method, sid, b"", now=NOON, headers=OPERATOR)
    assert (response.status, response.body["error"]) == (status, code)
    assert set(response.body) == {"error", "message", "field"}


async def test_storage_down_is_a_503_not_a_crash(settings: ScaleSettings) -> None:
    dead = AZURITE_CONNECTION_STRING.format(port=free_port())
    async with TableClient.from_connection_string(
        dead, table_name="surgesdown", retry_total=0
    ) as table:
        response = await api(settings, table).handle("GET", None, b"", headers=OPERATOR)
    assert response.status == 503 and response.body["error"] == "storage_unavailable"


# --------------------------------------------------------------------------- operators


def _untrusted(settings: ScaleSettings) -> ScaleSettings:
    """The same settings with no App Service Authentication in front of the app."""
    return dataclasses.replace(settings, app_service_auth=False)


async def _rows(table: TableClient) -> list[dict[str, Any]]:
    try:
        return [dict(e) async for e in table.list_entities()]
    except ResourceNotFoundError:
        return []


async def test_a_surge_records_the_operator_who_raised_it_and_who_ended_it(
    settings: ScaleSettings,
    table: TableClient,
    gateway: AzureArmGateway,
    caplog: pytest.LogCaptureFixture,
) -> None:
    switch = api(settings, table, gateway=gateway)
    with caplog.at_level(logging.WARNING, logger="dipguard.surge"):
        started = await switch.handle("POST", None, body(), headers=OPERATOR, now=NOON)
        sid = started.body["surge"]["id"]
        other = principal_headers(oid=OTHER_OID, name="Bo Other")
        ended = await switch.handle(
            "DELETE", sid, b"", headers=other, now=NOON + timedelta(minutes=1)
        )
    assert started.status == 201 and ended.status == 200
    ada = {"objectId": OPERATOR_OID, "name": OPERATOR_NAME}
    assert started.body["surge"]["raisedBy"] == ada
    assert started.body["surge"]["endedBy"] is None
    assert ended.body["surge"]["raisedBy"] == ada
    assert ended.body["surge"]["endedBy"] == {"objectId": OTHER_OID, "name": "Bo Other"}
    row = await table.get_entity(store.PARTITION, sid)
    assert (row["RaisedByObjectId"], row["RaisedByName"]) == (OPERATOR_OID, OPERATOR_NAME)
    assert (row["EndedByObjectId"], row["EndedByName"]) == (OTHER_OID, "Bo Other")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f'surge {sid} started by {OPERATOR_OID} "{OPERATOR_NAME}": alwaysReady 20 for 30 min: '
        "recall announced",
        f'surge {sid} ended early by {OTHER_OID} "Bo Other"',
    ]
    # The operator's identity, not the whole principal: no other claim, no header.
    text = "\n".join(lines)
    assert "tenant" not in text and OPERATOR["X-MS-CLIENT-PRINCIPAL"] not in text


async def test_get_lists_the_active_surges_with_who_raised_them(
    settings: ScaleSettings, table: TableClient
) -> None:
    raised = await store.create_surge(table, store.SurgeRequest(8, 10, "a"), ADA, now=NOON)
    listed = await api(settings, table).handle("GET", None, b"", headers=OPERATOR, now=NOON)
    assert [s["raisedBy"] for s in listed.body["surges"]] == [
        {"objectId": OPERATOR_OID, "name": OPERATOR_NAME}
    ]
    one = await api(settings, table).handle("GET", raised.id, b"", headers=OPERATOR, now=NOON)
    assert one.body["surge"]["raisedBy"]["objectId"] == OPERATOR_OID


async def test_a_row_written_before_operators_signed_in_still_reads(
    settings: ScaleSettings, table: TableClient, gateway: AzureArmGateway
) -> None:
    await table.create_table()
    await table.create_entity(
        {
            "PartitionKey": store.PARTITION,
            "RowKey": "a" * 32,
            "AlwaysReady": 9,
            "Minutes": 30,
            "Reason": "from before",
            "StartsAt": NOON,
            "ExpiresAt": NOON + timedelta(minutes=30),
        }
    )
    switch = api(settings, table, gateway=gateway)
    listed = await switch.handle("GET", None, b"", headers=OPERATOR, now=NOON)
    (old,) = listed.body["surges"]
    assert (old["reason"], old["raisedBy"], old["endedBy"]) == ("from before", None, None)
    # The schedule still honours it.
    assert [s.always_ready for s in await store.list_active(table, now=NOON)] == [9]
    ended = await switch.handle("DELETE", "a" * 32, b"", headers=OPERATOR, now=NOON)
    assert ended.body["surge"]["raisedBy"] is None
    assert ended.body["surge"]["endedBy"]["objectId"] == OPERATOR_OID


def _refused(response: Any, status: int, code: str) -> None:
    assert (response.status, response.body["error"]) == (status, code)
    assert set(response.body) == {"error", "message", "field"}


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_no_principal_is_a_401_and_nothing_is_stored_or_scaled(
    settings: ScaleSettings,
    table: TableClient,
    fake: FakeArm,
    gateway: AzureArmGateway,
    method: str,
) -> None:
    switch = api(settings, table, gateway=gateway)
    sid = None if method != "DELETE" else "0" * 32
    response = await switch.handle(method, sid, body(), headers={}, now=NOON)
    _refused(response, 401, "unauthenticated")
    assert response.body["field"] == "X-MS-CLIENT-PRINCIPAL"
    assert "Entra ID" in response.body["message"]
    # The name and id headers alone are not a principal.
    only_id = {k: v for k, v in OPERATOR.items() if k != "X-MS-CLIENT-PRINCIPAL"}
    _refused(
        await switch.handle(method, sid, body(), headers=only_id, now=NOON), 401, "unauthenticated"
    )
    assert await _rows(table) == [] and fake.requests == []


MALFORMED_PRINCIPALS: list[tuple[str, str]] = [
    ("not base64", "@@not-base64@@"),
    ("empty", ""),
    ("base64 of text", encoded("roles=Surge.Operate")),
    ("not UTF-8", base64.b64encode(b"\xff\xfe{").decode()),
    ("a JSON list", encoded(json.dumps([{"typ": "roles", "val": "Surge.Operate"}]))),
    ("claims not a list", encoded(json.dumps({"claims": {"roles": "Surge.Operate"}}))),
    ("no claims", encoded(json.dumps({"auth_typ": "aad"}))),
    (
        "a claim value not text",
        encoded(json.dumps({"claims": [{"typ": "roles", "val": ["Surge.Operate"]}]})),
    ),
    ("a claim not an object", encoded(json.dumps({"claims": ["Surge.Operate"]}))),
    (
        "no object id anywhere",
        encoded(json.dumps({"claims": [{"typ": "roles", "val": "Surge.Operate"}]})),
    ),
    ("an object id that is no GUID", encoded(principal(oid="ada@contoso.example"))),
    ("nested past the decoder", encoded("[" * 100_000)),
    ("too long", encoded(principal(extra=(("groups", "g" * 70_000),)))),
]


@pytest.mark.parametrize(
    "raw", [r for _, r in MALFORMED_PRINCIPALS], ids=[n for n, _ in MALFORMED_PRINCIPALS]
)
async def test_a_principal_that_cannot_be_read_is_a_401_that_never_echoes_it(
    settings: ScaleSettings, table: TableClient, fake: FakeArm, raw: str
) -> None:
    headers = {"X-MS-CLIENT-PRINCIPAL": raw}
    response = await api(settings, table).handle("POST", None, body(), headers=headers, now=NOON)
    _refused(response, 401, "invalid_principal")
    assert response.body["field"] == "X-MS-CLIENT-PRINCIPAL"
    text = json.dumps(response.body)
    assert not raw or raw[:12] not in text
    assert "ada@" not in text and "Surge.Operate" not in text
    assert await _rows(table) == [] and fake.requests == []


@pytest.mark.parametrize(
    "roles", [(), ("Surge.Read",), ("surge.operate",), ("Surge.Operate.Extra", "Admin")]
)
async def test_a_signed_in_identity_without_the_app_role_is_a_403(
    settings: ScaleSettings,
    table: TableClient,
    fake: FakeArm,
    roles: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    switch = api(settings, table)
    with caplog.at_level(logging.WARNING, logger="dipguard.surge"):
        for method in ("GET", "POST"):
            response = await switch.handle(
                method, None, body(), headers=principal_headers(roles), now=NOON
            )
            _refused(response, 403, "forbidden")
            assert "Surge.Operate" in response.body["message"]
    assert await _rows(table) == [] and fake.requests == []
    # The refusal names whom it refused, and nothing else of the principal.
    assert [r.getMessage() for r in caplog.records] == [
        f"surge_refused 403 forbidden by {OPERATOR_OID}"
    ] * 2


async def test_a_role_another_claim_named_does_not_count(
    settings: ScaleSettings, table: TableClient
) -> None:
    # "Surge.Operate" as a group name or a scope is not the app role.
    headers = principal_headers((), extra=(("groups", "Surge.Operate"), ("scp", "Surge.Operate")))
    response = await api(settings, table).handle("GET", None, b"", headers=headers, now=NOON)
    _refused(response, 403, "forbidden")


async def test_the_role_is_read_under_the_role_claim_type_app_service_names(
    settings: ScaleSettings, table: TableClient
) -> None:
    # Claim mapping may give the role the WS-Federation type the principal's role_typ names.
    decoded = principal(())
    decoded["claims"].append({"typ": decoded["role_typ"], "val": "Surge.Operate"})
    # Header names in any case, as the worker hands them over in lower case.
    headers = {"x-ms-client-principal": encoded(decoded)}
    response = await api(settings, table).handle("GET", None, b"", headers=headers, now=NOON)
    assert response.status == 200


async def test_the_name_falls_back_to_the_name_header_and_stays_one_line(
    settings: ScaleSettings, table: TableClient, gateway: AzureArmGateway
) -> None:
    decoded = principal()
    decoded["claims"] = [c for c in decoded["claims"] if c["typ"] != "name"]
    headers = {
        "X-MS-CLIENT-PRINCIPAL": encoded(decoded),
        "X-MS-CLIENT-PRINCIPAL-NAME": "Ada\nsurge 0 started by someone else",
    }
    created = await api(settings, table, gateway=gateway).handle(
        "POST", None, body(), headers=headers, now=NOON
    )
    assert created.body["surge"]["raisedBy"]["name"] == "Ada surge 0 started by someone else"


async def test_without_app_service_authentication_every_request_is_a_401_even_with_headers(
    settings: ScaleSettings, table: TableClient, fake: FakeArm
) -> None:
    switch = api(_untrusted(settings), table)
    for method in ("GET", "POST"):
        response = await switch.handle(method, None, body(), headers=OPERATOR, now=NOON)
        _refused(response, 401, "unauthenticated")
        assert "App Service Authentication is not on" in response.body["message"]
    assert await _rows(table) == [] and fake.requests == []


async def test_the_local_setting_lets_the_dev_host_believe_the_headers(
    settings: ScaleSettings, table: TableClient
) -> None:
    local = dataclasses.replace(_untrusted(settings), surge_trust_local_principal=True)
    response = await api(local, table).handle("GET", None, b"", headers=OPERATOR, now=NOON)
    assert response.status == 200
    assert (await api(local, table).handle("GET", None, b"", headers={})).status == 401


def test_the_local_setting_is_refused_in_azure(base_env: dict[str, str]) -> None:
    env = {**scale_env(base_env), "SURGE_TRUST_LOCAL_PRINCIPAL": "true"}
    assert load_scale_settings(env).principal_trusted is True
    with pytest.raises(SettingsError) as caught:
        load_scale_settings({**env, "WEBSITE_SITE_NAME": "func-dipguard-ops"})
    assert caught.value.name == "SURGE_TRUST_LOCAL_PRINCIPAL"
