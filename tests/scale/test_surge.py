"""Surges: validation, and storage in a real Azurite."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from azure.data.tables.aio import TableClient

from shared.scale import surge as store
from tests.support.services import Azurite
from tests.support.surges import ADA, NOON, body

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
    ("a number as a field", b'{"+13175550116": 3}', "unknown_field", None),
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
    assert caught.value.body() == {
        "error": code,
        "message": caught.value.message,
        "field": field,
    }
    assert caught.value.message
    # The error names what was wrong and never quotes a value it was sent.
    assert "13175550116" not in caught.value.message
    assert not re.search(r"\b-1\b|\b21\b|1441|x{501}", caught.value.message)


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
    created = await store.create_surge(table, store.SurgeRequest(12, 30, "recall"), ADA, now=NOON)
    assert len(created.id) == 32 and created.expires_at == NOON + timedelta(minutes=30)
    assert await store.list_active(table, now=NOON + timedelta(minutes=29)) == [created]
    assert await store.list_active(table, now=NOON + timedelta(minutes=30)) == []


async def test_surges_survive_a_new_client(azurite: Azurite, table: TableClient) -> None:
    created = await store.create_surge(table, store.SurgeRequest(9, 10, "restart"), ADA, now=NOON)
    async with TableClient.from_connection_string(
        azurite.connection_string, table_name=table.table_name
    ) as other:
        assert await store.list_active(other, now=NOON) == [created]


async def test_ending_a_surge_early_keeps_the_record(table: TableClient) -> None:
    created = await store.create_surge(table, store.SurgeRequest(12, 60, "drill"), ADA, now=NOON)
    ended = await store.end_surge(table, created.id, ADA, now=NOON + timedelta(minutes=5))
    assert ended is not None and ended.expires_at == NOON + timedelta(minutes=5)
    assert await store.list_active(table, now=NOON + timedelta(minutes=6)) == []
    kept = await table.get_entity(store.PARTITION, created.id)
    assert kept["Reason"] == "drill" and kept["EndedAt"] is not None
    # Who raised it and who ended it: the operators' object ids and names.
    assert (kept["RaisedByObjectId"], kept["RaisedByName"]) == (ADA.object_id, ADA.name)
    assert (kept["EndedByObjectId"], kept["EndedByName"]) == (ADA.object_id, ADA.name)
    assert ended.raised_by == ADA and ended.ended_by == ADA


async def test_ending_an_unknown_surge_says_none(table: TableClient) -> None:
    assert await store.end_surge(table, "0" * 32, ADA, now=NOON) is None
