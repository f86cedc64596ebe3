"""Synthetic customers for the read-model tests, loaded through the real loader."""

from __future__ import annotations

from azure.data.tables.aio import TableClient

from shared.dip.customers import CustomerRecord, lookups_of
from shared.dip.keys import LookupKey
from shared.dip.loader import Customer, load_rows
from tests.support.keys import KEYS

TIERS = ("Standard", "Silver", "Gold", "Platinum")


def number(i: int) -> str:
    """Customer i's phone number: valid NANP, distinct for every i below a million."""
    return f"+1317{200 + i // 10_000:03d}{i % 10_000:04d}"


def customers(count: int, prefix: str = "W") -> list[Customer]:
    """``count`` customers, each findable by id and by one number."""
    return [
        Customer(
            i + 2,
            CustomerRecord(f"{prefix}-{i}", TIERS[i % len(TIERS)], i % 10 == 0, "en-US"),
            (number(i),),
        )
        for i in range(count)
    ]


def keys_of(customer: Customer) -> list[LookupKey]:
    return [
        KEYS.key(kind, value)
        for kind, value in lookups_of(customer.record.customer_id, customer.phones)
    ]


async def load(table: TableClient, count: int, prefix: str = "W") -> list[Customer]:
    people = customers(count, prefix)
    await load_rows(table, people, KEYS)
    return people


# A CRM export with one good row, rows the loader rejects for each reason, and a last good row.
MIXED = """customerId,phone,tier,isVip
C-1,+13175550116,Gold,true
bad id,+13175550120,Gold,true
C-4,not-a-phone,Gold,false
C-5,+13175550121,,false
C-6,+13175550122,Gold,perhaps
C-7,+13175550123,Bronze,false,extra,fields
C-8,+13175550124,Bronze,false
"""
