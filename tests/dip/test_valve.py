"""The fleet-wide valve: exact, atomic, server-timed; and what replaces it when Redis fails."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.dip.breaker import Breaker
from shared.dip.valve import VALVE_KEY, FleetValve, LocalValve, RedisValve, Share
from tests.support.services import RedisServer


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, max_connections=500)
    yield client
    await client.aclose()


def fresh_key() -> str:
    return f"test:{{{uuid.uuid4().hex}}}:reads"


async def test_n_concurrent_decisions_at_budget_k_admit_exactly_k(redis: aioredis.Redis) -> None:
    valve = RedisValve(redis, limit=25, window_s=5.0, key=fresh_key())
    results = await asyncio.gather(*(valve.admit(2.0) for _ in range(200)))
    assert sum(results) == 25


async def test_concurrent_valves_on_separate_connections_share_one_budget(
    redis_server: RedisServer,
) -> None:
    """Eight instances, each shedding locally once Redis says the log is full, still share
    one budget exactly."""
    key = fresh_key()
    clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(8)]
    try:
        valves = [RedisValve(c, limit=40, window_s=5.0, key=key) for c in clients]
        results = await asyncio.gather(*(v.admit(2.0) for v in valves for _ in range(30)))
    finally:
        for c in clients:
            await c.aclose()
    assert sum(results) == 40


async def test_the_window_slides_rather_than_resetting_at_a_boundary(
    redis: aioredis.Redis,
) -> None:
    """Budget 10 per 0.4 s: a full burst blocks until the oldest admission is 0.4 s old."""
    valve = RedisValve(redis, limit=10, window_s=0.4, key=fresh_key())
    first = [await valve.admit(1.0) for _ in range(10)]
    assert all(first)
    await asyncio.sleep(0.2)  # a fixed window aligned here would reset; a sliding one must not
    assert not await valve.admit(1.0)
    await asyncio.sleep(0.25)  # now past 0.4 s since the burst
    assert await valve.admit(1.0)


async def test_no_sliding_window_ever_holds_more_than_the_budget(redis: aioredis.Redis) -> None:
    """Hammer for 1.2 s with a 0.3 s window, then check every window of admissions."""
    limit, window = 15, 0.3
    valve = RedisValve(redis, limit=limit, window_s=window, key=fresh_key())
    admitted: list[float] = []

    async def client() -> None:
        end = time.monotonic() + 1.2
        while time.monotonic() < end:
            # Record the time the decision was made, bracketing it by the request.
            before = time.monotonic()
            if await valve.admit(1.0):
                admitted.append(before)
            await asyncio.sleep(0.002)

    await asyncio.gather(*(client() for _ in range(8)))
    admitted.sort()
    # Client-side times trail the server's by up to one round trip, so allow a small slack.
    slack = 0.01
    worst = max(
        sum(1 for t in admitted[i:] if t < start + window - slack)
        for i, start in enumerate(admitted)
    )
    assert worst <= limit
    # And it really was saturated: about limit per window across the run.
    assert len(admitted) >= limit * 3


async def test_a_paced_valve_spreads_an_empty_logs_budget_across_the_window(
    redis: aioredis.Redis,
) -> None:
    """Budget 20 per 2 s in 2 slices: an empty log admits 10 at once, not 20. Slices of a
    second keep the test clear of a loaded machine's scheduling delays."""
    valve = RedisValve(redis, limit=20, window_s=2.0, key=fresh_key(), slices=2)
    assert sum(await asyncio.gather(*(valve.admit(1.0) for _ in range(50)))) == 10
    # The shed reply says when the slice frees, so the valve waits that long before asking.
    assert 0.5 < valve.closed_for <= 1.0


async def test_a_paced_valve_still_admits_its_whole_budget_over_the_window(
    redis: aioredis.Redis,
) -> None:
    """Budget 4 per 2 s in 2 slices: 2 now, 2 more a slice later, then none until the
    first two leave the window."""
    valve = RedisValve(redis, limit=4, window_s=2.0, key=fresh_key(), slices=2)
    assert sum(await asyncio.gather(*(valve.admit(1.0) for _ in range(10)))) == 2
    await asyncio.sleep(1.05)
    assert sum(await asyncio.gather(*(valve.admit(1.0) for _ in range(10)))) == 2
    assert valve.closed_for > 0.5  # the window is full until the first two leave it
    assert sum(await asyncio.gather(*(valve.admit(1.0) for _ in range(10)))) == 0


async def test_the_key_carries_a_hash_tag_never_expires_and_stays_bounded(
    redis: aioredis.Redis,
) -> None:
    assert "{" in VALVE_KEY and VALVE_KEY.index("}") > VALVE_KEY.index("{") + 1
    key = fresh_key()
    valve = RedisValve(redis, limit=5, window_s=0.05, key=key)
    for _ in range(12):
        await valve.admit(1.0)
        await asyncio.sleep(0.06)
    # No TTL: a volatile-* eviction policy never takes it (memory pressure takes cached
    # answers instead), and it holds at most the budget's worth of entries.
    assert await redis.pttl(key) == -1
    assert await redis.llen(key) == 5


async def test_a_share_takes_at_most_its_limit_and_leaves_dips_their_headroom(
    redis: aioredis.Redis,
) -> None:
    fleet, own = fresh_key(), fresh_key()
    warm = RedisValve(
        redis, limit=10, window_s=5.0, key=fleet, share=Share(own, limit=3, headroom=3)
    )
    dips = RedisValve(redis, limit=10, window_s=5.0, key=fleet)
    assert [await warm.admit(1.0) for _ in range(5)] == [True, True, True, False, False]
    assert warm.closed_for > 0
    # The warm's pages count in the fleet's log, so dips get the other 7 of 10.
    assert sum([await dips.admit(1.0) for _ in range(10)]) == 7


async def test_a_share_waits_while_dips_use_more_than_the_budget_less_its_headroom(
    redis: aioredis.Redis,
) -> None:
    fleet, own = fresh_key(), fresh_key()
    dips = RedisValve(redis, limit=10, window_s=5.0, key=fleet)
    assert all([await dips.admit(1.0) for _ in range(7)])
    warm = RedisValve(
        redis, limit=10, window_s=5.0, key=fleet, share=Share(own, limit=3, headroom=3)
    )
    # 7 in the window is the budget less the headroom: the warm backs off, untouched.
    assert not await warm.admit(1.0)
    assert await redis.llen(own) == 0
    assert sum([await dips.admit(1.0) for _ in range(5)]) == 3


async def test_each_decision_is_one_evalsha(redis: aioredis.Redis) -> None:
    valve = RedisValve(redis, limit=1000, window_s=1.0, key=fresh_key())
    await valve.admit(1.0)  # the first call may load the script
    await redis.config_resetstat()
    for _ in range(20):
        await valve.admit(1.0)
    stats = await redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 20
    # commandstats also counts the commands a script runs; none ran outside it.
    assert stats["cmdstat_lpush"]["calls"] == 20
    assert "cmdstat_incr" not in stats and "cmdstat_expire" not in stats


async def test_the_script_is_reloaded_after_a_script_flush(redis: aioredis.Redis) -> None:
    valve = RedisValve(redis, limit=5, window_s=1.0, key=fresh_key())
    assert await valve.admit(1.0)
    await redis.script_flush()
    assert await valve.admit(1.0)


def test_local_valve_is_an_exact_sliding_log() -> None:
    now = [100.0]
    valve = LocalValve(3, window_s=1.0, clock=lambda: now[0])
    assert [valve.try_admit() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.999
    assert not valve.try_admit()
    now[0] += 0.001
    assert valve.try_admit()


def test_a_paced_local_valve_admits_a_slices_share_at_a_time() -> None:
    # Steps of 1/8 s, exact in binary floating point.
    now = [100.0]
    valve = LocalValve(8, window_s=1.0, clock=lambda: now[0], slices=4)
    assert [valve.try_admit() for _ in range(3)] == [True, True, False]
    now[0] += 0.125
    assert not valve.try_admit()
    now[0] += 0.125
    assert [valve.try_admit() for _ in range(3)] == [True, True, False]
    for _ in range(2):
        now[0] += 0.25
        assert [valve.try_admit() for _ in range(3)] == [True, True, False]
    now[0] += 0.25  # the first two have left the window: 6 in it, room for 2 more
    assert [valve.try_admit() for _ in range(3)] == [True, True, False]


async def test_fleet_valve_falls_back_to_the_local_budget_when_redis_is_down() -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    try:
        breaker = Breaker(failures=2, reset_s=60)
        valve = FleetValve(RedisValve(dead, limit=100), LocalValve(4), breaker)
        results = [await valve.admit(0.2) for _ in range(10)]
    finally:
        await dead.aclose()
    assert sum(results) == 4  # neither open (10) nor closed (0): the local share
    assert breaker.is_open


async def test_fleet_valve_obeys_redis_when_it_answers(redis: aioredis.Redis) -> None:
    valve = FleetValve(
        RedisValve(redis, limit=2, window_s=5.0, key=fresh_key()), LocalValve(100), Breaker(3, 5)
    )
    assert [await valve.admit(1.0) for _ in range(3)] == [True, True, False]


async def test_a_shed_instance_skips_redis_until_a_slot_can_free(redis: aioredis.Redis) -> None:
    """While the log is full, no instance can be admitted, so asking is a wasted round trip."""
    key = fresh_key()
    valve = RedisValve(redis, limit=3, window_s=0.3, key=key)
    assert [await valve.admit(1.0) for _ in range(3)] == [True, True, True]
    await redis.config_resetstat()
    assert not await valve.admit(1.0)  # asks Redis once and learns when a slot frees
    assert not await valve.admit(1.0)  # known locally: no round trip
    assert not await valve.admit(1.0)
    stats = await redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 1
    await asyncio.sleep(0.32)
    assert await valve.admit(1.0)  # the window moved on: Redis is asked, and admits
