"""The API Management policy XML is well-formed and does what the docs promise.

An optional ip-filter, a per-address limit, no query string, an Entra token from Genesys's
registration for the lookup API with its app role, a per-client limit on the token's azp, a
cap on concurrent backend calls, a forward timeout between the app's deadline and Genesys's
budget, 401s, 403s, 429s and 413s in the app's JSON error shape, routing to /lookup on the
app's backend with a token from the gateway's managed identity, and no caller credential
passed on.
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


def _inbound_tags() -> list[str]:
    return [child.tag for child in policy().find("./inbound")]  # type: ignore[union-attr]


def test_policy_rate_limits_each_source_address_before_the_token_and_each_client_after() -> None:
    per_ip, per_client = policy().findall("./inbound/rate-limit-by-key")
    assert per_ip.get("id") == "per-source-ip"
    assert per_ip.get("calls") == "__RATE_LIMIT_PER_IP_CALLS__"
    assert "context.Request.IpAddress" in per_ip.get("counter-key", "")
    assert per_client.get("id") == "per-client"
    assert per_client.get("calls") == "__RATE_LIMIT_CALLS__"
    client_key = per_client.get("counter-key", "")
    assert '"callerToken"' in client_key and '"azp"' in client_key and '"appid"' in client_key
    assert "Subscription" not in client_key
    for limit in (per_ip, per_client):
        assert limit.get("renewal-period") == "1"
        assert limit.get("retry-after-header-name") == "Retry-After"
    tags = _inbound_tags()
    token = tags.index("validate-azure-ad-token")
    assert [i for i, tag in enumerate(tags) if tag == "rate-limit-by-key"] == [
        tags.index("rate-limit-by-key"),
        token + 1,
    ]
    assert tags.index("rate-limit-by-key") < token


def test_policy_admits_only_an_entra_token_from_genesys_for_the_lookup_api_with_its_role() -> None:
    (check,) = policy().findall("./inbound/validate-azure-ad-token")
    assert check.get("tenant-id") == "__TENANT_ID__"
    assert check.get("header-name") == "Authorization"
    assert check.get("query-parameter-name") is None and check.get("token-value") is None
    assert check.get("failed-validation-httpcode") == "401"
    assert check.get("output-token-variable-name") == "callerToken"
    # The order Microsoft's policy statement gives: client ids, audiences, claims.
    assert [child.tag for child in check] == [
        "client-application-ids",
        "audiences",
        "required-claims",
    ]
    ids = [e.text for e in check.findall("./client-application-ids/application-id")]
    assert ids == ["__GENESYS_CLIENT_ID__"]
    assert [e.text for e in check.findall("./audiences/audience")] == ["__LOOKUP_API_AUDIENCE__"]
    (claim,) = check.findall("./required-claims/claim")
    assert claim.get("name") == "roles"
    assert [v.text for v in claim.findall("value")] == ["__LOOKUP_APP_ROLE__"]
    # Nothing reaches the backend or the body check before the token does.
    tags = _inbound_tags()
    for later in ("validate-content", "set-backend-service", "authentication-managed-identity"):
        assert tags.index("validate-azure-ad-token") < tags.index(later)


def _unauthorized(when: ET.Element) -> dict[str, Any]:
    assert when.find("./return-response/set-status").get("code") == "401"  # type: ignore[union-attr]
    headers = {
        h.get("name"): h.find("value").text  # type: ignore[union-attr]
        for h in when.findall("./return-response/set-header")
    }
    assert headers == {"WWW-Authenticate": "Bearer", "Content-Type": "application/json"}
    return json.loads(when.find("./return-response/set-body").text)  # type: ignore[union-attr,arg-type]


def test_policy_refuses_any_query_string_with_a_json_401_before_the_token_check() -> None:
    # The lookup takes no query parameter: a key or token there is refused, never read.
    inbound = policy().find("./inbound")
    assert inbound is not None
    (when,) = inbound.findall("./choose/when")
    assert "Request.Url.Query.Count > 0" in when.get("condition", "")
    assert _unauthorized(when)["error"] == "unauthorized"
    tags = _inbound_tags()
    assert tags.index("choose") < tags.index("validate-azure-ad-token")


def test_policy_answers_a_refused_token_or_key_with_a_json_401() -> None:
    (when,) = [
        w
        for w in policy().findall("./on-error/choose/when")
        if "validate-azure-ad-token" in (w.get("condition") or "")
    ]
    assert '"authorization"' in when.get("condition", "")
    body = _unauthorized(when)
    assert body == {"error": "unauthorized", "message": body["message"], "field": None}


def test_policy_ip_filter_is_a_placeholder_answered_with_a_json_403() -> None:
    inbound = policy().find("./inbound")
    assert inbound is not None
    assert inbound.findall("ip-filter") == []
    # The placeholder sits before the first limit, where Bicep puts the filter or nothing.
    assert "__GENESYS_IP_FILTER__" in (inbound.find("base").tail or "")  # type: ignore[union-attr]
    (when,) = [
        w
        for w in policy().findall("./on-error/choose/when")
        if "ip-filter" in (w.get("condition") or "")
    ]
    assert when.find("./return-response/set-status").get("code") == "403"  # type: ignore[union-attr]
    assert json.loads(when.find("./return-response/set-body").text)["error"] == "forbidden"  # type: ignore[union-attr,arg-type]


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


def test_policy_answers_either_rate_limit_429_with_its_retry_after_and_a_json_body() -> None:
    whens = policy().findall("./on-error/choose/when")
    (per_ip,) = [w for w in whens if '"per-source-ip"' in (w.get("condition") or "")]
    (per_client,) = [w for w in whens if "RateLimitExceeded" in (w.get("condition") or "")]
    # The per-address branch comes first, so its calls are named as what they are.
    assert whens.index(per_ip) < whens.index(per_client)
    for when, says in ((per_ip, "this address"), (per_client, "this client")):
        headers, body = _throttle_answer(when)
        assert "retryAfterSeconds" in headers["Retry-After"]
        assert headers["Content-Type"] == "application/json"
        assert body["error"] == "too_many_requests" and body["field"] is None
        assert says in body["message"]


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


def test_policy_routes_only_to_lookup_on_the_apps_backend_without_the_callers_query() -> None:
    (backend,) = policy().findall("./inbound/set-backend-service")
    assert backend.get("backend-id") == "__BACKEND_ID__"
    (rewrite,) = policy().findall("./inbound/rewrite-uri")
    assert rewrite.attrib == {"template": "/lookup", "copy-unmatched-params": "false"}


def test_policy_calls_the_app_with_a_token_for_its_registration_and_no_caller_key() -> None:
    inbound = policy().find("./inbound")
    assert inbound is not None
    # The system-assigned identity (no client-id), for the app registration's audience; a
    # failure to get a token is an error, never a call without one (no ignore-error).
    (auth,) = inbound.findall("authentication-managed-identity")
    assert auth.attrib == {"resource": "__BACKEND_AUDIENCE__"}
    children = list(inbound)
    removed = {
        h.get("name", "").lower(): children.index(h)
        for h in inbound.findall("set-header")
        if h.get("exists-action") == "delete"
    }
    # Both credential headers go before the gateway sets its own Authorization, and nothing
    # sets a header towards the backend other than the managed identity's token.
    assert set(removed) == {"authorization", "ocp-apim-subscription-key"}
    assert max(removed.values()) < children.index(auth)
    assert [h for h in inbound.findall("set-header") if h.get("exists-action") != "delete"] == []
    # No key of any kind is set towards the backend.
    text = ET.tostring(policy(), encoding="unicode").lower()
    assert "x-functions-key" not in text and "{{" not in text


def test_every_gateway_error_body_has_the_apps_error_shape() -> None:
    bodies = policy().findall(".//return-response/set-body")
    assert len(bodies) >= 5
    for body in bodies:
        assert set(json.loads(body.text)) == {"error", "message", "field"}  # type: ignore[arg-type]
