"""The GETs of one event-loop turn as one MGET, against a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from shared.clients import REDIS_ERRORS
from shared.dip.batch import MAX_KEYS, GetBatch
from shared.dip.breaker import Breaker, RedisUnavailable
from shared.dip.cache import CacheUnavailable, RedisCache


async def mget_calls(redis: aioredis.Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {
        name: v["calls"] for name, v in stats.items() if name in {"cmdstat_get", "cmdstat_mget"}
    }


async def test_concurrent_gets_in_one_turn_are_one_mget_and_each_caller_gets_its_own_value(
    redis: aioredis.Redis,
) -> None:
    await redis.mset({f"k{n}": f"v{n}" for n in range(10)})
    await redis.config_resetstat()
    batch = GetBatch(redis)
    values = await asyncio.gather(*(batch.get(f"k{n}", 1.0) for n in (3, 7, 99, 0)))
    assert values == [b"v3", b"v7", None, b"v0"]
    assert await mget_calls(redis) == {"cmdstat_mget": 1}


async def test_gets_in_separate_turns_are_separate_mgets(redis: aioredis.Redis) -> None:
    await redis.set("k", "v")
    await redis.config_resetstat()
    batch = GetBatch(redis)
    assert await batch.get("k", 1.0) == b"v"
    assert await batch.get("k", 1.0) == b"v"
    assert await mget_calls(redis) == {"cmdstat_mget": 2}


async def test_more_callers_than_one_mget_holds_are_split_and_all_answered(
    redis: aioredis.Redis,
) -> None:
    count = MAX_KEYS * 2 + 5
    await redis.mset({f"k{n}": str(n) for n in range(count)})
    await redis.config_resetstat()
    batch = GetBatch(redis)
    values = await asyncio.gather(*(batch.get(f"k{n}", 1.0) for n in range(count)))
    assert values == [str(n).encode() for n in range(count)]
    assert await mget_calls(redis) == {"cmdstat_mget": 3}


async def test_a_caller_that_stops_waiting_leaves_the_others_answered(
    redis: aioredis.Redis,
) -> None:
    await redis.mset({"a": "1", "b": "2"})
    batch = GetBatch(redis)
    gone = asyncio.ensure_future(batch.get("a", 1.0))
    stays = asyncio.ensure_future(batch.get("b", 1.0))
    await asyncio.sleep(0)  # both queued in this turn
    gone.cancel()
    assert await stays == b"2"
    assert gone.cancelled()


async def test_a_stalled_redis_fails_every_waiter_with_a_redis_error_in_its_time(
    redis: aioredis.Redis,
) -> None:
    batch = GetBatch(redis)
    await redis.execute_command("CLIENT", "PAUSE", "400", "ALL")
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        *(batch.get(f"k{n}", 0.1) for n in range(3)), return_exceptions=True
    )
    elapsed = loop.time() - started
    # The MGET's own failure once (the breaker counts it), then one of their own.
    assert isinstance(results[0], REDIS_ERRORS)
    assert all(isinstance(r, RedisUnavailable) for r in results[1:]), results
    assert len({id(r) for r in results}) == 3
    assert elapsed < 0.35
    await asyncio.sleep(0.4)  # let the pause end before the fixture flushes


async def test_a_dead_redis_fails_every_waiter_with_a_redis_error() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    try:
        batch = GetBatch(dead)
        results = await asyncio.gather(
            *(batch.get(f"k{n}", 0.5) for n in range(4)), return_exceptions=True
        )
        assert len(results) == 4
        assert isinstance(results[0], REDIS_ERRORS)
        assert all(isinstance(r, RedisUnavailable) for r in results[1:]), results
    finally:
        await dead.aclose()


@pytest.mark.parametrize("timeouts", [(0.05, 0.3), (0.3, 0.05)])
async def test_the_mget_waits_as_long_as_its_most_patient_caller(
    redis: aioredis.Redis, timeouts: tuple[float, float]
) -> None:
    batch = GetBatch(redis)
    await redis.set("k", "v")
    await redis.execute_command("CLIENT", "PAUSE", "150", "ALL")  # answered when it ends
    results = await asyncio.gather(
        *(asyncio.wait_for(batch.get("k", t), t) for t in timeouts), return_exceptions=True
    )
    impatient = timeouts.index(0.05)
    assert isinstance(results[impatient], TimeoutError)
    assert results[1 - impatient] == b"v"


async def test_one_failed_mget_is_one_breaker_failure_however_many_waited() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    breaker = Breaker(2, 60)
    cache = RedisCache(dead, breaker, fresh_ttl_s=60, stale_ttl_s=600, negative_ttl_s=30)
    try:
        first = await asyncio.gather(
            *(cache.get(f"k{n}", 0.5) for n in range(6)), return_exceptions=True
        )
        assert all(isinstance(r, CacheUnavailable) for r in first), first
        assert not breaker.is_open  # six waiters, one MGET, one failure of two
        with pytest.raises(CacheUnavailable):
            await cache.get("k", 0.5)
        assert breaker.is_open
    finally:
        await dead.aclose()


async def test_the_mgets_deadline_counts_from_its_callers_arrival(
    redis: aioredis.Redis,
) -> None:
    batch = GetBatch(redis)
    await redis.set("k", "v")
    loop = asyncio.get_running_loop()
    waiter = asyncio.ensure_future(batch.get("k", 0.1))
    await redis.execute_command("CLIENT", "PAUSE", "400", "ALL")
    started = loop.time()
    time.sleep(0.06)  # noqa: ASYNC251 - the event loop held up before the MGET is sent
    with pytest.raises(REDIS_ERRORS):
        await waiter
    assert loop.time() - started < 0.2  # 0.1 s from the call, not 0.1 s after the send
    await asyncio.sleep(0.4)
