"""Request bodies the JSON decoder chokes on are the caller's 400, on every endpoint.

Python's decoder raises more than JSONDecodeError: ValueError past the int/str conversion
limit, RecursionError for deep nesting, UnicodeDecodeError for non-text. Any of those
escaping a parser would be a 500, and Genesys takes its Failure path on a 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.dip.contract import ContractError, DipRequest, parse_dip_request
from shared.http import BodyError, decode_json
from shared.scale import surge

HUGE_NUMBER = b'{"conversationId": ' + b"9" * 5000 + b"}"
# As deep as fits under the 8 KiB caps. Python 3.13's decoder decodes this depth, so the
# value is refused for what it is: a field that is not a UUID, a body that is not an object.
DEEP_ARRAYS = b'{"conversationId": ' + b"[" * 4000 + b"]" * 4000 + b"}"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (HUGE_NUMBER, "too many digits"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b'{"a": NaN}', "NaN is not a JSON value"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON value"),
        (b"{", "Expecting"),
    ],
)
def test_every_way_the_decoder_fails_is_a_body_error(raw: bytes, says: str) -> None:
    with pytest.raises(BodyError, match=says):
        decode_json(raw)


@pytest.mark.parametrize("raw", [HUGE_NUMBER, b'{"conversationId": NaN}'])
def test_the_dip_answers_undecodable_bodies_with_invalid_json(raw: bytes) -> None:
    with pytest.raises(ContractError) as caught:
        parse_dip_request(raw, "application/json")
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")


def test_the_dip_refuses_a_deeply_nested_field_as_an_invalid_field() -> None:
    with pytest.raises(ContractError) as caught:
        parse_dip_request(DEEP_ARRAYS, "application/json")
    assert (caught.value.status, caught.value.code) == (400, "invalid_field")
    assert caught.value.field == "conversationId"


def test_the_surge_endpoint_answers_undecodable_bodies_with_invalid_json() -> None:
    with pytest.raises(surge.SurgeInputError) as caught:
        surge.parse_surge_request(b'{"alwaysReady": ' + b"7" * 5000 + b"}")
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")


def test_the_surge_endpoint_refuses_a_deeply_nested_body_as_an_invalid_body() -> None:
    with pytest.raises(surge.SurgeInputError) as caught:
        surge.parse_surge_request(b"[" * 4000 + b"]" * 4000)
    assert (caught.value.status, caught.value.code) == (400, "invalid_body")


def test_a_surge_body_over_8_kib_is_413() -> None:
    with pytest.raises(surge.SurgeInputError) as caught:
        surge.parse_surge_request(b" " * (surge.MAX_BODY_BYTES + 1))
    assert (caught.value.status, caught.value.code) == (413, "body_too_large")


# --- properties: whatever arrives, a parser answers or refuses, and never crashes ----------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)
# Objects shaped like a dip, so the fields' own checks run, not only "not an object".
dip_like = st.fixed_dictionaries(
    {},
    optional={
        "conversationId": json_values | st.uuids().map(str),
        "ani": json_values | st.just("tel:+13175550116"),
        "customerId": json_values | st.from_regex(r"[A-Za-z0-9_-]{0,70}", fullmatch=True),
        "dnis": json_values,
    },
)
content_types = st.sampled_from(
    [None, "application/json", "application/vnd.x+json", "text/plain", ""]
)


def _dip_outcome(raw: bytes, content_type: str | None) -> DipRequest | ContractError:
    try:
        return parse_dip_request(raw, content_type)
    except ContractError as exc:
        assert 400 <= exc.status < 500 and exc.body()["message"]
        return exc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=10_000), content_types)
def test_any_bytes_are_a_dip_request_or_a_4xx(raw: bytes, content_type: str | None) -> None:
    _dip_outcome(raw, content_type)


@settings(max_examples=300, deadline=None)
@given(json_values | dip_like)
def test_any_json_value_is_a_dip_request_or_a_4xx(value: Any) -> None:
    outcome = _dip_outcome(json.dumps(value).encode(), "application/json")
    if isinstance(outcome, DipRequest):
        assert (
            outcome.ani is not None
            or outcome.customer_id is not None
            or "ani" in value
            or "customerId" in value
        )


def _surge_outcome(raw: bytes) -> surge.SurgeRequest | surge.SurgeInputError:
    try:
        return surge.parse_surge_request(raw)
    except surge.SurgeInputError as exc:
        assert 400 <= exc.status < 500 and exc.body()["message"]
        return exc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=10_000))
def test_any_bytes_are_a_surge_request_or_a_4xx(raw: bytes) -> None:
    _surge_outcome(raw)


@settings(max_examples=300, deadline=None)
@given(
    json_values
    | st.fixed_dictionaries(
        {},
        optional={
            "alwaysReady": json_values | st.integers(-5, 200),
            "minutes": json_values,
            "reason": json_values,
        },
    )
)
def test_any_json_value_is_a_surge_request_or_a_4xx(value: Any) -> None:
    _surge_outcome(json.dumps(value).encode())
