"""The Table key design and point reads against a real Azurite."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableClient

from shared.dip.customers import (
    PARTITIONS,
    CustomerRecord,
    DatabaseUnavailable,
    LookupKey,
    TableCustomerStore,
    encode_key,
    entities_for,
    table_keys,
)
from tests.support.services import Azurite


@pytest.fixture
async def table(azurite: Azurite, table_name: str) -> AsyncIterator[TableClient]:
    client = TableClient.from_connection_string(
        azurite.connection_string, table_name, retry_total=0
    )
    await client.create_table()
    yield client
    await client.delete_table()
    await client.close()


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("C-1001", "C-1001"),
        ("+13175550116", "+13175550116"),
        ("a/b", "a%2Fb"),
        ("a\\b", "a%5Cb"),
        ("a#b", "a%23b"),
        ("a?b", "a%3Fb"),
        ("100%", "100%25"),
        ("tab\there", "tab%09here"),
        ("del\x7f", "del%7F"),
        ("c1\x85", "c1%C2%85"),
    ],
)
def test_forbidden_key_characters_are_percent_encoded(raw: str, encoded: str) -> None:
    assert encode_key(raw) == encoded


def test_encoding_is_injective_for_percent_signs() -> None:
    assert encode_key("a%2Fb") != encode_key("a/b")


def test_keys_spread_over_all_partitions_evenly() -> None:
    counts = Counter(table_keys(LookupKey("ani", f"+1317555{n:04d}"))[0] for n in range(20_000))
    assert len(counts) == PARTITIONS
    # Sequential numbers (a spike's callers often share an area code) still spread out.
    assert max(counts.values()) < 2 * 20_000 / PARTITIONS


def test_a_customer_is_findable_by_id_and_by_each_number() -> None:
    record = CustomerRecord("C-1", "Gold", True, "en-US")
    entities = list(entities_for(record, ["+13175550116", "+13175550117"]))
    rows = {e["RowKey"] for e in entities}
    assert rows == {"c|C-1", "p|+13175550116", "p|+13175550117"}
    assert all(e["Tier"] == "Gold" and e["IsVip"] is True for e in entities)


async def test_point_read_finds_a_customer_by_number(table: TableClient) -> None:
    record = CustomerRecord("C-7", "Silver", False, "es-US")
    for entity in entities_for(record, ["+13175550199"]):
        await table.upsert_entity(entity)
    store = TableCustomerStore(table)
    assert await store.get(LookupKey("ani", "+13175550199"), 1.0) == record
    assert await store.get(LookupKey("customerId", "C-7"), 1.0) == record


async def test_an_unknown_key_reads_as_none(table: TableClient) -> None:
    store = TableCustomerStore(table)
    assert await store.get(LookupKey("customerId", "nobody"), 1.0) is None


async def test_a_missing_table_is_unavailable_not_unknown(azurite: Azurite) -> None:
    async with TableClient.from_connection_string(
        azurite.connection_string, "nosuchtable0", retry_total=0
    ) as missing:
        with pytest.raises(DatabaseUnavailable, match="TableNotFound"):
            await TableCustomerStore(missing).get(LookupKey("customerId", "C-1"), 1.0)


async def test_an_unreachable_table_is_unavailable_quickly() -> None:
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    )
    async with TableClient.from_connection_string(conn, "customers", retry_total=0) as dead:
        with pytest.raises(DatabaseUnavailable):
            await TableCustomerStore(dead).get(LookupKey("customerId", "C-1"), 0.5)
