"""The API Management policy XML is well-formed and does what the docs promise.

Per-subscription rate limit, a cap on concurrent backend calls, a forward timeout between the
app's deadline and Genesys's budget, 429s and 413s with Retry-After and the app's JSON error
shape, routing to the app's backend with a token from the gateway's managed identity, and
no subscription key passed on.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.support.bicep import BICEP, ROOT, policy


@pytest.mark.parametrize("path", sorted(BICEP.rglob("*.xml")), ids=lambda p: p.name)
def test_policy_xml_is_well_formed(path: Path) -> None:
    root = ET.fromstring(path.read_text())
    assert root.tag == "policies"
    assert [child.tag for child in root] == ["inbound", "backend", "outbound", "on-error"]


def test_policy_rate_limits_each_subscription_per_second() -> None:
    (limit,) = policy().findall("./inbound/rate-limit-by-key")
    assert limit.get("calls") == "__RATE_LIMIT_CALLS__"
    assert limit.get("renewal-period") == "1"
    assert limit.get("counter-key") == "@(context.Subscription.Id)"
    assert limit.get("retry-after-header-name") == "Retry-After"


def test_policy_limits_concurrent_backend_calls() -> None:
    (limit,) = policy().findall("./backend/limit-concurrency")
    assert limit.get("max-count") == "__MAX_CONCURRENCY__"
    assert [child.tag for child in limit] == ["forward-request"]


def test_policy_forward_timeout_sits_between_the_app_deadline_and_genesys_budget() -> None:
    forwards = policy().findall(".//forward-request")
    assert len(forwards) == 1
    timeout_ms = int(forwards[0].get("timeout-ms", "0"))
    assert 2500 < timeout_ms < 3000
    assert forwards[0].get("timeout") is None


def _throttle_answer(when: ET.Element) -> tuple[dict[str, str], dict[str, Any]]:
    """The Retry-After and Content-Type values and the JSON body a 429 branch answers."""
    assert when.find("./return-response/set-status").get("code") == "429"  # type: ignore[union-attr]
    headers = {
        h.get("name"): h.find("value").text  # type: ignore[union-attr]
        for h in when.findall("./return-response/set-header")
    }
    return headers, json.loads(when.find("./return-response/set-body").text)  # type: ignore[return-value,union-attr,arg-type]


def test_policy_answers_a_rate_limited_call_429_with_its_retry_after_and_a_json_body() -> None:
    (when,) = [
        w
        for w in policy().findall("./on-error/choose/when")
        if "RateLimitExceeded" in (w.get("condition") or "")
    ]
    headers, body = _throttle_answer(when)
    assert "retryAfterSeconds" in headers["Retry-After"]
    assert headers["Content-Type"] == "application/json"
    assert body["error"] == "too_many_requests" and body["field"] is None


def test_policy_answers_a_call_over_the_concurrency_cap_429_and_json_on_either_path() -> None:
    # Microsoft documents only the status of a limit-concurrency rejection, not whether it
    # reaches on-error (https://learn.microsoft.com/azure/api-management/limit-concurrency-policy),
    # so the policy rewrites it both as an error and as a response passing through outbound.
    (as_error,) = [
        w
        for w in policy().findall("./on-error/choose/when")
        if "limit-concurrency" in (w.get("condition") or "")
    ]
    (as_response,) = policy().findall("./outbound/choose/when")
    assert "StatusCode == 429" in as_response.get("condition")  # type: ignore[operator]
    for when in (as_error, as_response):
        headers, body = _throttle_answer(when)
        assert int(headers["Retry-After"]) >= 1
        assert headers["Content-Type"] == "application/json"
        assert body["error"] == "too_many_requests" and body["field"] is None


def test_the_app_never_answers_429_so_the_outbound_rewrite_only_touches_the_gateways() -> None:
    import ast

    tree = ast.parse((ROOT / "shared" / "dip" / "contract.py").read_text(encoding="utf-8"))
    statuses = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "ContractError"
        and isinstance(node.args[0], ast.Constant)
    }
    assert statuses and 429 not in statuses


def test_policy_limits_the_request_body_to_8_kib_with_a_413() -> None:
    (validate,) = policy().findall("./inbound/validate-content")
    assert validate.get("max-size") == "8192"
    assert validate.get("size-exceeded-action") == "prevent"
    statuses = {
        when.find("./return-response/set-status").get("code"): when  # type: ignore[union-attr]
        for when in policy().findall("./on-error/choose/when")
    }
    body = json.loads(statuses["413"].find("./return-response/set-body").text)  # type: ignore[union-attr,arg-type]
    assert body["error"] == "body_too_large"
    from shared.dip.contract import MAX_BODY_BYTES

    assert MAX_BODY_BYTES == 8192


def test_policy_routes_to_the_apps_backend() -> None:
    (backend,) = policy().findall("./inbound/set-backend-service")
    assert backend.get("backend-id") == "__BACKEND_ID__"


def test_policy_calls_the_app_with_a_token_for_its_registration_and_no_caller_key() -> None:
    inbound = policy().find("./inbound")
    assert inbound is not None
    # The system-assigned identity (no client-id), for the app registration's audience; a
    # failure to get a token is an error, never a call without one (no ignore-error).
    (auth,) = inbound.findall("authentication-managed-identity")
    assert auth.attrib == {"resource": "__BACKEND_AUDIENCE__"}
    removed = [
        h.get("name", "").lower()
        for h in inbound.findall("set-header")
        if h.get("exists-action") == "delete"
    ]
    assert "ocp-apim-subscription-key" in removed
    # No key of any kind is set towards the backend.
    text = ET.tostring(policy(), encoding="unicode").lower()
    assert "x-functions-key" not in text and "{{" not in text


def test_every_gateway_error_body_has_the_apps_error_shape() -> None:
    bodies = policy().findall(".//return-response/set-body")
    assert len(bodies) >= 5
    for body in bodies:
        assert set(json.loads(body.text)) == {"error", "message", "field"}  # type: ignore[arg-type]
