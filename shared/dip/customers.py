"""Customers in Azure Table Storage: the key design, point reads, and the loader's writes.

Key design
    RowKey        ``c|<hash>`` or ``p|<hash>``: the keyed hash of the customer id or the
                  E.164 number (``keys.py``), never the value itself.
    PartitionKey  ``b<xx>``: two hex digits of the RowKey's SHA-256, so 256 partitions.
                  A partition serves up to 2,000 entities/s; hashing spreads a spike's
                  callers evenly however their numbers cluster, and still lets the loader
                  batch up to 100 upserts per partition.

A phone entity repeats the customer's fields, so a dip by number is one point read. The
customer id is one of those fields: it is the answer a dip gives.
Reads are ``get_entity`` only: a filter is never built from caller input.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.clients import is_table_missing
from shared.dip.keys import KeyKind, LookupKey, LookupKeys
from shared.errors import DependencyUnavailable

__all__ = [
    "PARTITIONS",
    "CustomerRecord",
    "CustomerStore",
    "DatabaseUnavailable",
    "TableCustomerStore",
    "entities_for",
    "lookups_of",
    "record_of",
    "table_keys",
]

PARTITIONS = 256


class DatabaseUnavailable(DependencyUnavailable):
    """Table Storage did not answer in time or answered with an error."""


@dataclass(frozen=True)
class CustomerRecord:
    customer_id: str
    tier: str
    is_vip: bool
    preferred_language: str = ""
    # When the table last wrote this record (its Timestamp, seconds since the epoch); 0 when
    # not known. It orders writes of cached answers, and is not part of the answer itself.
    as_of: float = field(default=0.0, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "customerId": self.customer_id,
            "tier": self.tier,
            "isVip": self.is_vip,
            "preferredLanguage": self.preferred_language,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CustomerRecord:
        return cls(
            str(data["customerId"]),
            str(data["tier"]),
            bool(data["isVip"]),
            str(data.get("preferredLanguage") or ""),
        )


def table_keys(key: LookupKey) -> tuple[str, str]:
    """(PartitionKey, RowKey) for a lookup key."""
    row = key.cache_key
    bucket = int.from_bytes(hashlib.sha256(row.encode()).digest()[:4], "big") % PARTITIONS
    return f"b{bucket:02x}", row


def lookups_of(customer_id: str, phones: Iterable[str]) -> list[tuple[KeyKind, str]]:
    """What a customer is found by: its id and each of its (E.164) numbers."""
    return [("customerId", customer_id), *(("ani", phone) for phone in phones)]


def entities_for(
    record: CustomerRecord, phones: Iterable[str], keys: LookupKeys
) -> Iterator[dict[str, Any]]:
    """The entities that make a customer findable by id and by each of its (E.164) numbers,
    keyed under the current secret."""
    fields = {
        "CustomerId": record.customer_id,
        "Tier": record.tier,
        "IsVip": record.is_vip,
        "PreferredLanguage": record.preferred_language,
    }
    for kind, value in lookups_of(record.customer_id, phones):
        pk, rk = table_keys(keys.key(kind, value))
        yield {"PartitionKey": pk, "RowKey": rk, **fields}


def record_of(entity: Mapping[str, Any]) -> CustomerRecord:
    """The record an entity holds, stamped with the table's Timestamp when it has one."""
    metadata = getattr(entity, "metadata", None) or {}
    stamp = metadata.get("timestamp")
    return CustomerRecord(
        str(entity["CustomerId"]),
        str(entity.get("Tier") or ""),
        bool(entity.get("IsVip", False)),
        str(entity.get("PreferredLanguage") or ""),
        stamp.timestamp() if stamp is not None else 0.0,
    )


class CustomerStore(Protocol):
    async def get(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
        """The customer for a key, None if unknown; DatabaseUnavailable if it cannot say."""
        ...


class TableCustomerStore:
    """Point reads against an async azure-data-tables TableClient."""

    def __init__(self, table: TableClient) -> None:
        self.table = table

    async def get(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
        pk, rk = table_keys(key)
        try:
            # Socket timeouts bound each phase; the outer timeout bounds the whole call, DNS
            # and token fetches included.
            async with asyncio.timeout(timeout):
                entity = await self.table.get_entity(
                    pk, rk, connection_timeout=timeout, read_timeout=timeout
                )
        except ResourceNotFoundError as exc:
            if is_table_missing(exc):
                # A missing table is a broken deployment, not an unknown caller: never
                # cache it as "not found".
                raise DatabaseUnavailable("TableNotFound") from exc
            return None
        except (AzureError, OSError, TimeoutError) as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc
        return record_of(entity)
