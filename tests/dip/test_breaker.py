"""The Redis breaker: it opens after consecutive failures and lets one trial through each
reset period; it counts Redis's failures and timeouts, never a call its own dip cut."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.dip.breaker import Breaker, RedisUnavailable
from shared.dip.cache import CacheUnavailable, RedisCache
from tests.support.services import RedisServer


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=5)
    yield client
    await client.aclose()


async def _silent() -> None:
    """A Redis that never answers."""
    await asyncio.Event().wait()


async def test_a_dip_deadline_that_cuts_redis_calls_leaves_the_breaker_closed(
    redis: aioredis.Redis,
) -> None:
    """A dip whose deadline runs out cancels its Redis call: that says nothing about Redis."""
    breaker = Breaker(failures=1, reset_s=60)
    cache = RedisCache(redis, breaker, fresh_ttl_s=60, stale_ttl_s=600, negative_ttl_s=30)
    for _ in range(3):
        with pytest.raises(TimeoutError):
            # The dip's deadline is already spent: the GET is cancelled before Redis answers.
            async with asyncio.timeout(0):
                await cache.get(f"c|{uuid.uuid4().hex}", 10.0)
    assert not breaker.is_open
    assert await cache.get(f"c|{uuid.uuid4().hex}", 1.0) is None  # Redis is asked, and answers


async def test_a_silent_redis_opens_the_breaker() -> None:
    """The control: timeouts count, so a silent Redis opens the breaker."""
    breaker = Breaker(failures=2, reset_s=60, clock=lambda: 0.0)
    for _ in range(2):
        with pytest.raises(RedisUnavailable, match="TimeoutError"):
            await breaker.call(_silent, 0.01)
    assert breaker.is_open
    with pytest.raises(RedisUnavailable, match="open"):
        await breaker.call(_silent, 0.01)


async def test_a_trial_cut_by_its_dip_frees_the_way_for_the_next_trial() -> None:
    now = [0.0]
    breaker = Breaker(failures=1, reset_s=5.0, clock=lambda: now[0])
    with pytest.raises(RedisUnavailable):
        await breaker.call(_silent, 0.01)
    assert breaker.is_open
    now[0] = 5.0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await breaker.call(_silent, 10.0)  # the trial, cancelled by its dip's deadline
    assert breaker.is_open and breaker.allow()  # not stuck "in flight": another trial may go


async def test_cut_calls_neither_count_nor_reset_the_run_of_failures(
    redis: aioredis.Redis,
) -> None:
    """Cut calls neither count nor reset: consecutive real failures still open it."""
    breaker = Breaker(failures=2, reset_s=60)
    breaker.failure()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await breaker.call(lambda: redis.get("k"), 10.0)
    breaker.failure()
    assert breaker.is_open
    cache = RedisCache(redis, breaker, fresh_ttl_s=60, stale_ttl_s=600, negative_ttl_s=30)
    with pytest.raises(CacheUnavailable):
        await cache.get("c|x", 1.0)


def test_breaker_opens_after_consecutive_failures_and_allows_one_trial() -> None:
    now = [0.0]
    breaker = Breaker(failures=3, reset_s=5.0, clock=lambda: now[0])
    for _ in range(2):
        breaker.failure()
    assert breaker.allow() and not breaker.is_open
    breaker.failure()
    assert breaker.is_open and not breaker.allow()
    now[0] += 5.0
    assert breaker.allow()  # the one trial
    assert not breaker.allow()  # no second trial while it runs
    breaker.failure()
    assert not breaker.allow()  # trial failed: open for another reset period
    now[0] += 5.0
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.allow()


def test_late_failures_of_calls_made_before_opening_do_not_delay_recovery() -> None:
    now = [0.0]
    breaker = Breaker(failures=2, reset_s=5.0, clock=lambda: now[0])
    breaker.failure()
    breaker.failure()  # opens at t=0
    now[0] = 3.0
    breaker.failure()  # a slow call from before t=0 times out now
    now[0] = 5.0
    assert breaker.allow()  # the trial is due at t=5, not t=8
