"""The bulk warm: every key into Redis in the dip's format, resumable, single, within its
share of the valve. Against a real Azurite and a redis-server of this module's own."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from azure.data.tables.aio import TableClient

from shared.dip.breaker import Breaker
from shared.dip.cache import RedisCache
from shared.dip.customers import PARTITIONS, table_keys
from shared.dip.readmodel import (
    CURSOR_KEY,
    LEASE_KEY,
    MARKER_KEY,
    ReadModel,
    bloom_key,
    read_marker,
)
from shared.dip.valve import VALVE_KEY, RedisValve, Share
from shared.dip.warm import WARM_VALVE_KEY, Warm
from tests.support.customers import keys_of, load
from tests.support.keys import KEYS
from tests.support.services import Azurite


def make_warm(
    redis: aioredis.Redis,
    table: TableClient,
    *,
    share: int = 1000,
    budget: int = 2000,
    **kwargs: Any,
) -> Warm:
    valve = RedisValve(
        redis, budget, 1.0, key=VALVE_KEY, share=Share(WARM_VALVE_KEY, limit=share, headroom=share)
    )
    return Warm(
        redis,
        table,
        valve,
        max_age_s=3600,
        stale_ttl_s=86400,
        share=share,
        lease_s=kwargs.pop("lease_s", 10.0),
        **kwargs,
    )


def cache(redis: aioredis.Redis) -> RedisCache:
    return RedisCache(redis, Breaker(5, 5), fresh_ttl_s=60, stale_ttl_s=600, negative_ttl_s=30)


async def test_a_warm_writes_every_key_in_the_dips_own_format(
    redis: aioredis.Redis, table: TableClient
) -> None:
    people = await load(table, 600)
    report = await make_warm(redis, table).run()
    assert report.completed and report.reason is None
    assert report.entities == 1200
    assert report.pages == PARTITIONS  # one page per partition at this size
    reader = cache(redis)
    for person in people[::37]:
        for key in keys_of(person):
            cached = await reader.get(key.cache_key, 1.0)
            assert cached is not None and cached.fresh
            assert cached.record == person.record
    marker = await read_marker(redis)
    assert marker is not None and marker.entities == 1200
    assert await redis.exists(CURSOR_KEY) == 0 and await redis.exists(LEASE_KEY) == 0


async def test_a_warm_dates_the_read_model_by_redis_clock_not_the_machines(
    redis: aioredis.Redis, table: TableClient
) -> None:
    # python -m tools.warm on a machine an hour ahead: every instance would take the model
    # for an hour fresher than it is (an hour behind: staler).
    await load(table, 20)
    for off in (3600, -3600):
        skewed = make_warm(redis, table, clock=lambda off=off: time.time() + off)
        assert (await skewed.run()).completed
        marker = await read_marker(redis)
        assert marker is not None and abs(marker.completed_at - time.time()) < 5


async def test_a_partition_larger_than_a_page_is_read_page_by_page(
    redis: aioredis.Redis, table: TableClient
) -> None:
    await load(table, 600)
    report = await make_warm(redis, table, page_size=3).run()
    assert report.completed and report.entities == 1200
    # 1,200 entities over 256 partitions in pages of 3: continuation tokens were followed.
    assert report.pages > 400


async def test_each_warm_ends_with_one_log_line_saying_what_it_did(
    redis: aioredis.Redis, table: TableClient, caplog: pytest.LogCaptureFixture
) -> None:
    await load(table, 50)
    caplog.set_level("INFO", logger="dipguard.warm")
    await make_warm(redis, table).run()
    lines = [r.getMessage() for r in caplog.records if r.name == "dipguard.warm"]
    assert len(lines) == 1 and lines[0].startswith("cache_warm {")
    data = json.loads(lines[0].removeprefix("cache_warm "))
    assert data["completed"] is True and data["entities"] == 100
    assert data["pages"] == PARTITIONS and data["seconds"] >= 0
    assert data["redisUsedMemoryBytes"] > 0


async def test_only_one_warm_runs_at_a_time(redis: aioredis.Redis, table: TableClient) -> None:
    await load(table, 200)
    first, second = make_warm(redis, table, share=100), make_warm(redis, table, share=100)
    reports = await asyncio.gather(first.run(), second.run())
    completed = [r for r in reports if r.completed]
    refused = [r for r in reports if not r.completed]
    assert len(completed) == 1 and len(refused) == 1
    assert "another warm holds the lease" in str(refused[0].reason)
    assert refused[0].pages == 0


async def test_a_lease_left_by_a_dead_warm_expires(
    redis: aioredis.Redis, table: TableClient
) -> None:
    await load(table, 20)
    # A warm that died holding the lease: its expiry lies in the server's past.
    now_ms = int((await redis.time())[0]) * 1000
    await redis.set(LEASE_KEY, f"dead-host:1:abc|{now_ms - 1}")
    assert (await make_warm(redis, table).run()).completed
    await redis.set(LEASE_KEY, f"live-host:1:abc|{now_ms + 60_000}")
    assert not (await make_warm(redis, table).run()).completed


async def test_the_warm_waits_while_dips_use_the_budget_less_its_share(
    redis: aioredis.Redis, table: TableClient
) -> None:
    await load(table, 20)
    dips = RedisValve(redis, 200, 1.0, key=VALVE_KEY)
    # Dips have taken 150 of 200 in this second: the warm (share 50) must leave them the rest.
    assert all([await dips.admit(1.0) for _ in range(150)])
    started = time.monotonic()
    report = await make_warm(redis, table, share=50, budget=200).run()
    assert report.completed
    assert report.backoffs > 0
    # 256 pages at no more than 50 a second, after the dips' second had passed.
    assert time.monotonic() - started > 256 / 50 * 0.9


async def test_a_warm_that_cannot_reach_the_table_stops_and_keeps_its_place(
    redis: aioredis.Redis, azurite: Azurite
) -> None:
    dead = azurite.connection_string.replace(f":{azurite.port}", ":1")
    async with TableClient.from_connection_string(dead, "nowhere", retry_total=0) as table:
        report = await make_warm(redis, table, page_timeout_s=2.0).run()
    assert not report.completed
    assert "next warm resumes" in str(report.reason)
    assert await redis.exists(MARKER_KEY) == 0
    assert await redis.exists(LEASE_KEY) == 0  # given back


async def test_a_complete_warm_leaves_a_filter_in_every_partition_even_an_empty_one(
    redis: aioredis.Redis, table: TableClient
) -> None:
    # Three customers, six keys: most of the 256 partitions hold none, and a stranger whose
    # key falls in one of them is still proved absent rather than read from the table.
    people = await load(table, 3)
    assert (await make_warm(redis, table).run()).completed
    marker = await read_marker(redis)
    assert marker is not None
    filters = [bloom_key(marker.generation, f"b{n:02x}") for n in range(PARTITIONS)]
    assert sum([await redis.exists(name) for name in filters]) == PARTITIONS
    model = ReadModel(redis, Breaker(5, 5), max_age_s=3600, authoritative=True)
    used = {table_keys(key)[0] for person in people for key in keys_of(person)}
    strangers = [KEYS.key("ani", f"+1317999{n:04d}") for n in range(200)]
    elsewhere = [key for key in strangers if table_keys(key)[0] not in used]
    assert len(elsewhere) > 150
    assert all([await model.absent(key, 1.0) for key in elsewhere])
    # And the customers themselves are never absent.
    assert not any([await model.absent(key, 1.0) for p in people for key in keys_of(p)])
