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
    TableCustomerStore,
    entities_for,
    table_keys,
)
from tests.support.keys import KEYS
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


def test_keys_spread_over_all_partitions_evenly() -> None:
    counts = Counter(table_keys(KEYS.key("ani", f"+1317555{n:04d}"))[0] for n in range(20_000))
    assert len(counts) == PARTITIONS
    # Sequential numbers (a spike's callers often share an area code) still spread out.
    assert max(counts.values()) < 2 * 20_000 / PARTITIONS


def test_a_customer_is_findable_by_id_and_by_each_number() -> None:
    record = CustomerRecord("C-1", "Gold", True, "en-US")
    entities = list(entities_for(record, ["+13175550116", "+13175550117"], KEYS))
    rows = {e["RowKey"] for e in entities}
    assert rows == {
        KEYS.key("customerId", "C-1").cache_key,
        KEYS.key("ani", "+13175550116").cache_key,
        KEYS.key("ani", "+13175550117").cache_key,
    }
    # The keys hold neither the id nor the numbers.
    assert not any("C-1" in row or "555" in row for row in rows)
    assert all(e["Tier"] == "Gold" and e["IsVip"] is True for e in entities)


async def test_point_read_finds_a_customer_by_number(table: TableClient) -> None:
    record = CustomerRecord("C-7", "Silver", False, "es-US")
    for entity in entities_for(record, ["+13175550199"], KEYS):
        await table.upsert_entity(entity)
    store = TableCustomerStore(table)
    assert await store.get(KEYS.key("ani", "+13175550199"), 1.0) == record
    assert await store.get(KEYS.key("customerId", "C-7"), 1.0) == record


async def test_an_unknown_key_reads_as_none(table: TableClient) -> None:
    store = TableCustomerStore(table)
    assert await store.get(KEYS.key("customerId", "nobody"), 1.0) is None


async def test_a_missing_table_is_unavailable_not_unknown(azurite: Azurite) -> None:
    async with TableClient.from_connection_string(
        azurite.connection_string, "nosuchtable0", retry_total=0
    ) as missing:
        with pytest.raises(DatabaseUnavailable, match="TableNotFound"):
            await TableCustomerStore(missing).get(KEYS.key("customerId", "C-1"), 1.0)


async def test_an_unreachable_table_is_unavailable_quickly() -> None:
    conn = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
    )
    async with TableClient.from_connection_string(conn, "customers", retry_total=0) as dead:
        with pytest.raises(DatabaseUnavailable):
            await TableCustomerStore(dead).get(KEYS.key("customerId", "C-1"), 0.5)
