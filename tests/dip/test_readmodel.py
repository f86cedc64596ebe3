"""The read model on the dip path: what an authoritative miss needs, what eviction does,
and how the warm and dips share the database. Real Redis, real Azurite."""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from azure.data.tables.aio import TableClient

from app.runtime import Runtime
from app.settings import load_settings
from bench.procs import ProxyProcess
from shared.dip.breaker import Breaker, RedisUnavailable
from shared.dip.contract import DipRequest
from shared.dip.customers import CustomerRecord
from shared.dip.keys import LookupKey
from shared.dip.loader import load_file
from shared.dip.readmodel import MARKER_KEY, Marker, ReadModel, ReadModelWriter, read_marker
from shared.dip.valve import VALVE_KEY
from tests.support.customers import customers, keys_of, load, number
from tests.support.keys import KEYS, SECRET
from tests.support.services import AZURITE_CONNECTION_STRING, Azurite, RedisServer, free_port

CONV = "43436e96-5c19-4c52-b951-4ea05d9a9af7"
STRANGER = "+13179990001"


def ani(phone: str) -> DipRequest:
    return DipRequest(CONV, phone, None, None)


class CountingStore:
    """The real store, counting reads: an authoritative miss must not reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads = 0

    async def get(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
        self.reads += 1
        return await self.inner.get(key, timeout)


@pytest.fixture
async def warmed(
    own_redis: RedisServer, azurite: Azurite, table_name: str
) -> AsyncIterator[dict[str, str]]:
    """A table of 100 customers, warmed; the environment that reaches them."""
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.flushall()
    env = {
        "REDIS_URL": own_redis.url,
        "CustomerStorage": azurite.connection_string,
        "LOOKUP_KEY_SECRET": SECRET,
        "CUSTOMER_TABLE": table_name,
        "MAX_DB_QPS": "400",
        "LOCAL_DB_QPS": "20",
    }
    rt = Runtime(load_settings(env))
    table = rt.clients.table(table_name)
    await load(table, 100)
    assert (await rt.warm().run()).completed
    await rt.close()
    yield env
    async with TableClient.from_connection_string(azurite.connection_string, table_name) as t:
        await t.delete_table()


@pytest.fixture
async def runtime(warmed: dict[str, str]) -> AsyncIterator[object]:
    made: list[Runtime] = []

    def make(**overrides: str) -> Runtime:
        rt = Runtime(load_settings({**warmed, **overrides}))
        rt.dips.store = CountingStore(rt.dips.store)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.dips.drain()
        await rt.close()


async def test_a_known_caller_is_answered_from_the_warm_without_a_read(
    runtime: Any,
) -> None:
    rt = runtime()
    outcome = await rt.dips.answer(ani(number(7)))
    assert (outcome.answer.source, outcome.answer.customer_id) == ("cache", "W-7")
    assert rt.dips.store.reads == 0


async def test_an_unknown_caller_is_no_customer_without_a_read_after_a_complete_warm(
    runtime: Any,
) -> None:
    rt = runtime()
    outcome = await rt.dips.answer(ani(STRANGER))
    assert outcome.answer.customer_found is False and outcome.answer.source == "cache"
    assert outcome.log.reason == "absent_from_read_model"
    assert rt.dips.store.reads == 0


async def test_with_authoritative_misses_off_an_unknown_caller_reads_the_database(
    runtime: Any,
) -> None:
    rt = runtime(READ_MODEL_AUTHORITATIVE="false")
    outcome = await rt.dips.answer(ani(STRANGER))
    assert outcome.answer.source == "database" and not outcome.answer.customer_found
    assert rt.dips.store.reads == 1


async def test_a_stale_marker_makes_misses_read_the_database(
    runtime: Any, own_redis: RedisServer
) -> None:
    async with aioredis.Redis.from_url(own_redis.url) as client:
        marker = await read_marker(client)
        assert marker is not None
        old = Marker(marker.generation, time.time() - 7200, marker.entities, marker.bloom_bits)
        await client.set(MARKER_KEY, old.to_json())
    rt = runtime(READ_MODEL_MAX_AGE_SECONDS="3600")
    assert (await rt.dips.answer(ani(STRANGER))).answer.source == "database"
    assert rt.dips.store.reads == 1


async def test_with_no_marker_misses_read_the_database(
    runtime: Any, own_redis: RedisServer
) -> None:
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.delete(MARKER_KEY)
    rt = runtime()
    assert (await rt.dips.answer(ani(STRANGER))).answer.source == "database"


async def test_strangers_arriving_together_share_one_read_of_the_marker(
    runtime: Any, own_redis: RedisServer
) -> None:
    # Twenty dips' Redis calls at once on a machine busy with the rest of the suite: each
    # gets the longest wait the setting allows, so none times out into a database read.
    rt = runtime(REDIS_TIMEOUT_MS="2000")
    strangers = [f"+1317555{n:04d}" for n in range(9000, 9020)]
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.config_resetstat()
        outcomes = await asyncio.gather(*(rt.dips.answer(ani(s)) for s in strangers))
        stats = await client.info("commandstats")
    assert {o.log.reason for o in outcomes} == {"absent_from_read_model"}
    # One MGET of the twenty answers, one GET of the marker for all of them.
    assert stats["cmdstat_get"]["calls"] == 1
    assert stats["cmdstat_mget"]["calls"] == 1


async def test_a_marker_read_that_runs_out_of_time_is_redis_unavailable_and_counted() -> None:
    """The dip then reads the database (lookup's _proved_absent), never answers degraded."""

    class StalledShard:  # the marker's shard accepts the GET and never answers
        async def get(self, name: str) -> bytes | None:
            await asyncio.sleep(10)
            return None

    breaker = Breaker(1, 60)
    model = ReadModel(StalledShard(), breaker, max_age_s=3600, authoritative=True)  # type: ignore[arg-type]
    with pytest.raises(RedisUnavailable):
        await model.marker(0.05)
    await asyncio.sleep(0.05)  # the shared read's own timer has run out too
    assert breaker.is_open


async def test_every_warmed_key_passes_the_filter(runtime: Any) -> None:
    # A Bloom filter never says "absent" for a key it holds: no customer is ever denied.
    rt = runtime()
    for person in customers(100):
        for key in keys_of(person):
            assert not await rt.read_model.absent(key, 1.0)


async def test_an_evicted_answer_becomes_a_database_read_through_the_valve(
    runtime: Any, own_redis: RedisServer
) -> None:
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.delete(
            "dipguard:answer:" + KEYS.key("ani", number(9)).cache_key
        )  # as eviction would
        before = await client.llen(VALVE_KEY)
        rt = runtime()
        outcome = await rt.dips.answer(ani(number(9)))
        assert (outcome.answer.source, outcome.answer.customer_id) == ("database", "W-9")
        assert await client.llen(VALVE_KEY) == before + 1  # the read was admitted


async def test_a_replaced_warms_filters_never_deny_a_customer(
    runtime: Any, own_redis: RedisServer
) -> None:
    # This process still holds the marker of a warm whose filters a newer warm has just
    # deleted; the customer's answer has been evicted. The dip must read, not deny.
    rt = runtime()
    assert (await rt.dips.answer(ani(STRANGER))).log.reason == "absent_from_read_model"
    async with aioredis.Redis.from_url(own_redis.url) as client:
        filters = [k async for k in client.scan_iter(match="dipguard:readmodel:bloom:*")]
        await client.delete(*filters)
        await client.delete("dipguard:answer:" + KEYS.key("ani", number(11)).cache_key)
    outcome = await rt.dips.answer(ani(number(11)))
    assert (outcome.answer.source, outcome.answer.customer_id) == ("database", "W-11")


class DipDuringWrite:
    """The table, answering a dip for ``phone`` while the loader writes it, before the
    write: the moment a new customer is in neither the table nor the read model's answers."""

    def __init__(self, inner: TableClient, rt: Runtime, phone: str) -> None:
        self.inner, self.rt, self.phone = inner, rt, phone
        self.answers: list[Any] = []
        self.asked = False

    async def submit_transaction(self, batch: Any) -> Any:
        if not self.asked:  # the first batch only (the loader sends batches concurrently)
            self.asked = True
            self.answers.append((await self.rt.dips.answer(ani(self.phone))).answer)
        return await self.inner.submit_transaction(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_new_customer_is_never_no_customer_while_a_load_writes_the_table(
    runtime: Any, tmp_path: Path
) -> None:
    rt = runtime()
    assert (await rt.dips.answer(ani("+13175550999"))).answer.source == "cache"  # absent now
    path = tmp_path / "crm.csv"
    path.write_text("customerId,phone,tier,isVip\nN-1,+13175550999,Gold,false\n")
    table = DipDuringWrite(rt.clients.table(rt.settings.core.customer_table), rt, "+13175550999")
    writer = ReadModelWriter(rt.clients.redis, max_age_s=3600, stale_ttl_s=3600, negative_ttl_s=30)
    report = await load_file(path, table, "US", KEYS, read_model=writer)  # type: ignore[arg-type]
    assert report.entities == 2 and report.written_through == 2
    # Mid-load the read model said "maybe": the dip read the table (not written yet) and
    # answered from it, rather than telling the new customer "no customer" from Redis.
    (during,) = table.answers
    assert during.source == "database"
    after = (await rt.dips.answer(ani("+13175550999"))).answer
    assert (after.customer_id, after.source) == ("N-1", "cache")


async def test_health_reports_the_read_models_age_size_and_memory(runtime: Any) -> None:
    status = await runtime().read_model.status()
    assert status["readModel"] == "fresh" and status["readModelEntities"] == 200
    assert 0 <= status["readModelAgeSeconds"] < 60 and status["redisUsedMemoryBytes"] > 0


async def test_redis_down_on_a_miss_falls_back_to_the_database(
    warmed: dict[str, str],
) -> None:
    rt = Runtime(load_settings({**warmed, "REDIS_URL": "redis://127.0.0.1:1/0"}))
    try:
        outcome = await rt.dips.answer(ani(number(3)))
        assert outcome.answer.customer_id == "W-3"
        assert outcome.answer.source == "database"
    finally:
        await rt.dips.drain()
        await rt.close()


# --- memory pressure -----------------------------------------------------------------------


@pytest.fixture
def small_redis() -> Iterator[RedisServer]:
    """A Redis that must evict: 6 MB (the filters take 4), volatile-lru as on Azure Redis."""
    server = RedisServer(extra_args=["--maxmemory", "6mb", "--maxmemory-policy", "volatile-lru"])
    server.start()
    yield server
    server.stop()


async def test_under_memory_pressure_answers_go_first_and_the_budget_stays(
    small_redis: RedisServer, azurite: Azurite, table_name: str
) -> None:
    env = {
        "REDIS_URL": small_redis.url,
        "CustomerStorage": azurite.connection_string,
        "LOOKUP_KEY_SECRET": SECRET,
        "CUSTOMER_TABLE": table_name,
        "MAX_DB_QPS": "400",
        "LOCAL_DB_QPS": "20",
    }
    rt = Runtime(load_settings(env))
    rt.dips.store = store = CountingStore(rt.dips.store)
    try:
        people = await load(rt.clients.table(table_name), 5000)
        report = await rt.warm().run()
        assert report.completed, report.reason
        redis = rt.clients.redis
        stats = await redis.info("stats")
        assert int(stats["evicted_keys"]) > 0, "the warm did not fill a 6 MB Redis"
        # What has no TTL was never taken: the valve's log, the filter, the marker.
        assert await redis.exists(MARKER_KEY) == 1
        marker = await read_marker(redis)
        assert marker is not None
        evicted = [
            p
            for p in people[::25]
            if not await redis.exists("dipguard:answer:" + KEYS.key("ani", p.phones[0]).cache_key)
        ]
        assert evicted, "no sampled answer was evicted"
        for person in evicted[:10]:
            outcome = await rt.dips.answer(ani(person.phones[0]))
            # Not "no customer": the filter still knows the key, so the dip reads.
            assert outcome.answer.customer_id == person.record.customer_id
            assert outcome.answer.source == "database"
        assert store.reads == len(evicted[:10])
        assert await redis.pttl(VALVE_KEY) == -1 and await redis.llen(VALVE_KEY) >= 10
        # And a stranger is still answered from the filter, without a read.
        assert (await rt.dips.answer(ani(STRANGER))).log.reason == "absent_from_read_model"
    finally:
        await rt.dips.drain()
        await rt.close()
        async with TableClient.from_connection_string(azurite.connection_string, table_name) as t:
            await t.delete_table()


# --- the warm's share, counted at the database -------------------------------------------


def _most_in_window(times: list[float], window: float = 1.0) -> int:
    times = sorted(times)
    return max((bisect.bisect_left(times, t + window) - i for i, t in enumerate(times)), default=0)


async def test_the_warms_pages_and_the_dips_reads_stay_within_the_budget_at_the_database(
    own_redis: RedisServer, azurite: Azurite, table_name: str, tmp_path: Path
) -> None:
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.flushall()
    port = free_port()
    proxy = ProxyProcess(port, azurite.port, slots=32, service_ms=5, log_path=tmp_path / "p")
    proxy.start(port)
    env = {
        "REDIS_URL": own_redis.url,
        "CustomerStorage": AZURITE_CONNECTION_STRING.format(port=port),
        "LOOKUP_KEY_SECRET": SECRET,
        "CUSTOMER_TABLE": table_name,
        "MAX_DB_QPS": "40",
        "LOCAL_DB_QPS": "10",
        # The guard absorbs the time between a read's admission (in Redis's clock) and its
        # arrival at the proxy; on a loaded machine 100 ms was once not enough (11 pages in
        # a second at the proxy, 10 per 1.1 s admitted).
        "VALVE_GUARD_MS": "200",
        "WARM_DB_QPS": "10",
    }
    window_s = 1.0 + int(env["VALVE_GUARD_MS"]) / 1000
    rt = Runtime(load_settings(env))
    try:
        async with TableClient.from_connection_string(
            azurite.connection_string, table_name
        ) as direct:
            people = await load(direct, 2000)
        async with aiohttp.ClientSession() as session:
            await proxy.reset(session)
            warm = asyncio.ensure_future(rt.warm().run())
            # Dips for callers nobody has cached, at twice the budget, for 6 seconds.
            started = time.monotonic()
            sent = []
            for i, person in enumerate(people[:480]):
                await asyncio.sleep(max(0.0, started + i / 80 - time.monotonic()))
                sent.append(
                    asyncio.ensure_future(
                        rt.dips.answer(DipRequest(CONV, None, person.record.customer_id, None))
                    )
                )
            await asyncio.gather(*sent)
            dips_ended = time.monotonic()
            report = await asyncio.wait_for(warm, 120)
            stats = await proxy.stats(session)
        assert report.completed
        reads, pages = stats["reads"], stats["queries"]
        points = sorted(set(reads) - set(pages))
        # The database never saw more than MAX_DB_QPS requests in a second, pages included,
        assert _most_in_window(reads) <= 40
        # the warm never more than its share,
        assert _most_in_window(pages) <= 10
        # and while dips wanted more than the budget, they kept the rest of it.
        during = [t for t in points if t < points[0] + (dips_ended - started)]
        seconds = (dips_ended - started) - 1
        dips_share = (40 - 10) / window_s  # the budget less the warm's share, per second
        assert len(during) / (dips_ended - started) >= 0.8 * dips_share, (len(during), seconds)
    finally:
        await rt.dips.drain()
        await rt.close()
        proxy.stop()
        async with TableClient.from_connection_string(azurite.connection_string, table_name) as t:
            await t.delete_table()


def test_a_marker_survives_its_json() -> None:
    marker = Marker("g1", 1_700_000_000.5, 12, 1024)
    again = Marker.from_json(marker.to_json())
    assert again == marker
    assert Marker.from_json("{not json") is None
    assert Marker.from_json(json.dumps({"generation": "g"})) is None
