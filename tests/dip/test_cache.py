"""Cached answers: fresh, stale and negative entries in a real Redis; single flight."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.dip.breaker import Breaker
from shared.dip.cache import CacheUnavailable, RedisCache, SingleFlight
from shared.dip.customers import CustomerRecord
from tests.support.services import RedisServer

GOLD = CustomerRecord("C-1", "Gold", True, "en-US")


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_cache(redis: aioredis.Redis, clock: Clock) -> RedisCache:
    return RedisCache(
        redis, Breaker(3, 5), fresh_ttl_s=60, stale_ttl_s=3600, negative_ttl_s=30, clock=clock
    )


def key() -> str:
    return "p|+1" + uuid.uuid4().hex[:10]


async def test_a_stored_answer_is_fresh_then_stale_then_gone(redis: aioredis.Redis) -> None:
    clock = Clock()
    cache = make_cache(redis, clock)
    k = key()
    assert await cache.get(k, 1.0) is None
    await cache.put(k, GOLD, 1.0, as_of=1.0)
    hit = await cache.get(k, 1.0)
    assert hit is not None and hit.fresh and hit.record == GOLD
    clock.now += 61
    hit = await cache.get(k, 1.0)
    assert hit is not None and not hit.fresh and hit.record == GOLD
    assert 3500 < await redis.ttl("dipguard:answer:" + k) <= 3600


async def test_an_older_answer_never_replaces_a_newer_one(redis: aioredis.Redis) -> None:
    # A dip that read a number's old owner lands after the loader moved the number.
    clock = Clock()
    cache = make_cache(redis, clock)
    k = key()
    moved = CustomerRecord("C-2", "Silver", False, "en-US")
    await cache.put(k, moved, 1.0, as_of=200.0)
    await cache.put(k, GOLD, 1.0, as_of=100.0)
    await cache.put(k, None, 1.0, as_of=150.0)
    hit = await cache.get(k, 1.0)
    assert hit is not None and hit.record == moved


async def test_an_older_write_of_the_same_answer_extends_it_and_keeps_the_newer_as_of(
    redis: aioredis.Redis,
) -> None:
    # The loader stamps its own clock; the next warm stamps the table's earlier timestamp.
    clock = Clock()
    cache = make_cache(redis, clock)
    k = key()
    await cache.put(k, GOLD, 1.0, as_of=200.0)
    clock.now += 61  # stale now
    await cache.put(k, GOLD, 1.0, as_of=100.0)
    hit = await cache.get(k, 1.0)
    assert hit is not None and hit.fresh and hit.record == GOLD
    raw = await redis.get("dipguard:answer:" + k)
    assert raw is not None
    stored = json.loads(raw)
    assert stored["asOf"] == 200.0
    # A different answer from the same older read still loses.
    await cache.put(k, None, 1.0, as_of=100.0)
    assert (await cache.get(k, 1.0)).record == GOLD  # type: ignore[union-attr]


async def test_an_unknown_caller_is_cached_negatively_for_a_short_time(
    redis: aioredis.Redis,
) -> None:
    clock = Clock()
    cache = make_cache(redis, clock)
    k = key()
    await cache.put(k, None, 1.0, as_of=1.0)
    hit = await cache.get(k, 1.0)
    assert hit is not None and hit.fresh and hit.record is None
    clock.now += 31
    hit = await cache.get(k, 1.0)
    assert hit is not None and not hit.fresh
    assert await redis.ttl("dipguard:answer:" + k) <= 600


async def test_a_strangers_entry_lives_negative_ttl_whatever_the_read_models_age(
    redis: aioredis.Redis,
) -> None:
    # A fresh warm would keep a customer's answer fresh for a day: a stranger's "no
    # customer" still goes after NEGATIVE_TTL_SECONDS (30 s here), fresh and stored alike.
    clock = Clock()
    cache = make_cache(redis, clock)
    k = key()
    await cache.put(k, None, 1.0, as_of=clock.now, fresh_until=clock.now + 93_600)
    assert 0 < await redis.ttl("dipguard:answer:" + k) <= 30
    hit = await cache.get(k, 1.0)
    assert hit is not None and hit.fresh and hit.record is None
    clock.now += 31
    hit = await cache.get(k, 1.0)
    assert hit is None or not hit.fresh
    # A customer's answer under the same warm stays fresh.
    customer = key()
    await cache.put(customer, GOLD, 1.0, as_of=clock.now, fresh_until=clock.now + 93_600)
    clock.now += 31
    hit = await cache.get(customer, 1.0)
    assert hit is not None and hit.fresh


async def test_entries_are_json_not_python_reprs(redis: aioredis.Redis) -> None:
    cache = make_cache(redis, Clock())
    k = key()
    await cache.put(k, GOLD, 1.0, as_of=1.0)
    raw = await redis.get("dipguard:answer:" + k)
    assert isinstance(raw, bytes) and raw.startswith(b"{") and b'"tier":"Gold"' in raw


async def test_an_unreadable_entry_is_a_miss(redis: aioredis.Redis) -> None:
    cache = make_cache(redis, Clock())
    k = key()
    await redis.set("dipguard:answer:" + k, b"Customer(tier='Gold')")
    assert await cache.get(k, 1.0) is None


async def test_a_fresh_hit_is_one_redis_round_trip(redis: aioredis.Redis) -> None:
    cache = make_cache(redis, Clock())
    k = key()
    await cache.put(k, GOLD, 1.0, as_of=1.0)
    await redis.config_resetstat()
    await cache.get(k, 1.0)
    stats = await redis.info("commandstats")
    client_calls = {
        name: v["calls"]
        for name, v in stats.items()
        if name not in {"cmdstat_info", "cmdstat_config|resetstat"}
    }
    assert client_calls == {"cmdstat_mget": 1}


async def test_a_dead_redis_raises_cache_unavailable_and_opens_the_breaker() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    breaker = Breaker(2, 60)
    cache = RedisCache(dead, breaker, fresh_ttl_s=60, stale_ttl_s=3600, negative_ttl_s=30)
    try:
        for _ in range(2):
            with pytest.raises(CacheUnavailable):
                await cache.get("k", 0.2)
        assert breaker.is_open
        with pytest.raises(CacheUnavailable, match="breaker"):
            await cache.get("k", 0.2)
    finally:
        await dead.aclose()


async def test_a_stalled_redis_is_unavailable_within_the_reads_timeout_and_opens_the_breaker(
    redis: aioredis.Redis,
) -> None:
    breaker = Breaker(2, 60)
    cache = RedisCache(redis, breaker, fresh_ttl_s=60, stale_ttl_s=3600, negative_ttl_s=30)
    await redis.execute_command("CLIENT", "PAUSE", "600", "ALL")
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        *(cache.get(key(), 0.1) for _ in range(2)), return_exceptions=True
    )
    assert all(isinstance(r, CacheUnavailable) for r in results), results
    assert loop.time() - started < 0.4
    assert not breaker.is_open  # one MGET: one failure of two
    with pytest.raises(CacheUnavailable):
        await cache.get(key(), 0.1)
    assert breaker.is_open
    await asyncio.sleep(0.6)  # the pause ends before the next test's flush


async def test_concurrent_misses_for_one_key_share_one_execution() -> None:
    flight: SingleFlight[str] = SingleFlight()
    calls = 0

    async def slow_read() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return "answer"

    results = await asyncio.gather(*(flight.do("k", slow_read, 1.0) for _ in range(20)))
    assert results == ["answer"] * 20
    assert calls == 1
    assert len(flight) == 0
    await flight.do("k", slow_read, 1.0)
    assert calls == 2  # a finished flight is not a cache


async def test_a_follower_that_times_out_does_not_cancel_the_leader() -> None:
    flight: SingleFlight[str] = SingleFlight()

    async def slow_read() -> str:
        await asyncio.sleep(0.1)
        return "answer"

    leader = asyncio.ensure_future(flight.do("k", slow_read, 1.0))
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        await flight.do("k", slow_read, 0.01)
    assert await leader == "answer"


async def test_a_failed_flight_raises_to_every_waiter() -> None:
    flight: SingleFlight[str] = SingleFlight()

    async def broken() -> str:
        await asyncio.sleep(0.01)
        raise RuntimeError("db down")

    results = await asyncio.gather(
        *(flight.do("k", broken, 1.0) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
