"""The dip flow end to end over a real Redis and a real Azurite, including their failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from app.runtime import Runtime
from app.settings import load_settings
from shared.dip.customers import CustomerRecord, DatabaseUnavailable
from shared.dip.keys import LookupKey, LookupKeys
from shared.dip.lookup import (
    CallerDefaults,
    Clocks,
    DipService,
    DipTimeouts,
    InflightCap,
    caller_of,
)
from tests.support.dips import GOLD_PHONE, dip
from tests.support.keys import KEYS, SECRET
from tests.support.proxies import LatencyProxy
from tests.support.services import AZURITE_CONNECTION_STRING, Azurite, RedisServer


@pytest.fixture
async def make_runtime() -> AsyncIterator[object]:
    made: list[Runtime] = []

    def factory(env: dict[str, str], **overrides: str) -> Runtime:
        rt = Runtime(load_settings({**env, **overrides}))
        made.append(rt)
        return rt

    yield factory
    for rt in made:
        await rt.dips.drain()
        await rt.clients.close()


class CountingStore:
    """Wraps the real store to count reads (single flight, valve)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.reads = 0

    async def get(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
        self.reads += 1
        return await self.inner.get(key, timeout)  # type: ignore[attr-defined]


def test_customer_id_wins_over_the_ani() -> None:
    assert caller_of(dip(ani=GOLD_PHONE, customer_id="C-9"), "US") == ("customerId", "C-9")
    assert caller_of(dip(ani="tel: +1 317-555-0116"), "US") == ("ani", GOLD_PHONE)
    assert caller_of(dip(ani="anonymous"), "US") is None


async def test_a_miss_reads_the_database_then_the_next_call_hits_the_cache(
    env: dict[str, str], make_runtime: object
) -> None:
    rt = make_runtime(env)  # type: ignore[operator]
    first = await rt.dips.answer(dip(ani="tel:+13175550116"))
    await rt.dips.drain()
    second = await rt.dips.answer(dip(ani="sip:+13175550116@carrier.example"))
    assert first.answer.body() == {
        "customerFound": True,
        "customerId": "C-1001",
        "customerTier": "Gold",
        "isVip": True,
        "preferredLanguage": "en-US",
        "source": "database",
        "matchedBy": "ani",
    }
    assert second.answer.source == "cache"
    assert second.answer.customer_id == "C-1001"


async def test_a_withheld_number_answers_none_without_touching_dependencies(
    env: dict[str, str], make_runtime: object
) -> None:
    rt = make_runtime(env, REDIS_URL="redis://127.0.0.1:1/0")  # type: ignore[operator]
    outcome = await rt.dips.answer(dip(ani="anonymous"))
    assert outcome.answer.source == "none"
    assert outcome.answer.customer_found is False
    assert outcome.answer.customer_tier == "Standard"
    assert outcome.log.key_kind == "none"


async def test_an_unknown_caller_is_not_found_then_cached_negatively(
    env: dict[str, str], make_runtime: object
) -> None:
    rt = make_runtime(env)  # type: ignore[operator]
    first = await rt.dips.answer(dip(customer_id="C-404"))
    await rt.dips.drain()
    second = await rt.dips.answer(dip(customer_id="C-404"))
    assert (first.answer.customer_found, first.answer.source) == (False, "database")
    assert (second.answer.customer_found, second.answer.source) == (False, "cache")


async def test_concurrent_misses_for_one_caller_share_one_table_read(
    env: dict[str, str], make_runtime: object
) -> None:
    rt = make_runtime(env)  # type: ignore[operator]
    store = CountingStore(rt.dips.store)
    rt.dips.store = store
    outcomes = await asyncio.gather(*(rt.dips.answer(dip(customer_id="C-1001")) for _ in range(25)))
    assert {o.answer.source for o in outcomes} == {"database"}
    assert store.reads == 1


async def test_over_budget_reads_are_shed_to_the_degraded_default(
    env: dict[str, str], make_runtime: object
) -> None:
    # Unpaced, so the whole budget of 3 is there for 8 dips in a row.
    rt = make_runtime(env, MAX_DB_QPS="3", LOCAL_DB_QPS="1", VALVE_PACE_SLICES="1")  # type: ignore[operator]
    store = CountingStore(rt.dips.store)
    rt.dips.store = store
    outcomes = [await rt.dips.answer(dip(customer_id=f"C-new-{n}")) for n in range(8)]
    sources = [o.answer.source for o in outcomes]
    assert sources.count("database") == 3
    assert sources.count("degraded") == 5
    assert store.reads == 3
    shed = [o for o in outcomes if o.answer.source == "degraded"]
    assert all(o.log.shed and o.log.reason == "budget" for o in shed)
    assert all(o.answer.customer_tier == "Standard" for o in shed)


async def test_a_burst_gets_one_slice_of_the_budget_when_the_valve_is_paced(
    env: dict[str, str], make_runtime: object
) -> None:
    # A 1.5 s window in two slices of 0.75 s: 3 of the budget of 6 per slice.
    rt = make_runtime(  # type: ignore[operator]
        env, MAX_DB_QPS="6", LOCAL_DB_QPS="1", VALVE_GUARD_MS="500", VALVE_PACE_SLICES="2"
    )
    outcomes = [await rt.dips.answer(dip(customer_id=f"C-new-{n}")) for n in range(8)]
    sources = [o.answer.source for o in outcomes]
    assert sources.count("database") == 3
    assert all(o.log.reason == "budget" for o in outcomes if o.answer.source == "degraded")


async def test_a_shed_caller_with_a_stale_copy_gets_the_stale_copy(
    env: dict[str, str], make_runtime: object
) -> None:
    rt = make_runtime(
        env,
        CACHE_TTL_SECONDS="1",
        MAX_DB_QPS="1",  # type: ignore[operator]
        LOCAL_DB_QPS="1",
    )
    assert (await rt.dips.answer(dip(customer_id="C-1001"))).answer.source == "database"
    await rt.dips.drain()
    await asyncio.sleep(1.1)  # the copy is stale now, and the budget of 1 is still spent
    await rt.dips.answer(dip(customer_id="C-2002"))  # spends the fresh window's budget
    outcome = await rt.dips.answer(dip(customer_id="C-1001"))
    assert outcome.answer.source == "stale"
    assert outcome.answer.customer_tier == "Gold"
    assert outcome.log.shed


class SlowStore:
    """A database that takes ``seconds`` per read and counts reads in flight."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.in_flight = 0
        self.most_in_flight = 0

    async def get(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.in_flight -= 1
        return None


async def test_a_burst_beyond_the_in_flight_cap_waits_briefly_for_slots_and_is_answered(
    env: dict[str, str], make_runtime: object
) -> None:
    # A burst of misses at a quiet moment: the valve admits them all, and each waits a few
    # milliseconds for a slot rather than answer the default.
    rt = make_runtime(env, MAX_INFLIGHT_DB_READS="2")  # type: ignore[operator]
    rt.dips.store = store = SlowStore(0.01)
    outcomes = await asyncio.gather(*(rt.dips.answer(dip(customer_id=f"C-{n}")) for n in range(6)))
    assert [o.answer.source for o in outcomes] == ["database"] * 6
    assert store.most_in_flight == 2


async def test_reads_that_get_no_slot_within_the_wait_are_shed_well_before_the_deadline(
    env: dict[str, str], make_runtime: object
) -> None:
    # A slow database holds the slots: waiting longer would only hold requests open.
    rt = make_runtime(env, MAX_INFLIGHT_DB_READS="2")  # type: ignore[operator]
    assert rt.dips.slot_wait_s == 0.05  # half the valve's 100 ms guard
    rt.dips.store = store = SlowStore(0.4)
    outcomes = await asyncio.gather(*(rt.dips.answer(dip(customer_id=f"C-{n}")) for n in range(6)))
    sources = sorted(o.answer.source for o in outcomes)
    assert sources == ["database"] * 2 + ["degraded"] * 4
    assert store.most_in_flight == 2
    shed = [o for o in outcomes if o.log.reason == "inflight"]
    assert len(shed) == 4 and all(o.log.latency_ms < 300 for o in shed)


async def test_only_reads_the_valve_admits_wait_for_a_slot(
    env: dict[str, str], make_runtime: object
) -> None:
    # Over the budget, a dip is shed by the valve at once, without touching a slot.
    rt = make_runtime(  # type: ignore[operator]
        env, MAX_INFLIGHT_DB_READS="1", MAX_DB_QPS="1", LOCAL_DB_QPS="1"
    )
    rt.dips.store = SlowStore(0.3)
    outcomes = await asyncio.gather(*(rt.dips.answer(dip(customer_id=f"E-{n}")) for n in range(3)))
    reasons = sorted(str(o.log.reason) for o in outcomes)
    assert reasons == ["None", "budget", "budget"]


def test_the_in_flight_cap_follows_littles_law_unless_set() -> None:
    base = {"CustomerStorage": "UseDevelopmentStorage=true", "LOOKUP_KEY_SECRET": SECRET}
    # 2 x 200 reads/s x 40 ms = 16 reads in flight, shared by the instance's workers.
    assert load_settings(base).dip.inflight_cap == 16
    assert load_settings({**base, "FUNCTIONS_WORKER_PROCESS_COUNT": "2"}).dip.inflight_cap == 8
    assert (
        load_settings(
            {
                **base,
                "DB_READ_LATENCY_MS": "100",
                "MAX_DB_QPS": "500",
                "LOCAL_DB_QPS": "20",
                "FUNCTIONS_WORKER_PROCESS_COUNT": "4",
            }
        ).dip.inflight_cap
        == 25
    )
    assert load_settings({**base, "MAX_INFLIGHT_DB_READS": "3"}).dip.inflight_cap == 3


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def test_redis_stopped_mid_test_answers_within_the_deadline_on_the_local_budget(
    env: dict[str, str], make_runtime: object, own_redis: RedisServer
) -> None:
    rt = make_runtime(
        env,
        REDIS_URL=own_redis.url,
        LOCAL_DB_QPS="3",  # type: ignore[operator]
        REDIS_BREAKER_FAILURES="2",
        VALVE_PACE_SLICES="1",  # the local budget of 3, all at once
    )
    assert (await rt.dips.answer(dip(customer_id="C-1001"))).answer.source == "database"
    own_redis.stop()
    started = time.monotonic()
    outcomes = [await rt.dips.answer(dip(customer_id=f"C-x{n}")) for n in range(10)]
    elapsed = time.monotonic() - started
    sources = [o.answer.source for o in outcomes]
    # The local budget admits 3 reads (they reach the table: not found is "database");
    # the rest are degraded. Nothing waits for Redis once the breaker is open.
    assert sources.count("database") == 3
    assert sources.count("degraded") == 7
    assert rt.redis_breaker.is_open
    assert max(o.log.latency_ms for o in outcomes) < 2500
    assert elapsed < 10 * 2.5


async def test_a_database_answer_is_still_database_when_redis_is_down(
    env: dict[str, str], make_runtime: object
) -> None:
    rt = make_runtime(env, REDIS_URL="redis://127.0.0.1:1/0")  # type: ignore[operator]
    outcome = await rt.dips.answer(dip(customer_id="C-1001"))
    assert outcome.answer.source == "database"
    assert outcome.answer.customer_tier == "Gold"


async def test_an_unreachable_table_answers_stale_then_degraded(
    env: dict[str, str], make_runtime: object
) -> None:
    healthy = make_runtime(env, CACHE_TTL_SECONDS="1")  # type: ignore[operator]
    await healthy.dips.answer(dip(customer_id="C-1001"))
    await healthy.dips.drain()
    await asyncio.sleep(1.1)
    broken_storage = AZURITE_CONNECTION_STRING.format(port=1)
    rt = make_runtime(env, CustomerStorage=broken_storage)  # type: ignore[operator]
    stale = await rt.dips.answer(dip(customer_id="C-1001"))
    degraded = await rt.dips.answer(dip(customer_id="C-never-cached"))
    assert (stale.answer.source, stale.answer.customer_tier) == ("stale", "Gold")
    assert degraded.answer.source == "degraded"
    assert degraded.log.reason is not None and degraded.log.reason.startswith("database")


async def test_a_table_slowed_past_the_deadline_still_answers_in_time(
    env: dict[str, str], make_runtime: object, azurite: Azurite
) -> None:
    async with LatencyProxy(azurite.port, delay=4.0) as proxy:
        slow = AZURITE_CONNECTION_STRING.format(port=proxy.port)
        rt = make_runtime(
            env,
            CustomerStorage=slow,
            HANDLER_DEADLINE_MS="1000",  # type: ignore[operator]
            DB_TIMEOUT_MS="800",
        )
        started = time.monotonic()
        outcome = await rt.dips.answer(dip(customer_id="C-1001"))
        elapsed = time.monotonic() - started
    assert outcome.answer.source == "degraded"
    assert elapsed < 1.0


async def test_a_moderately_slow_table_is_waited_for(
    env: dict[str, str], make_runtime: object, azurite: Azurite
) -> None:
    async with LatencyProxy(azurite.port, delay=0.3) as proxy:
        slow = AZURITE_CONNECTION_STRING.format(port=proxy.port)
        rt = make_runtime(env, CustomerStorage=slow)  # type: ignore[operator]
        outcome = await rt.dips.answer(dip(customer_id="C-1001"))
    assert outcome.answer.source == "database"
    assert outcome.log.latency_ms < 2500


async def test_every_answer_is_logged_without_the_callers_number(
    env: dict[str, str], make_runtime: object, caplog: pytest.LogCaptureFixture
) -> None:
    rt = make_runtime(env)  # type: ignore[operator]
    with caplog.at_level("INFO", logger="dipguard.dip"):
        await rt.dips.answer(dip(ani="tel:+13175550116"))
    lines = [r.getMessage() for r in caplog.records if r.name == "dipguard.dip"]
    assert len(lines) == 1
    assert lines[0].startswith('dip {"event":"dip","keyKind":"ani","source":"database"')
    assert "5550116" not in lines[0]


async def test_a_bug_in_a_dependency_still_answers_the_fallback(
    env: dict[str, str], make_runtime: object
) -> None:
    rt = make_runtime(env)  # type: ignore[operator]

    class BrokenStore:
        async def get(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
            raise KeyError("a bug, not an outage")

    rt.dips.store = BrokenStore()
    outcome = await rt.dips.answer(dip(customer_id="C-zz"))
    assert outcome.answer.source == "degraded"
    assert outcome.log.reason == "internal_error"


async def test_a_deadline_spent_before_the_valve_sheds_without_asking_it() -> None:
    now = [0.0]

    class SlowCache:
        async def get(self, key: str, timeout: float) -> None:
            now[0] += 10.0  # the cache took the whole deadline, by the service's clock
            return None

        async def put(self, *a: object, **kw: object) -> None:
            return None

    class CountingValve:
        asked = 0

        async def admit(self, timeout: float) -> bool:
            self.asked += 1
            return True

    valve = CountingValve()
    service = DipService(
        cache=SlowCache(),
        valve=valve,
        store=CountingStore(None),
        keys=KEYS,
        timeouts=DipTimeouts(deadline_ms=2500, db_timeout_ms=1500, redis_timeout_ms=100),
        defaults=CallerDefaults(region="US", degraded_tier="Standard"),
        inflight=InflightCap(4),
        clocks=Clocks(monotonic=lambda: now[0]),
    )
    outcome = await service.answer(dip(customer_id="C-1001"))
    for _ in range(3):
        await asyncio.sleep(0)  # the single-flight leader runs on, past the caller's deadline
    assert outcome.answer.source == "degraded"
    assert outcome.log.reason == "deadline"
    assert valve.asked == 0


def test_dip_service_is_constructible_without_io() -> None:
    class Nothing:
        async def get(self, *a: object) -> None:
            return None

        async def put(self, *a: object, **kw: object) -> None:
            return None

        async def admit(self, timeout: float) -> bool:
            return True

    service = DipService(
        cache=Nothing(),
        valve=Nothing(),
        store=Nothing(),
        keys=KEYS,
        timeouts=DipTimeouts(deadline_ms=2500, db_timeout_ms=1500, redis_timeout_ms=100),
        defaults=CallerDefaults(region="US", degraded_tier="Standard"),
        inflight=InflightCap(4),
    )
    assert service.inflight_reads == 0


class KeyedStore:
    """A store that knows one record under one key, and fails for the keys listed."""

    def __init__(self, known: LookupKey, failing: frozenset[LookupKey] = frozenset()) -> None:
        self.known, self.failing = known, failing
        self.asked: list[LookupKey] = []

    async def get(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
        self.asked.append(key)
        if key in self.failing:
            raise DatabaseUnavailable("down")
        return CustomerRecord("C-1", "Gold", True) if key == self.known else None


def rotating_service(store: KeyedStore) -> DipService:
    class NoCache:
        async def get(self, *a: object) -> None:
            return None

        async def put(self, *a: object, **kw: object) -> None:
            return None

    class Open:
        async def admit(self, timeout: float) -> bool:
            return True

    return DipService(
        cache=NoCache(),
        valve=Open(),
        store=store,
        keys=LookupKeys(NEW_SECRET, previous=SECRET.encode()),
        timeouts=DipTimeouts(deadline_ms=2500, db_timeout_ms=1500, redis_timeout_ms=100),
        defaults=CallerDefaults(region="US", degraded_tier="Standard"),
    )


NEW_SECRET = b"n" * 40


async def test_during_a_rotation_a_caller_under_the_previous_key_is_found() -> None:
    store = KeyedStore(KEYS.key("ani", GOLD_PHONE))
    answer = (await rotating_service(store).answer(dip(ani=GOLD_PHONE))).answer
    assert (answer.customer_id, answer.matched_by, answer.source) == ("C-1", "ani", "database")
    assert store.asked == list(
        LookupKeys(NEW_SECRET, SECRET.encode()).candidates("ani", GOLD_PHONE)
    )


async def test_during_a_rotation_the_current_key_is_tried_first_and_wins() -> None:
    store = KeyedStore(LookupKeys(NEW_SECRET).key("customerId", "C-1"))
    answer = (await rotating_service(store).answer(dip(customer_id="C-1"))).answer
    assert (answer.customer_id, answer.matched_by) == ("C-1", "customerId")
    assert len(store.asked) == 1


async def test_during_a_rotation_an_unreadable_previous_key_is_degraded_not_unknown() -> None:
    previous = KEYS.key("ani", GOLD_PHONE)
    store = KeyedStore(previous, failing=frozenset({previous}))
    answer = (await rotating_service(store).answer(dip(ani=GOLD_PHONE))).answer
    assert (answer.customer_found, answer.source) == (False, "degraded")
