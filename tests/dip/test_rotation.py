"""Rotating LOOKUP_KEY_SECRET while dips run: no known caller is ever "no customer", and
none gets another caller's record (the procedure in docs/privacy.md, on real Redis and
Azurite)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from azure.data.tables.aio import TableClient

from app.runtime import Runtime
from app.settings import load_settings
from shared.dip.cache import ANSWER_PREFIX
from shared.dip.contract import DipRequest
from shared.dip.health import health_report
from shared.dip.keys import LookupKey, LookupKeys
from shared.dip.loader import load_file
from shared.dip.readmodel import ReadModelWriter
from tests.support.customers import customers, number
from tests.support.services import Azurite, RedisServer

OLD = "old-secret-" + "o" * 32
NEW = "new-secret-" + "n" * 32
COUNT = 120
CONV = "43436e96-5c19-4c52-b951-4ea05d9a9af7"
STRANGERS = [f"+1317999{n:04d}" for n in range(20)]


def export(path: Path) -> Path:
    lines = ["customerId,phone,tier,isVip"]
    lines += [
        f"{c.record.customer_id},{';'.join(c.phones)},{c.record.tier},"
        f"{'true' if c.record.is_vip else 'false'}"
        for c in customers(COUNT)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Tally:
    """What the dips running through the rotation answered."""

    dips: int = 0
    wrong: list[str] = field(default_factory=list)

    def check(self, kind: str, i: int | None, customer_id: str, found: bool) -> None:
        self.dips += 1
        if i is None:
            if found:
                self.wrong.append(f"stranger answered as {customer_id}")
        elif not found:
            self.wrong.append(f"customer {i} by {kind} answered no customer")
        elif customer_id != f"W-{i}":
            self.wrong.append(f"customer {i} by {kind} answered as {customer_id}")


async def dip_until(stop: asyncio.Event, current: Callable[[], Runtime], tally: Tally) -> None:
    """Dip known callers (by number and by id) and strangers until told to stop."""
    rng = random.Random(7)
    while not stop.is_set():
        i = rng.randrange(COUNT)
        for kind, request, who in (
            ("ani", DipRequest(CONV, number(i), None, None), i),
            ("customerId", DipRequest(CONV, None, f"W-{i}", None), i),
            ("ani", DipRequest(CONV, rng.choice(STRANGERS), None, None), None),
        ):
            answer = (await current().dips.answer(request)).answer
            tally.check(kind, who, answer.customer_id, answer.customer_found)
        await asyncio.sleep(0)


@pytest.fixture
async def env(
    redis: aioredis.Redis, own_redis: RedisServer, azurite: Azurite, table_name: str
) -> AsyncIterator[dict[str, str]]:
    yield {
        "REDIS_URL": own_redis.url,
        "CustomerStorage": azurite.connection_string,
        "CUSTOMER_TABLE": table_name,
        "VALVE_MODE": "off",
        "LOOKUP_KEY_SECRET": OLD,
    }
    async with TableClient.from_connection_string(azurite.connection_string, table_name) as t:
        await t.delete_table()


async def load(rt: Runtime, path: Path, *, replace: bool) -> None:
    s = rt.settings.dip
    writer = ReadModelWriter(
        rt.clients.redis,
        max_age_s=s.read_model_max_age_seconds,
        stale_ttl_s=s.stale_ttl_seconds,
        negative_ttl_s=s.negative_ttl_seconds,
    )
    table = rt.clients.table(rt.settings.core.customer_table)
    report = await load_file(
        path, table, s.default_region, rt.keys, read_model=writer, replace=replace
    )
    assert not report.rejected and report.redis_error is None


async def health_of(rt: Runtime) -> dict[str, object]:
    return await health_report(rt.clients, rt.redis_breaker, rt.dips)


async def test_a_rotation_never_answers_a_known_caller_wrongly_while_dips_run(
    env: dict[str, str], redis: aioredis.Redis, tmp_path: Path
) -> None:
    path = export(tmp_path / "crm.csv")
    runtimes = [Runtime(load_settings(env))]
    await load(runtimes[0], path, replace=False)
    assert (await runtimes[0].warm().run()).completed

    tally, stop = Tally(), asyncio.Event()
    dipping = asyncio.create_task(dip_until(stop, lambda: runtimes[-1], tally))
    try:
        # 1. The new secret is current, the old one previous (an app restart in Azure).
        runtimes.append(
            Runtime(
                load_settings({**env, "LOOKUP_KEY_SECRET": NEW, "LOOKUP_KEY_SECRET_PREVIOUS": OLD})
            )
        )
        await asyncio.sleep(0.3)
        # What an operator checks before step 2: this instance holds both secrets.
        report = await health_report(
            runtimes[-1].clients, runtimes[-1].redis_breaker, runtimes[-1].dips
        )
        assert report["lookupKeySecrets"] == 2
        assert NEW not in json.dumps(report) and OLD not in json.dumps(report)
        # 2. The export is loaded again, replacing: rows under the new secret, the old removed.
        await load(runtimes[-1], path, replace=True)
        await asyncio.sleep(0.3)
        # 3. A warm under the new keys.
        assert (await runtimes[-1].warm().run()).completed
        await asyncio.sleep(0.3)
        # 4. The previous secret is dropped.
        runtimes.append(Runtime(load_settings({**env, "LOOKUP_KEY_SECRET": NEW})))
        report = await health_report(
            runtimes[-1].clients, runtimes[-1].redis_breaker, runtimes[-1].dips
        )
        assert report["lookupKeySecrets"] == 1
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await dipping
        for rt in runtimes:
            await rt.dips.drain()
            await rt.close()

    assert tally.dips > 300
    assert tally.wrong == []

    # Afterwards the table holds only keys made with the new secret.
    new, old = LookupKeys(NEW.encode()), LookupKeys(OLD.encode())
    every = customers(COUNT)
    expected = {new.key("customerId", c.record.customer_id).cache_key for c in every}
    expected |= {new.key("ani", p).cache_key for c in every for p in c.phones}
    async with TableClient.from_connection_string(
        env["CustomerStorage"], env["CUSTOMER_TABLE"]
    ) as table:
        rows = {str(e["RowKey"]) async for e in table.list_entities(select=["RowKey"])}
    assert rows == expected
    # Redis keeps no record under an old key: at most "no customer" for NEGATIVE_TTL_SECONDS.
    old_keys = [old.key("ani", p) for c in every for p in c.phones]
    for key in old_keys[:20]:
        raw = await redis.get(ANSWER_PREFIX + key.cache_key)
        assert raw is None or b"customerId" not in raw
        ttl = await redis.pttl(ANSWER_PREFIX + key.cache_key)
        assert ttl <= 30_000


async def test_without_the_previous_secret_a_table_under_the_old_one_names_nobody(
    env: dict[str, str], tmp_path: Path
) -> None:
    # The control for the test above: the previous secret is what keeps callers found.
    path = export(tmp_path / "crm.csv")
    old = Runtime(load_settings(env))
    new = Runtime(load_settings({**env, "LOOKUP_KEY_SECRET": NEW}))
    try:
        await load(old, path, replace=False)
        answer = (await new.dips.answer(DipRequest(CONV, number(3), None, None))).answer
        assert not answer.customer_found
        rotating = Runtime(
            load_settings({**env, "LOOKUP_KEY_SECRET": NEW, "LOOKUP_KEY_SECRET_PREVIOUS": OLD})
        )
        try:
            found = (await rotating.dips.answer(DipRequest(CONV, number(3), None, None))).answer
            assert (found.customer_id, found.matched_by) == ("W-3", "ani")
        finally:
            await rotating.dips.drain()
            await rotating.close()
    finally:
        for rt in (old, new):
            await rt.dips.drain()
            await rt.close()


def test_a_stored_old_key_is_still_a_keyed_hash() -> None:
    # Old-secret rows are read back as keys (the replacing load removes them), never
    # mistaken for rows from before keys were hashed.
    key = LookupKeys(OLD.encode()).key("ani", number(1))
    assert LookupKey.from_stored(key.cache_key) == key
