"""Two known customers and a dip request, for tests of the dip path on real services."""

from __future__ import annotations

import uuid

from azure.data.tables.aio import TableClient

from shared.dip.contract import DipRequest
from shared.dip.customers import CustomerRecord, entities_for
from tests.support.keys import KEYS

GOLD = CustomerRecord("C-1001", "Gold", True, "en-US")
GOLD_PHONE = "+13175550116"
# Known by id only: no phone number.
SILVER = CustomerRecord("C-2002", "Silver", False)


def dip(ani: str | None = None, customer_id: str | None = None) -> DipRequest:
    return DipRequest(str(uuid.uuid4()), ani, customer_id, None)


async def seed(env: dict[str, str]) -> None:
    """Create the environment's customer table with GOLD (id and phone) and SILVER (id)."""
    async with TableClient.from_connection_string(
        env["CustomerStorage"], env["CUSTOMER_TABLE"]
    ) as table:
        await table.create_table()
        for entity in [*entities_for(GOLD, [GOLD_PHONE], KEYS), *entities_for(SILVER, [], KEYS)]:
            await table.upsert_entity(entity)
