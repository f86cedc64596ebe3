"""The dev host drives Microsoft's worker library through the FunctionRpc protocol.

Each test runs ``python -m devhost`` as a user would, on a small app whose functions report
what they received, and checks what crossed the protocol in each direction.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from devhost.rpc import protos
from devhost.worker import FunctionSpec, http_answer, http_trigger
from tests.support.services import ROOT, free_port, wait_for_port

APPS = ROOT / "tests" / "support" / "apps"


@pytest.fixture(scope="module")
def echo_host() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost",
            "--port",
            str(port),
            "--script",
            str(APPS / "echo_app.py"),
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


async def _get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


def test_a_function_the_worker_refuses_stops_the_host_with_the_workers_message() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devhost",
            "--port",
            str(free_port()),
            "--script",
            str(APPS / "refused_app.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    # The worker's own FunctionLoadError, word for word as Azure would log it.
    assert "cannot load the warmup function" in result.stderr
    assert (
        "do not match the corresponding function parameter's Python type annotation "
        "Context" in result.stderr
    )


def test_a_missing_script_stops_the_host_naming_it() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devhost",
            "--port",
            str(free_port()),
            "--script",
            "no/such/function_app.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no function app script at no/such/function_app.py" in result.stderr


async def test_route_parameters_headers_body_and_query_reach_the_function_unchanged(
    echo_host: str,
) -> None:
    body = b'{"caf\xc3\xa9": [1, 2]}\x00\xff raw bytes'
    async with aiohttp.ClientSession() as session:
        resp = await session.put(
            f"{echo_host}/api/echo/box-7/42?colour=blue&empty=",
            data=body,
            headers={"X-Trace-Id": "abc 123", "Content-Type": "application/weird"},
        )
        got = await resp.json()
    assert resp.status == 200
    assert got["method"] == "PUT"
    assert got["route"] == {"item": "box-7", "n": "42"}
    assert got["query"] == {"colour": "blue"}  # the host leaves empty values out
    assert got["headers"]["x-trace-id"] == "abc 123"
    assert got["headers"]["content-type"] == "application/weird"
    assert base64.b64decode(got["body"]) == body
    assert got["url"].endswith("/api/echo/box-7/42?colour=blue&empty=")


async def test_an_optional_route_parameter_may_be_left_out(echo_host: str) -> None:
    got = await _get_json(f"{echo_host}/api/echo/only-item")
    assert got["route"] == {"item": "only-item"}
    assert got["body"] == ""


async def test_the_status_code_headers_and_body_come_back_unchanged(echo_host: str) -> None:
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"{echo_host}/api/echo/x",
            data=b"payload",
            headers={"x-answer-status": "418", "x-answer-headers": json.dumps({"X-Kept": "yes"})},
        )
        got = await resp.json()
    assert resp.status == 418
    assert resp.headers["X-Kept"] == "yes"
    assert resp.headers["Content-Type"].startswith("application/json")
    assert base64.b64decode(got["body"]) == b"payload"


async def test_a_method_the_function_does_not_take_is_405(echo_host: str) -> None:
    async with aiohttp.ClientSession() as session:
        resp = await session.patch(f"{echo_host}/api/echo/x")
    assert resp.status == 405


async def test_a_string_return_is_a_200_text_answer(echo_host: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{echo_host}/api/text") as resp:
        assert resp.status == 200
        assert await resp.text() == "plain words"


async def test_warmup_is_invoked_once_at_start(echo_host: str) -> None:
    seen = await _get_json(f"{echo_host}/api/seen")
    assert seen["warmup"] == ["WarmUpContext"]


async def test_a_timer_invocation_carries_past_due(echo_host: str) -> None:
    async with aiohttp.ClientSession() as session:
        on_time = await session.post(f"{echo_host}/admin/functions/nightly", json={})
        late = await session.post(
            f"{echo_host}/admin/functions/nightly", json={"input": json.dumps({"IsPastDue": True})}
        )
    assert (on_time.status, late.status) == (202, 202)
    timer = (await _get_json(f"{echo_host}/api/seen"))["timer"]
    assert [t["pastDue"] for t in timer[-2:]] == [False, True]


async def test_the_admin_endpoint_refuses_http_functions_and_unknown_names(
    echo_host: str,
) -> None:
    async with aiohttp.ClientSession() as session:
        for name in ("echo", "no_such"):
            resp = await session.post(f"{echo_host}/admin/functions/{name}", json={})
            assert resp.status == 404
        bad = await session.post(f"{echo_host}/admin/functions/nightly", json={"input": "[1, 2]"})
        assert bad.status == 400


def test_every_message_survives_the_wire() -> None:
    # What the host builds must be valid protocol: serialized and parsed, it is unchanged.
    pb = protos()
    data = http_trigger("POST", "http://h/api/x", {"A": "1"}, {"q": "v"}, {"id": "7"}, b"\x00")
    again = pb.TypedData.FromString(data.SerializeToString())
    assert again == data
    assert (again.http.headers["a"], again.http.params["id"], again.http.body.bytes) == (
        "1",
        "7",
        b"\x00",
    )


def test_an_http_answer_is_read_from_the_return_binding() -> None:
    pb = protos()
    fn = FunctionSpec(
        "id",
        "f",
        (
            {"type": "httpTrigger", "direction": "IN", "name": "req"},
            {"type": "http", "direction": "OUT", "name": "$return"},
        ),
    )
    response = pb.InvocationResponse(
        return_value=pb.TypedData(
            http=pb.RpcHttp(status_code="201", headers={"x-a": "b"}, body=pb.TypedData(bytes=b"{}"))
        )
    )
    answer = http_answer(response, fn)
    assert (answer.status, answer.body) == (201, b"{}")
    assert ("x-a", "b") in answer.headers
    assert http_answer(pb.InvocationResponse(), fn).status == 204
