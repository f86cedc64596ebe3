"""Request validation: every bad-input class is a 4xx that says what was wrong."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.dip.contract import MAX_BODY_BYTES, Answer, ContractError, parse_dip_request

CONV = "43436e96-5c19-4c52-b951-4ea05d9a9af7"


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def rejected(raw: bytes, content_type: str | None = "application/json") -> ContractError:
    with pytest.raises(ContractError) as caught:
        parse_dip_request(raw, content_type)
    return caught.value


def test_a_valid_request_parses_every_field() -> None:
    req = parse_dip_request(
        body(conversationId=CONV.upper(), ani="tel:+13175550116", customerId="C-1", dnis="+1800"),
        "application/json; charset=utf-8",
    )
    assert req.conversation_id == CONV
    assert req.ani == "tel:+13175550116"
    assert req.customer_id == "C-1"
    assert req.dnis == "+1800"


def test_unknown_fields_are_ignored() -> None:
    req = parse_dip_request(body(conversationId=CONV, ani="x", extra={"a": 1}), None)
    assert req.ani == "x"


def test_an_empty_customer_id_from_an_unset_genesys_input_counts_as_absent() -> None:
    req = parse_dip_request(body(conversationId=CONV, ani="tel:+13175550116", customerId=""), None)
    assert req.customer_id is None


def test_withheld_ani_without_customer_id_is_valid_traffic() -> None:
    req = parse_dip_request(body(conversationId=CONV, ani="anonymous"), None)
    assert req.ani == "anonymous" and req.customer_id is None


@pytest.mark.parametrize(
    ("raw", "status", "code", "field"),
    [
        (b"{not json", 400, "invalid_json", None),
        (b"\xff\xfe", 400, "invalid_json", None),
        (b"", 400, "invalid_json", None),
        (b"[1, 2]", 400, "not_an_object", None),
        (b'"text"', 400, "not_an_object", None),
        (body(ani="tel:+13175550116"), 400, "missing_field", "conversationId"),
        (body(conversationId="not-a-uuid", ani="x"), 400, "invalid_field", "conversationId"),
        (body(conversationId=123, ani="x"), 400, "invalid_field", "conversationId"),
        (body(conversationId=CONV), 400, "missing_field", "ani"),
        (body(conversationId=CONV, ani=13175550116), 400, "invalid_field", "ani"),
        (body(conversationId=CONV, ani="1" * 300), 400, "invalid_field", "ani"),
        (body(conversationId=CONV, customerId="has space"), 400, "invalid_field", "customerId"),
        (body(conversationId=CONV, customerId="x" * 65), 400, "invalid_field", "customerId"),
        (body(conversationId=CONV, customerId="a/b"), 400, "invalid_field", "customerId"),
        (body(conversationId=CONV, customerId=["C-1"]), 400, "invalid_field", "customerId"),
        (body(conversationId=CONV, ani="x", dnis=5), 400, "invalid_field", "dnis"),
    ],
)
def test_bad_requests_get_a_400_naming_the_problem(
    raw: bytes, status: int, code: str, field: str | None
) -> None:
    error = rejected(raw)
    assert (error.status, error.code, error.field) == (status, code, field)
    assert error.body() == {"error": code, "message": error.message, "field": field}
    assert error.message


def test_a_body_over_8_kib_is_413() -> None:
    big = body(conversationId=CONV, ani="x", pad="p" * MAX_BODY_BYTES)
    assert rejected(big).status == 413
    assert rejected(big).code == "body_too_large"


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
def test_a_non_json_content_type_is_415(content_type: str) -> None:
    error = rejected(body(conversationId=CONV, ani="x"), content_type)
    assert (error.status, error.code) == (415, "unsupported_media_type")


def test_the_answer_is_flat_with_exactly_the_contract_fields() -> None:
    answer = Answer(True, "C-1", "Gold", True, "en-US", "database").body()
    assert list(answer) == [
        "customerFound",
        "customerId",
        "customerTier",
        "isVip",
        "preferredLanguage",
        "source",
        "matchedBy",
    ]
    assert all(not isinstance(v, (dict, list)) for v in answer.values())
    assert Answer.unknown("Standard", "degraded").body()["customerId"] == ""
    assert Answer.unknown("Standard", "degraded").body()["matchedBy"] is None
