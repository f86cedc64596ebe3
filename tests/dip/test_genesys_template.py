"""The Genesys data action's request template, rendered as Genesys renders it, then posted
to the app.

Genesys builds the body of every dip from ``config.request.requestTemplate`` in
genesys/ivr-lookup.data-action.json, a Velocity template. Velocity renders a reference whose
value is null as its own source text (``${input.ani}``), and so a method call whose result is
null (``$esc.jsonString(...)``), unless the reference or call is written quiet
(``$!{input.ani}``, ``$!esc.jsonString(...)``). An unguarded optional input therefore reaches
the app as template text instead of a value.

An optional input the flow does not pass reaches the template as null, which is why Genesys's
resiliency blueprint says to "use silent formal notation `$!{variableName}` for non-required
string inputs in a JSON request body" (GenesysCloudBlueprints/
design-architect-flow-data-actions-for-resiliency); one the flow passes as an empty string
reaches it as "". Both states, and set values, are covered for every optional input. The
template is rendered with airspeed, a Python implementation of Velocity; each body is then
posted to the app as users run it (``python -m devhost``), against the test session's real
Redis and Azurite.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables.aio import TableClient
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.dip.contract import ContractError, parse_dip_request
from shared.dip.customers import CustomerRecord, entities_for
from tests.support.genesys import (
    ACTION,
    AUTH_ACTION,
    AUTH_REQUEST,
    TEMPLATE,
    GenesysEsc,
    render_auth_request,
    render_lookup_headers,
    render_request_body,
)
from tests.support.keys import KEYS
from tests.support.services import ROOT, Azurite, RedisServer, free_port, port_open

CONTENT_TYPE = ACTION["config"]["request"]["headers"]["Content-Type"]
OPTIONAL = ("ani", "customerId", "dnis")
CONVERSATION = "43436e96-5c19-4c52-b951-4ea05d9a9af7"
DEGRADED_TIER = "Standard"

# Customer ids unique to this run: the cache is keyed by customer id or number, not by table.
BY_ID = CustomerRecord(f"GT-{uuid.uuid4().hex[:10]}", "Gold", True, "fr-CA")
BY_ANI = CustomerRecord(f"GA-{uuid.uuid4().hex[:10]}", "Silver", False, "en-US")
ANI_NUMBER = "+13175550177"
KNOWN = {"ani": "tel:+1 317-555-0177", "customerId": BY_ID.customer_id, "dnis": "tel:+18005550100"}


ESCAPES = [
    pytest.param(GenesysEsc(ascii_only=True), id="ascii-escapes"),
    pytest.param(GenesysEsc(ascii_only=False), id="utf8"),
]


def expected_payload(inputs: dict[str, str]) -> dict[str, str]:
    """What the template is meant to send for these inputs.

    ani is always sent, "" when absent or empty: a withheld caller with no customer id must
    reach the app as a valid dip (200, source "none"), not as a 400 down Genesys's Failure
    path. customerId and dnis are left out when absent or empty.
    """
    payload = {"conversationId": inputs.get("conversationId", ""), "ani": inputs.get("ani", "")}
    for name in ("customerId", "dnis"):
        if inputs.get(name):
            payload[name] = inputs[name]
    return payload


def combinations() -> list[Any]:
    """Every optional input absent, empty or set, with a conversation id."""
    cases = []
    for states in itertools.product(("absent", "empty", "set"), repeat=len(OPTIONAL)):
        inputs = {"conversationId": CONVERSATION}
        for name, state in zip(OPTIONAL, states, strict=True):
            if state != "absent":
                inputs[name] = KNOWN[name] if state == "set" else ""
        label = ",".join(f"{name}={state}" for name, state in zip(OPTIONAL, states, strict=True))
        cases.append(pytest.param(inputs, id=label))
    return cases


def expected_answer(inputs: dict[str, str]) -> dict[str, Any]:
    """The answer the inputs name: customerId wins, then the ANI, else nobody ("none")."""
    matched_by: str | None = None
    if inputs.get("customerId"):
        record: CustomerRecord | None = BY_ID
        matched_by = "customerId"
    elif inputs.get("ani"):
        record = BY_ANI
        matched_by = "ani"
    else:
        record = None
    if record is None:
        return {
            "customerFound": False,
            "customerId": "",
            "customerTier": DEGRADED_TIER,
            "isVip": False,
            "preferredLanguage": "",
            "source": "none",
            "matchedBy": None,
        }
    return {
        "customerFound": True,
        "customerId": record.customer_id,
        "customerTier": record.tier,
        "isVip": record.is_vip,
        "preferredLanguage": record.preferred_language,
        "matchedBy": matched_by,
    }


# --- rendering ----------------------------------------------------------------------------------


def test_every_reference_and_method_call_in_the_template_is_quiet() -> None:
    # A non-quiet reference renders its own text for a null value; quiet ones never do.
    assert "$" in TEMPLATE
    loud = [i for i, ch in enumerate(TEMPLATE) if ch == "$" and TEMPLATE[i + 1 : i + 2] != "!"]
    assert loud == [], [TEMPLATE[i : i + 30] for i in loud]


@pytest.mark.parametrize("esc", ESCAPES)
@pytest.mark.parametrize("inputs", combinations())
def test_absent_and_empty_inputs_render_a_json_body_without_template_text(
    inputs: dict[str, str], esc: GenesysEsc
) -> None:
    body = render_request_body(inputs, esc)
    assert json.loads(body) == expected_payload(inputs), body
    request = parse_dip_request(body.encode("utf-8"), CONTENT_TYPE)
    assert request.conversation_id == CONVERSATION
    assert request.ani == inputs.get("ani", "")
    assert request.customer_id == (inputs.get("customerId") or None)
    assert request.dnis == (inputs.get("dnis") or None)


TRICKY = [
    'sip:"odd\\caller"@carrier.example',
    "back\\slash and \\u0041 that is not an escape",
    "tab\tnew line\ncarriage\rform feed\x0cbell\x07 nul\x00",
    "Zentrale München ☎ 📞 محمد 電話",
    "line\u2028paragraph\u2029separators",
    "$!{input.ani} ${input.dnis} $esc.jsonString('x') #if(true)#end #{end} ## not a comment",
    "'single' and \"double\" quotes, a } and a {",
]


@pytest.mark.parametrize("esc", ESCAPES)
@pytest.mark.parametrize("name", OPTIONAL)
@pytest.mark.parametrize("value", TRICKY, ids=lambda v: repr(v)[:24])
def test_values_that_need_escaping_arrive_as_the_exact_value(
    value: str, name: str, esc: GenesysEsc
) -> None:
    inputs = {"conversationId": CONVERSATION, name: value}
    payload = json.loads(render_request_body(inputs, esc))
    assert payload[name] == value
    assert payload == expected_payload(inputs)


@settings(max_examples=300, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            name: st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
            for name in OPTIONAL
        },
    ),
    ascii_only=st.booleans(),
)
def test_any_text_in_any_optional_input_renders_json_that_reads_back_as_that_text(
    values: dict[str, str], ascii_only: bool
) -> None:
    inputs = {"conversationId": CONVERSATION, **values}
    body = render_request_body(inputs, GenesysEsc(ascii_only))
    assert json.loads(body) == expected_payload(inputs)


def test_a_missing_conversation_id_renders_as_empty_and_is_refused_by_name() -> None:
    # The input contract requires it, so Genesys should never run the action without it;
    # if it did, the app must say which field, not receive template text.
    body = render_request_body({"ani": KNOWN["ani"]}, GenesysEsc(ascii_only=False))
    assert json.loads(body) == {"conversationId": "", "ani": KNOWN["ani"]}
    with pytest.raises(ContractError) as refused:
        parse_dip_request(body.encode("utf-8"), CONTENT_TYPE)
    assert (refused.value.status, refused.value.field) == (400, "conversationId")


# --- the OAuth credential: the custom auth action and the token in the lookup ------------------

CREDENTIALS = {
    "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "clientId": "6731de76-14a6-49ae-97bc-6eba6914391e",
    "clientSecret": "Qx8~Ab.c_d-E+f/g=h&i%j k",
    "scope": "0f6b2a3e-6c1d-4a4e-9d1b-2b8c0d1e2f3a/.default",
}
TOKEN_RESPONSE = {
    "token_type": "Bearer",
    "expires_in": 3599,
    "access_token": "eyJ0eXAi.eyJhdWQi.c2ln",
}


def test_the_export_is_a_user_defined_oauth_integration_with_its_auth_action() -> None:
    assert AUTH_ACTION["integrationType"] == ACTION["integrationType"] == "custom-rest-actions"
    assert AUTH_ACTION["credentialType"] == "userDefinedOAuth"
    assert set(AUTH_ACTION["credentialFields"]) == set(CREDENTIALS)
    # Genesys fixes the auth action's contracts and refuses timeoutSeconds on it.
    assert set(AUTH_ACTION["config"]) == {"request", "response"}
    assert AUTH_REQUEST["requestType"] == "POST"
    assert AUTH_REQUEST["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert AUTH_ACTION["config"]["response"]["successTemplate"] == "${rawResult}"


def test_every_reference_in_the_auth_action_and_the_lookup_headers_is_quiet() -> None:
    templates = [AUTH_REQUEST["requestUrlTemplate"], AUTH_REQUEST["requestTemplate"]]
    templates += list(ACTION["config"]["request"]["headers"].values())
    for template in templates:
        loud = [i for i, ch in enumerate(template) if ch == "$" and template[i + 1 : i + 2] != "!"]
        assert loud == [], template


@pytest.mark.parametrize("esc", ESCAPES)
@pytest.mark.parametrize(
    "secret", [CREDENTIALS["clientSecret"], *TRICKY], ids=lambda v: repr(v)[:24]
)
def test_the_auth_action_posts_client_credentials_to_the_tenants_v2_token_endpoint(
    secret: str, esc: GenesysEsc
) -> None:
    url, body = render_auth_request({**CREDENTIALS, "clientSecret": secret}, esc)
    # The host is fixed in the template: no credential value can send the secret elsewhere.
    assert url == f"https://login.microsoftonline.com/{CREDENTIALS['tenantId']}/oauth2/v2.0/token"
    form = urllib.parse.parse_qs(body, keep_blank_values=True, strict_parsing=True)
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": [CREDENTIALS["clientId"]],
        "client_secret": [secret],
        "scope": [CREDENTIALS["scope"]],
    }


def test_a_tenant_id_cannot_change_the_token_endpoints_host_or_path() -> None:
    url, _ = render_auth_request(
        {**CREDENTIALS, "tenantId": "evil.example/x?y#"}, GenesysEsc(False)
    )
    parts = urllib.parse.urlsplit(url)
    assert (parts.netloc, parts.query, parts.fragment) == ("login.microsoftonline.com", "", "")
    assert parts.path.endswith("/oauth2/v2.0/token") and parts.path.count("/") == 4


@pytest.mark.parametrize("esc", ESCAPES)
@pytest.mark.parametrize("inputs", combinations())
def test_both_actions_render_for_every_input_mix_with_the_token_as_a_bearer_header(
    inputs: dict[str, str], esc: GenesysEsc
) -> None:
    # What Genesys does for one dip: the auth action's request (once, then cached), then the
    # lookup with authResponse from its answer.
    url, form = render_auth_request(CREDENTIALS, esc)
    assert url.endswith("/oauth2/v2.0/token") and "grant_type=client_credentials" in form
    headers = render_lookup_headers(TOKEN_RESPONSE, esc)
    assert headers["Authorization"] == f"Bearer {TOKEN_RESPONSE['access_token']}"
    assert not any("subscription" in name.lower() for name in headers)
    assert all("$" not in value for value in headers.values())
    body = render_request_body(inputs, esc)
    assert json.loads(body) == expected_payload(inputs)


def test_without_an_auth_response_the_lookup_sends_no_template_text_as_a_token() -> None:
    headers = render_lookup_headers(None, GenesysEsc(ascii_only=False))
    assert headers["Authorization"] == "Bearer "


# --- posting to the app -------------------------------------------------------------------------


async def _seed(connection_string: str, table: str) -> None:
    async with TableClient.from_connection_string(connection_string, table) as client:
        await client.create_table()
        for entity in [*entities_for(BY_ID, [], KEYS), *entities_for(BY_ANI, [ANI_NUMBER], KEYS)]:
            await client.upsert_entity(entity)


def _start_devhost(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(timeout=10)
            tail = log.read_text(errors="replace")[-3000:]
            pytest.fail(f"python -m devhost did not start (exit {proc.returncode}):\n{tail}")
        time.sleep(0.05)
    return proc, port


@pytest.fixture(scope="module")
def lookup_url(
    azurite: Azurite, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The dev host serving function_app.py, with the two test customers seeded."""
    table = "t" + uuid.uuid4().hex[:20]
    asyncio.run(_seed(azurite.connection_string, table))
    # A Redis database of its own, so no other test's cached answer for a number shows up.
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/9"
    env = dict(
        os.environ,
        REDIS_URL=redis_url,
        CustomerStorage=azurite.connection_string,
        CUSTOMER_TABLE=table,
        SURGE_TABLE=table + "s",
        DEGRADED_TIER=DEGRADED_TIER,
        DEFAULT_REGION="US",
    )
    proc, port = _start_devhost(env, tmp_path_factory.mktemp("devhost") / "devhost.log")
    try:
        yield f"http://127.0.0.1:{port}/api/lookup"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def post(url: str, body: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=body.encode("utf-8"), method="POST", headers={"Content-Type": CONTENT_TYPE}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def assert_answers(answer: dict[str, Any], expected: dict[str, Any]) -> None:
    if expected.get("source") == "none":
        assert answer == expected
    else:
        assert {k: v for k, v in answer.items() if k != "source"} == expected
        assert answer["source"] in {"database", "cache"}


@pytest.mark.parametrize("inputs", combinations())
def test_each_combination_of_inputs_gets_the_answer_its_inputs_name(
    lookup_url: str, inputs: dict[str, str]
) -> None:
    body = render_request_body(inputs, GenesysEsc(ascii_only=False))
    status, answer = post(lookup_url, body)
    assert status == 200, answer
    assert_answers(answer, expected_answer(inputs))


@pytest.mark.parametrize("esc", ESCAPES)
@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        pytest.param(
            {"ani": "tel:+١٣١٧٥٥٥٠١٧٧"},
            expected_answer({"ani": "x"}),
            id="ani-in-arabic-indic-digits-finds-the-caller",
        ),
        pytest.param(
            {"ani": "tel:+1\u00a0317\u00a0555\u00a00177", "dnis": TRICKY[3]},
            expected_answer({"ani": "x"}),
            id="ani-with-no-break-spaces-finds-the-caller",
        ),
        pytest.param({"ani": TRICKY[0]}, expected_answer({}), id="quoted-sip-ani-names-nobody"),
        pytest.param(
            {"ani": TRICKY[5], "customerId": BY_ID.customer_id, "dnis": TRICKY[2]},
            expected_answer({"customerId": "x"}),
            id="template-text-and-control-characters-in-values-stay-values",
        ),
        pytest.param(
            {"customerId": f" {BY_ID.customer_id}\t", "dnis": TRICKY[6]},
            expected_answer({"customerId": "x"}),
            id="customer-id-with-surrounding-whitespace-finds-the-customer",
        ),
    ],
)
def test_values_that_need_escaping_reach_the_app_and_are_answered_by_the_key_they_name(
    lookup_url: str, inputs: dict[str, str], expected: dict[str, Any], esc: GenesysEsc
) -> None:
    body = render_request_body({"conversationId": CONVERSATION, **inputs}, esc)
    status, answer = post(lookup_url, body)
    assert status == 200, answer
    assert_answers(answer, expected)


@pytest.mark.parametrize("esc", ESCAPES)
def test_a_customer_id_with_quotes_parses_and_is_refused_as_that_field_not_as_bad_json(
    lookup_url: str, esc: GenesysEsc
) -> None:
    body = render_request_body(
        {"conversationId": CONVERSATION, "ani": KNOWN["ani"], "customerId": 'C"1\\2'}, esc
    )
    status, error = post(lookup_url, body)
    assert status == 400
    assert (error["error"], error["field"]) == ("invalid_field", "customerId")
