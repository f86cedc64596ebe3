"""openapi.json (the API as Genesys sees it through API Management) and the Genesys Cloud
data action export agree with each other and with the code that answers the dip."""

from __future__ import annotations

import ast
import copy
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from shared.dip.contract import MAX_BODY_BYTES, Answer, ContractError, Source, parse_dip_request
from tests.support import bicep_model_check as mc
from tests.support.genesys import GenesysEsc, render_request_body

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = json.loads((ROOT / "openapi.json").read_text())
ACTION = json.loads((ROOT / "genesys" / "ivr-lookup.data-action.json").read_text())
SCHEMAS = OPENAPI["components"]["schemas"]
LOOKUP = OPENAPI["paths"]["/lookup"]["post"]

ERROR_CODES = {
    "invalid_json",
    "not_an_object",
    "missing_field",
    "invalid_field",
    "body_too_large",
    "unsupported_media_type",
}


def schema_validator(name: str) -> OAS30Validator:
    """A validator for one component schema, with the document's refs resolvable."""
    schema = {**SCHEMAS[name], "components": OPENAPI["components"]}
    return OAS30Validator(schema)


# --- the OpenAPI document -----------------------------------------------------------------------


def test_openapi_document_is_valid_openapi_3_0() -> None:
    assert OPENAPI["openapi"].startswith("3.0.")
    validate(OPENAPI)


def test_the_validator_rejects_a_broken_document() -> None:
    broken = copy.deepcopy(OPENAPI)
    del broken["paths"]["/lookup"]["post"]["responses"]
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_only_the_lookup_is_published_not_the_admin_endpoints() -> None:
    assert list(OPENAPI["paths"]) == ["/lookup"]
    assert list(OPENAPI["paths"]["/lookup"]) == ["post"]
    text = json.dumps(OPENAPI)
    assert "/surge" not in text and "/health" not in text


def test_callers_authenticate_with_an_entra_bearer_token_and_no_subscription_key() -> None:
    schemes = OPENAPI["components"]["securitySchemes"]
    assert schemes == {
        "entraToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": schemes["entraToken"]["description"],
        }
    }
    assert OPENAPI["security"] == [{"entraToken": []}]
    assert "oauth2/v2.0/token" in schemes["entraToken"]["description"]
    assert all(s["type"] != "apiKey" for s in schemes.values())


def test_a_refused_token_is_a_json_401_and_a_foreign_address_a_json_403() -> None:
    for status, code in (("401", "unauthorized"), ("403", "forbidden")):
        content = LOOKUP["responses"][status]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/GatewayError"}
        schema_validator("GatewayError").validate(content["example"])
        assert content["example"]["error"] == code
    assert "WWW-Authenticate" in LOOKUP["responses"]["401"]["headers"]


def test_request_schema_is_flat_with_conversation_id_and_ani_or_customer_id() -> None:
    request = SCHEMAS["LookupRequest"]
    assert LOOKUP["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LookupRequest"
    }
    assert request["required"] == ["conversationId"]
    props = request["properties"]
    assert set(props) == {"conversationId", "ani", "customerId", "dnis"}
    assert all(p["type"] == "string" for p in props.values())
    assert props["conversationId"]["format"] == "uuid"
    assert props["customerId"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
    assert request["anyOf"] == [{"required": ["ani"]}, {"required": ["customerId"]}]
    validator = schema_validator("LookupRequest")
    conversation = "43436e96-5c19-4c52-b951-4ea05d9a9af7"
    assert validator.is_valid({"conversationId": conversation, "ani": "tel: +1 317-555-0116"})
    assert not validator.is_valid({"conversationId": conversation, "dnis": "tel:+18005550100"})
    assert not validator.is_valid({"conversationId": conversation, "customerId": "a b"})


def test_request_examples_are_accepted_by_the_app() -> None:
    examples = LOOKUP["requestBody"]["content"]["application/json"]["examples"]
    assert examples
    for example in examples.values():
        body = json.dumps(example["value"]).encode()
        parse_dip_request(body, "application/json")
        assert schema_validator("LookupRequest").is_valid(example["value"])


def test_body_limit_is_documented_as_the_8_kib_the_app_enforces() -> None:
    assert MAX_BODY_BYTES == 8192
    assert "8192 bytes" in LOOKUP["description"]
    assert "413" in LOOKUP["responses"]


def test_response_schema_is_exactly_the_answer_the_app_returns() -> None:
    response = SCHEMAS["LookupResponse"]
    assert LOOKUP["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LookupResponse"
    }
    answers = [
        Answer(True, "C-1042", "Gold", True, "en-US", "database"),
        Answer.unknown("Standard", "degraded"),
        Answer.unknown("Standard", "none"),
    ]
    validator = schema_validator("LookupResponse")
    for answer in answers:
        body = answer.body()
        assert set(body) == set(response["properties"]) == set(response["required"])
        validator.validate(body)
    assert response["properties"]["source"]["enum"] == list(typing.get_args(Source))
    assert validator.is_valid(LOOKUP["responses"]["200"]["content"]["application/json"]["example"])


def _contract_error_codes() -> set[str]:
    """The code argument of every ContractError(...) raised in shared/contract.py."""
    tree = ast.parse((ROOT / "shared" / "dip" / "contract.py").read_text())
    codes = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "ContractError"
        ):
            code = node.args[1]
            assert isinstance(code, ast.Constant) and isinstance(code.value, str)
            codes.add(code.value)
    return codes


def test_error_schema_lists_every_error_code_the_app_raises() -> None:
    error = SCHEMAS["Error"]
    assert error["required"] == ["error", "message", "field"]
    assert set(error["properties"]["error"]["enum"]) == ERROR_CODES
    assert _contract_error_codes() <= ERROR_CODES
    assert error["properties"]["field"]["nullable"] is True
    validator = schema_validator("Error")
    try:
        parse_dip_request(b"[]", "application/json")
    except ContractError as exc:
        validator.validate(exc.body())
    else:
        pytest.fail("a JSON array is not a dip request")


@pytest.mark.parametrize(
    ("status", "schema"),
    [
        ("400", "Error"),
        ("401", "GatewayError"),
        ("403", "GatewayError"),
        ("413", "Error"),
        ("415", "Error"),
        ("429", "GatewayError"),
    ],
)
def test_error_responses_are_json_with_the_error_shape(status: str, schema: str) -> None:
    content = LOOKUP["responses"][status]["content"]["application/json"]
    assert content["schema"] == {"$ref": f"#/components/schemas/{schema}"}
    if "example" in content:
        schema_validator(schema).validate(content["example"])


def test_429_tells_the_caller_when_to_retry() -> None:
    headers = LOOKUP["responses"]["429"]["headers"]
    assert headers["Retry-After"]["schema"]["type"] == "integer"


def test_every_gateway_error_body_matches_a_documented_status_and_schema() -> None:
    import xml.etree.ElementTree as ET

    policy = ET.fromstring((ROOT / "bicep" / "policies" / "lookup-api.xml").read_text())
    validator = schema_validator("GatewayError")
    app_errors = schema_validator("Error")
    whens = policy.findall(".//choose/when")
    statuses = [w.find("./return-response/set-status") for w in whens]
    assert {"401", "403", "429"} <= {s.get("code") for s in statuses if s is not None}
    for when in whens:
        status_element = when.find("./return-response/set-status")
        body_element = when.find("./return-response/set-body")
        assert status_element is not None and body_element is not None
        status = status_element.get("code")
        body = json.loads(body_element.text or "")
        assert status in LOOKUP["responses"], f"{status} is not documented"
        (app_errors if status in {"413"} else validator).validate(body)


# --- the Genesys data action export ---------------------------------------------------------------


def _genesys_type(schema: dict[str, Any]) -> str:
    """A Genesys contract property's type, as OpenAPI 3.0 writes it: ``["string", "null"]``
    is OpenAPI's nullable string."""
    kind = schema["type"]
    if isinstance(kind, list):
        (kind,) = [k for k in kind if k != "null"]
    return str(kind)


def test_export_is_a_custom_web_services_action_posting_to_api_management() -> None:
    assert ACTION["integrationType"] == "custom-rest-actions"
    assert ACTION["actionType"] == "custom"
    request = ACTION["config"]["request"]
    assert request["requestType"] == "POST"
    main = mc.parse_bicep(ROOT / "bicep" / "main.bicep")
    api_path = main["parameters"]["apiPath"]["default"]
    assert re.fullmatch(
        rf"https://[A-Z-]+\.azure-api\.net/{api_path}/lookup", request["requestUrlTemplate"]
    )
    assert ACTION["config"]["timeoutSeconds"] == 3


def test_export_sends_the_auth_actions_token_as_a_bearer_header_and_no_key() -> None:
    headers = ACTION["config"]["request"]["headers"]
    assert headers["Authorization"] == "Bearer $!{authResponse.access_token}"
    assert not any("subscription" in name.lower() for name in headers)
    assert "credentials." not in json.dumps(ACTION["config"]["request"])
    assert headers["Content-Type"] == "application/json"
    assert headers.get("Accept", "application/json") == "application/json"


def test_output_contract_lists_exactly_the_response_fields() -> None:
    output = ACTION["contract"]["output"]["successSchema"]
    response = SCHEMAS["LookupResponse"]["properties"]
    assert set(output["properties"]) == set(response)
    for name, prop in output["properties"].items():
        assert _genesys_type(prop) == response[name]["type"], name
        nullable = isinstance(prop["type"], list) and "null" in prop["type"]
        assert nullable == response[name].get("nullable", False), name
    assert set(output["required"]) == set(SCHEMAS["LookupResponse"]["required"])
    assert ACTION["config"]["response"]["successTemplate"] == "${rawResult}"
    assert ACTION["config"]["response"]["translationMap"] == {}


def test_input_contract_is_flat_and_matches_the_request_fields() -> None:
    schema = ACTION["contract"]["input"]["inputSchema"]
    props = schema["properties"]
    scalar = {"string", "integer", "number", "boolean", "null"}
    assert all(_genesys_type(p) in scalar for p in props.values())
    assert all(
        "properties" not in p and "items" not in p and "$ref" not in p for p in props.values()
    )
    request = SCHEMAS["LookupRequest"]["properties"]
    assert set(props) == set(request)
    assert schema["required"] == SCHEMAS["LookupRequest"]["required"]
    for name in props:
        assert re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_-]*", name)
        assert name not in {"orgId", "integrationId", "rawRequest"}


def test_request_template_escapes_every_input_with_quiet_calls() -> None:
    template = ACTION["config"]["request"]["requestTemplate"]
    props = ACTION["contract"]["input"]["inputSchema"]["properties"]
    for name in props:
        # Quiet call on a quiet reference: Velocity renders a null input, and the null that
        # esc.jsonString returns for it, as nothing rather than as the template's own text.
        assert f"$!esc.jsonString($!{{input.{name}}})" in template, name
    # Nothing is inserted unescaped.
    bare = re.findall(r"\$!?\{input\.\w+\}", re.sub(r"\$!?esc\.jsonString\([^)]*\)", "", template))
    assert all(ref.startswith("$!") for ref in bare)


@pytest.mark.parametrize(
    "inputs",
    [
        {"conversationId": "43436e96-5c19-4c52-b951-4ea05d9a9af7", "ani": "tel:+13175550116"},
        {
            "conversationId": "43436e96-5c19-4c52-b951-4ea05d9a9af7",
            "ani": "tel: +1 317-555-0116",
            "customerId": "",
            "dnis": "tel:+18005550100",
        },
        {
            "conversationId": "43436E96-5C19-4C52-B951-4EA05D9A9AF7",
            "ani": "",
            "customerId": "C-1042",
        },
        {
            "conversationId": "43436e96-5c19-4c52-b951-4ea05d9a9af7",
            "ani": 'sip:"odd\\caller"@carrier.example',
            "customerId": "C_7",
            "dnis": "",
        },
        {"conversationId": "43436e96-5c19-4c52-b951-4ea05d9a9af7", "ani": ""},
        {"conversationId": "43436e96-5c19-4c52-b951-4ea05d9a9af7"},
        {"conversationId": "43436e96-5c19-4c52-b951-4ea05d9a9af7", "customerId": "C-1042"},
    ],
    ids=[
        "ani-only",
        "empty-customer-id",
        "customer-id-only",
        "quotes-and-backslash",
        "withheld-ani",
        "ani-input-unset",
        "customer-id-only-ani-input-unset",
    ],
)
def test_request_template_renders_a_body_the_api_and_the_app_accept(inputs: dict[str, str]) -> None:
    # Rendered by a Velocity engine with a stand-in for Genesys's esc tool (every combination
    # of absent, empty and set inputs is in tests/dip/test_genesys_template.py).
    body = render_request_body(inputs, GenesysEsc(ascii_only=False))
    payload = json.loads(body)
    # ani is always sent, even empty: a withheld caller with no account number must reach
    # the app as valid traffic (200, source "none"), never as a 400 down the Failure path.
    expected = {k: v for k, v in inputs.items() if v != "" or k == "ani"}
    expected.setdefault("ani", "")
    assert payload == expected
    schema_validator("LookupRequest").validate(payload)
    content_type = ACTION["config"]["request"]["headers"]["Content-Type"]
    request = parse_dip_request(body.encode(), content_type)
    assert request.conversation_id == inputs["conversationId"].lower()
