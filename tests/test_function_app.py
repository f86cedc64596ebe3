"""function_app.py inside Microsoft's worker, served by the dev host over real HTTP: routes,
auth levels, status codes; the functions each app registers (DIPGUARD_FUNCTIONS); and the
scale wing's timer and surge route against the HTTPS fake ARM, with the operator signed in
by the headers App Service Authentication sets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from azure.data.tables.aio import TableClient

from app.runtime import Runtime, set_runtime
from app.settings import load_settings
from devhost.host import DevHost
from devhost.worker import Worker
from shared.dip.customers import CustomerRecord, entities_for
from shared.scale.arm import AzureArmGateway
from tests.support.fake_arm import FakeArm, StubCredential
from tests.support.keys import KEYS
from tests.support.services import ROOT, free_port, wait_for_port
from tests.support.surges import (
    OPERATOR,
    OPERATOR_NAME,
    OPERATOR_OID,
    body,
    principal_headers,
    scale_env,
)

CONV = "43436e96-5c19-4c52-b951-4ea05d9a9af7"
FUNCTION_KEY = "test-function-key"
MASTER_KEY = "test-master-key"


@pytest.fixture
def app_env(base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    return base_env


@pytest.fixture
async def client(
    app_env: dict[str, str], app_worker: Worker
) -> AsyncIterator[TestClient[Any, Any]]:
    async with TableClient.from_connection_string(
        app_env["CustomerStorage"], app_env["CUSTOMER_TABLE"]
    ) as table:
        await table.create_table()
        for entity in entities_for(
            CustomerRecord("C-1001", "Gold", True, "en-US"), ["+13175550116"], KEYS
        ):
            await table.upsert_entity(entity)
    rt = Runtime(load_settings(app_env))
    set_runtime(rt)
    host = DevHost(
        app_worker,
        enforce_keys=True,
        function_key=FUNCTION_KEY,
        master_key=MASTER_KEY,
        route_prefix="api",
    )
    async with TestClient(TestServer(host.build())) as test_client:
        yield test_client
    await rt.dips.drain()
    await rt.clients.close()
    set_runtime(None)


LOOKUP_FUNCTIONS = {
    "ivr_lookup": "httpTrigger",
    "health": "httpTrigger",
    "warmup": "warmupTrigger",
    "cache_warm": "timerTrigger",
}
OPERATOR_FUNCTIONS = {
    "health": "httpTrigger",
    "scale_schedule": "timerTrigger",
    "surge": "httpTrigger",
}


def test_microsofts_worker_indexes_and_loads_every_function(app_worker: Worker) -> None:
    # The same indexing Azure runs when the app starts: one refused function would leave
    # the app with none at all, the data dip included.
    triggers = {f.name: f.trigger_type for f in app_worker.functions}
    assert triggers == {
        "ivr_lookup": "httpTrigger",
        "health": "httpTrigger",
        "warmup": "warmupTrigger",
        "scale_schedule": "timerTrigger",
        "surge": "httpTrigger",
        "cache_warm": "timerTrigger",
    }


def test_the_worker_reports_the_routes_and_auth_levels_the_host_serves(
    app_worker: Worker,
) -> None:
    http = {f.name: f.trigger for f in app_worker.functions if f.trigger_type == "httpTrigger"}
    assert (
        http["ivr_lookup"]["route"],
        http["ivr_lookup"]["methods"],
        http["ivr_lookup"]["authLevel"],
    ) == ("lookup", ["POST"], "ANONYMOUS")
    assert (http["health"]["route"], http["health"]["methods"]) == ("health", ["GET"])
    assert (
        http["surge"]["route"],
        sorted(http["surge"]["methods"]),
        http["surge"]["authLevel"],
    ) == ("surge/{id?}", ["DELETE", "GET", "POST"], "ANONYMOUS")


# --- one codebase, two apps: the functions DIPGUARD_FUNCTIONS registers --------------------

# Microsoft's worker keeps the indexed app in module-level state, so each function set is
# indexed by a worker of its own, in a process of its own, as each app's worker in Azure.
WORKER_PROBE = """
import asyncio, json, sys
from pathlib import Path
from devhost.worker import Worker, WorkerRefused
worker = Worker(Path(sys.argv[1]))
try:
    asyncio.run(worker.start())
except WorkerRefused as exc:
    print(json.dumps({"refused": str(exc)}))
else:
    print(json.dumps({
        f.name: [f.trigger_type, f.trigger.get("route"), f.trigger.get("authLevel")]
        for f in worker.functions
    }))
    worker.stop()
"""


def index_in_own_worker(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE, str(ROOT / "function_app.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


@pytest.mark.parametrize(
    ("functions", "expected"),
    [
        ("lookup", LOOKUP_FUNCTIONS),
        ("operator", OPERATOR_FUNCTIONS),
        ("all", {**LOOKUP_FUNCTIONS, **OPERATOR_FUNCTIONS}),
    ],
)
def test_each_app_registers_only_its_own_functions(
    app_env: dict[str, str], functions: str, expected: dict[str, str]
) -> None:
    indexed = index_in_own_worker(dict(os.environ, DIPGUARD_FUNCTIONS=functions))
    assert {name: spec[0] for name, spec in indexed.items()} == expected
    # Each app has its own health, at the same route, behind a host key.
    assert indexed["health"][1:] == ["health", "FUNCTION"]


def test_the_dev_host_serves_every_function_when_the_setting_is_left_out(
    app_env: dict[str, str],
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DIPGUARD_FUNCTIONS"}
    assert set(index_in_own_worker(env)) == set(LOOKUP_FUNCTIONS) | set(OPERATOR_FUNCTIONS)


def test_an_unknown_function_set_stops_the_worker_naming_the_setting(
    app_env: dict[str, str],
) -> None:
    indexed = index_in_own_worker(dict(os.environ, DIPGUARD_FUNCTIONS="everything"))
    assert "DIPGUARD_FUNCTIONS" in indexed["refused"]
    assert set(indexed) == {"refused"}


def keyed(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"x-functions-key": FUNCTION_KEY, **(extra or {})}


async def post_lookup(
    client: TestClient[Any, Any], data: bytes, content_type: str = "application/json"
) -> tuple[int, Any]:
    resp = await client.post(
        "/api/lookup", data=data, headers=keyed({"Content-Type": content_type})
    )
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.status, await resp.json()


async def test_a_known_caller_is_answered_200_with_the_flat_contract(
    client: TestClient[Any, Any],
) -> None:
    status, body = await post_lookup(
        client, json.dumps({"conversationId": CONV, "ani": "tel:+13175550116"}).encode()
    )
    assert status == 200
    assert body == {
        "customerFound": True,
        "customerId": "C-1001",
        "customerTier": "Gold",
        "isVip": True,
        "preferredLanguage": "en-US",
        "source": "database",
        "matchedBy": "ani",
    }


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"{", "application/json", 400, "invalid_json"),
        (b'{"conversationId": ' + b"9" * 5000 + b"}", "application/json", 400, "invalid_json"),
        (b'{"conversationId": NaN}', "application/json", 400, "invalid_json"),
        (b"[]", "application/json", 400, "not_an_object"),
        (b'{"ani": "tel:+13175550116"}', "application/json", 400, "missing_field"),
        (b'{"conversationId": "x", "ani": "1"}', "application/json", 400, "invalid_field"),
        (json.dumps({"conversationId": CONV}).encode(), "application/json", 400, "missing_field"),
        (
            json.dumps({"conversationId": CONV, "ani": "1", "p": "x" * 9000}).encode(),
            "application/json",
            413,
            "body_too_large",
        ),
        (b"conversationId=1", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
async def test_malformed_requests_get_a_4xx_json_error(
    client: TestClient[Any, Any], data: bytes, content_type: str, status: int, code: str
) -> None:
    got, body = await post_lookup(client, data, content_type)
    assert got == status
    assert body["error"] == code and body["message"] and "field" in body


async def test_the_lookup_needs_no_runtime_key_while_health_still_does(
    client: TestClient[Any, Any],
) -> None:
    # In Azure, App Service Authentication admits only API Management's identity to the
    # lookup (bicep/modules/function-app.bicep); the runtime itself asks no key of it.
    data = json.dumps({"conversationId": CONV, "ani": "anonymous"}).encode()
    headers = {"Content-Type": "application/json"}
    ok = await client.post("/api/lookup", data=data, headers=headers)
    assert ok.status == 200 and (await ok.json())["source"] == "none"
    assert (await client.get("/api/health")).status == 401
    bad = {"x-functions-key": "wrong"}
    assert (await client.get("/api/health", headers=bad)).status == 401
    assert (await client.get(f"/api/health?code={MASTER_KEY}")).status == 200


async def test_only_post_is_routed_to_lookup(client: TestClient[Any, Any]) -> None:
    assert (await client.get("/api/lookup", headers=keyed())).status == 405


async def test_health_reports_dependencies_without_secrets(
    client: TestClient[Any, Any], app_env: dict[str, str]
) -> None:
    resp = await client.get("/api/health", headers=keyed())
    body = await resp.json()
    assert resp.status == 200
    assert body["redis"] == "ok" and body["table"] == "ok" and body["status"] == "ok"
    # The read model's state and Redis memory, whether or not a warm has run on this Redis.
    assert body["readModel"] in {"never warmed", "fresh", "stale"}
    assert body["redisUsedMemoryBytes"] > 0
    assert body["lookupKeySecrets"] == 1
    text = json.dumps(body)
    assert "AccountKey" not in text and "redis://" not in text and "127.0.0.1" not in text


async def test_warmup_runs_through_the_admin_endpoint_with_the_master_key(
    client: TestClient[Any, Any],
) -> None:
    assert (await client.post("/admin/functions/warmup", json={})).status == 401
    resp = await client.post(
        "/admin/functions/warmup", json={}, headers={"x-functions-key": MASTER_KEY}
    )
    assert resp.status == 202
    resp = await client.post(
        "/admin/functions/no_such", json={}, headers={"x-functions-key": MASTER_KEY}
    )
    assert resp.status == 404


async def test_a_dead_redis_and_table_still_answer_200(
    client: TestClient[Any, Any], app_env: dict[str, str]
) -> None:
    # Port 1 for both, whatever port the session's Azurite listens on.
    dead_table = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:1", app_env["CustomerStorage"])
    assert dead_table != app_env["CustomerStorage"]
    broken = dict(app_env, REDIS_URL="redis://127.0.0.1:1/0", CustomerStorage=dead_table)
    rt = Runtime(load_settings(broken))
    set_runtime(rt)
    try:
        status, body = await post_lookup(
            client, json.dumps({"conversationId": CONV, "customerId": "C-1001"}).encode()
        )
        health = await (await client.get("/api/health", headers=keyed())).json()
    finally:
        await rt.clients.close()
    assert status == 200 and body["source"] == "degraded"
    assert health["status"] == "degraded"


# --- the dev host as users run it ---------------------------------------------------------


@pytest.fixture
def devhost_process(app_env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--port", str(port)],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, timeout=30)
        yield port
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


async def test_the_dev_host_serves_the_readme_curl_example(devhost_process: int) -> None:
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"http://127.0.0.1:{devhost_process}/api/lookup",
            json={"conversationId": CONV, "ani": "tel: +1 317-555-0116"},
        )
        body = await resp.json()
        status = await (
            await session.get(f"http://127.0.0.1:{devhost_process}/admin/host/status")
        ).json()
    assert resp.status == 200 and set(body) >= {"customerFound", "source"}
    assert "ivr_lookup" in status["functions"] and "warmup" in status["functions"]


async def test_a_schedule_nested_past_the_decoder_still_serves_the_lookup(
    app_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # function_app.py checks SCALE_SCHEDULE as it is imported: a schedule no decoder can
    # read is logged, and the data dip is registered and answers all the same.
    monkeypatch.setenv("SCALE_SCHEDULE", "[" * 100_000)
    port: int = request.getfixturevalue("devhost_process")
    async with aiohttp.ClientSession() as session:
        status = await (await session.get(f"http://127.0.0.1:{port}/admin/host/status")).json()
        resp = await session.post(
            f"http://127.0.0.1:{port}/api/lookup",
            json={"conversationId": CONV, "ani": "tel:+13175550116"},
        )
    assert "ivr_lookup" in status["functions"]
    assert resp.status == 200


def test_a_bad_setting_stops_the_dev_host_naming_the_setting(app_env: dict[str, str]) -> None:
    env = dict(os.environ, MAX_DB_QPS="abc")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MAX_DB_QPS" in result.stderr
    assert time.monotonic() - started < 60


# --------------------------------------------------------------------------- the scale wing


# Whatever the wall clock says when the timer runs, this asks for 7.
ALL_DAY = {
    "timezone": "UTC",
    "default": {"alwaysReady": 1},
    "windows": [{"name": "all-day", "start": "00:00", "end": "24:00", "alwaysReady": 7}],
}


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeArm]:
    arm = FakeArm(tmp_path).start()
    arm.state.always_ready = 5  # not yet the 7 the schedule asks for
    yield arm
    arm.stop()


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


async def test_function_app_declares_the_timer_and_an_anonymous_surge_route(
    app_worker: Worker,
) -> None:
    # Anonymous to the runtime: no host key opens it, the operator's principal does.
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
    assert route["authLevel"] == "ANONYMOUS"


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


async def test_surge_route_admits_an_operator_signed_in_by_app_service_authentication(
    host: TestClient[Any, Any], fake: FakeArm, caplog: pytest.LogCaptureFixture
) -> None:
    data = body(alwaysReady=12)
    with caplog.at_level("WARNING", logger="dipguard.surge"):
        accepted = await host.post("/api/surge", data=data, headers=OPERATOR)
    assert accepted.status == 201
    assert accepted.headers["Content-Type"].startswith("application/json")
    payload = await accepted.json()
    assert payload["applied"] is True and fake.state.always_ready == 12
    ada = {"objectId": OPERATOR_OID, "name": OPERATOR_NAME}
    assert payload["surge"]["raisedBy"] == ada
    (line,) = [r.getMessage() for r in caplog.records if " started by " in r.getMessage()]
    assert f'started by {OPERATOR_OID} "{OPERATOR_NAME}": alwaysReady 12' in line
    listed = await (await host.get("/api/surge", headers=OPERATOR)).json()
    assert listed["count"] == 1 and listed["surges"][0]["raisedBy"] == ada
    gone = await host.delete(f"/api/surge/{payload['surge']['id']}", headers=OPERATOR)
    assert gone.status == 200 and fake.state.always_ready == 7
    assert (await gone.json())["surge"]["endedBy"] == ada


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        # Host keys open nothing here: the master key is no operator.
        ({"x-functions-key": MASTER_KEY}, 401, "unauthenticated"),
        ({"x-functions-key": FUNCTION_KEY}, 401, "unauthenticated"),
        ({"X-MS-CLIENT-PRINCIPAL": "not a principal"}, 401, "invalid_principal"),
        (principal_headers(("Surge.Read",)), 403, "forbidden"),
    ],
    ids=["none", "master key", "function key", "malformed", "wrong role"],
)
async def test_surge_route_refuses_all_but_an_operator_with_a_json_error(
    host: TestClient[Any, Any],
    fake: FakeArm,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    for method, path in [("POST", "/api/surge"), ("GET", "/api/surge")]:
        response = await host.request(method, path, data=body(alwaysReady=12), headers=headers)
        assert response.status == status
        assert response.headers["Content-Type"].startswith("application/json")
        payload = await response.json()
        assert (payload["error"], payload["field"] is None) == (code, status == 403)
    assert fake.calls("PATCH") == []


async def test_surge_route_believes_no_header_without_app_service_authentication(
    host: TestClient[Any, Any], fake: FakeArm, base_env: dict[str, str]
) -> None:
    env = {k: v for k, v in scale_env(base_env, ALL_DAY).items() if k != "WEBSITE_AUTH_ENABLED"}
    rt = Runtime(load_settings(env))
    set_runtime(rt)
    try:
        response = await host.post("/api/surge", data=body(alwaysReady=12), headers=OPERATOR)
    finally:
        await rt.clients.close()
    assert response.status == 401
    assert (await response.json())["error"] == "unauthenticated"
    assert fake.calls("PATCH") == []


@pytest.mark.parametrize("raw", [b"{oops", b'{"alwaysReady": ' + b"3" * 5000 + b"}"])
async def test_surge_route_malformed_json_is_a_400_with_the_error_shape(
    host: TestClient[Any, Any], raw: bytes
) -> None:
    response = await host.post("/api/surge", data=raw, headers=OPERATOR)
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
