"""The dip's OpenTelemetry metrics, collected from the real dip path (real Redis, real
Azurite) with the SDK's InMemoryMetricReader: what each answer, shed, valve decision and
Table read counts, what the gauges observe, and that metrics never break a dip."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, get_args

import pytest
import redis.asyncio as aioredis
from opentelemetry.metrics import get_meter_provider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from app.runtime import Runtime
from app.settings import load_settings
from shared.dip.breaker import Breaker
from shared.dip.contract import Source
from shared.dip.customers import CustomerRecord
from shared.dip.keys import KeyKind, LookupKey
from shared.dip.metrics import (
    DB_INFLIGHT,
    DB_OUTCOMES,
    DB_READ_DURATION,
    DB_READS,
    DIP_DURATION,
    DIPS,
    KEY_KINDS,
    LATENCY_LE,
    LOOKUP_KEY_SECRETS,
    METER_NAME,
    READMODEL_AGE,
    SHED_REASONS,
    SHEDS,
    SOURCES,
    VALVE_DECISIONS,
    DipMetrics,
    db_outcome,
    latency_le,
    shed_reason,
)
from shared.dip.readmodel import AGE_REPORT_S, MARKER_KEY, Marker, ReadModel
from shared.settings import SettingsError
from tests.support.dips import dip
from tests.support.keys import SECRET
from tests.support.proxies import LatencyProxy
from tests.support.services import AZURITE_CONNECTION_STRING, Azurite, RedisServer

type Key = tuple[tuple[str, str], ...]


def key(**attributes: str) -> Key:
    """A data point's attributes, comparable: key(source="cache") == (("source", "cache"),)."""
    return tuple(sorted(attributes.items()))


class Readings:
    """One collection of the dipguard meter, by instrument name."""

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self.points: dict[str, list[Any]] = {}
        data = reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                assert scope.scope.name == METER_NAME
                for metric in scope.metrics:
                    self.points.setdefault(metric.name, []).extend(metric.data.data_points)

    def _by_key(self, name: str, value: Callable[[Any], Any]) -> dict[Key, Any]:
        return {
            tuple(sorted((k, str(v)) for k, v in point.attributes.items())): value(point)
            for point in self.points.get(name, [])
        }

    def sums(self, name: str) -> dict[Key, float]:
        return self._by_key(name, lambda point: point.value)

    def gauge(self, name: str) -> dict[Key, float]:
        return self._by_key(name, lambda point: point.value)

    def histogram(self, name: str) -> dict[Key, tuple[int, float]]:
        return self._by_key(name, lambda point: (point.count, point.sum))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test: stopped mid-test, or given a warm's marker."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


type MakeRuntime = Callable[..., tuple[Runtime, InMemoryMetricReader]]


@pytest.fixture
async def make_runtime() -> AsyncIterator[MakeRuntime]:
    """A Runtime over the real services whose meter provider an in-memory reader reads."""
    made: list[tuple[Runtime, MeterProvider]] = []

    def factory(env: dict[str, str], **overrides: str) -> tuple[Runtime, InMemoryMetricReader]:
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        rt = Runtime(load_settings({**env, **overrides}), meter_provider=provider)
        made.append((rt, provider))
        return rt, reader

    yield factory
    for rt, provider in made:
        await rt.dips.drain()
        await rt.clients.close()
        provider.shutdown()


# --- the names and their normalisation ---


def test_the_allowed_values_are_the_codes_own() -> None:
    assert SOURCES == get_args(Source)
    assert set(KEY_KINDS) == {*get_args(KeyKind), "none"}
    assert LATENCY_LE == ("5", "10", "25", "50", "100", "250", "500", "1000", "2500", "+Inf")


@pytest.mark.parametrize(
    ("latency_ms", "bucket"),
    [(0.0, "5"), (5.0, "5"), (5.001, "10"), (99.9, "100"), (2500.0, "2500"), (2500.1, "+Inf")],
)
def test_a_latency_counts_in_the_bucket_whose_upper_bound_it_does_not_exceed(
    latency_ms: float, bucket: str
) -> None:
    assert latency_le(latency_ms) == bucket


@pytest.mark.parametrize(
    ("reason", "normalised"),
    [
        ("budget", "budget"),
        ("inflight", "inflight"),
        ("deadline", "deadline"),
        ("internal_error", "internal_error"),
        ("database: TimeoutError", "database_timeout"),
        ("database: ServiceResponseTimeoutError", "database_timeout"),
        ("database: ServiceRequestTimeoutError", "database_timeout"),
        ("database: ServiceRequestError", "database_error"),
        ("database: TableNotFound", "database_error"),
        ("database: HttpResponseError", "database_error"),
        ("something new", "internal_error"),
        ("absent_from_read_model", None),
        (None, None),
    ],
)
def test_a_dips_reason_is_normalised_to_the_small_fixed_set(
    reason: str | None, normalised: str | None
) -> None:
    assert shed_reason(reason) == normalised
    assert normalised is None or normalised in SHED_REASONS


def test_a_failed_read_is_a_timeout_only_when_it_timed_out() -> None:
    from shared.dip.customers import DatabaseUnavailable

    assert db_outcome(TimeoutError()) == "timeout"
    assert db_outcome(DatabaseUnavailable("TimeoutError")) == "timeout"
    assert db_outcome(DatabaseUnavailable("ServiceResponseTimeoutError")) == "timeout"
    assert db_outcome(DatabaseUnavailable("ServiceRequestError")) == "error"
    assert db_outcome(DatabaseUnavailable("TableNotFound")) == "error"
    assert {"timeout", "error"} <= set(DB_OUTCOMES)


# --- answers ---


async def test_a_database_answer_then_a_cache_answer_count_under_their_source_key_kind_and_bucket(
    env: dict[str, str], make_runtime: MakeRuntime
) -> None:
    rt, reader = make_runtime(env)
    first = await rt.dips.answer(dip(ani="tel:+13175550116"))
    await rt.dips.drain()
    second = await rt.dips.answer(dip(ani="tel:+13175550116"))
    by_id = await rt.dips.answer(dip(customer_id="C-2002"))
    withheld = await rt.dips.answer(dip(ani="anonymous"))
    assert [o.answer.source for o in (first, second, by_id, withheld)] == [
        "database",
        "cache",
        "database",
        "none",
    ]

    readings = Readings(reader)
    dips = readings.sums(DIPS)
    assert dips == {
        key(source="database", key_kind="ani", latency_le=latency_le(first.log.latency_ms)): 1,
        key(source="cache", key_kind="ani", latency_le=latency_le(second.log.latency_ms)): 1,
        key(
            source="database", key_kind="customerId", latency_le=latency_le(by_id.log.latency_ms)
        ): 1,
        key(source="none", key_kind="none", latency_le=latency_le(withheld.log.latency_ms)): 1,
    }
    assert readings.histogram(DIP_DURATION) == {
        key(source="database"): (2, first.log.latency_ms + by_id.log.latency_ms),
        key(source="cache"): (1, second.log.latency_ms),
        key(source="none"): (1, withheld.log.latency_ms),
    }
    # Nobody was shed, and the withheld number asked nobody.
    assert SHEDS not in readings.points
    assert readings.sums(VALVE_DECISIONS) == {key(outcome="admitted", valve="fleet"): 2}
    assert readings.sums(DB_READS) == {key(outcome="ok"): 2}


async def test_a_database_read_counts_and_is_timed_by_its_outcome(
    env: dict[str, str], make_runtime: MakeRuntime
) -> None:
    rt, reader = make_runtime(env)
    found = await rt.dips.answer(dip(customer_id="C-1001"))
    missing = await rt.dips.answer(dip(customer_id="C-404"))
    assert (found.answer.source, missing.answer.source) == ("database", "database")
    assert missing.answer.customer_found is False

    readings = Readings(reader)
    assert readings.sums(DB_READS) == {key(outcome="ok"): 1, key(outcome="not_found"): 1}
    durations = readings.histogram(DB_READ_DURATION)
    assert set(durations) == {key(outcome="ok"), key(outcome="not_found")}
    for outcome, answered in (("ok", found), ("not_found", missing)):
        count, total = durations[key(outcome=outcome)]
        # The read is part of the dip: it took something, and no longer than the dip.
        assert count == 1 and 0 < total <= answered.log.latency_ms


# --- sheds and the valve ---


async def test_a_shed_by_the_valve_counts_a_budget_shed_and_a_shed_fleet_decision(
    env: dict[str, str], make_runtime: MakeRuntime
) -> None:
    rt, reader = make_runtime(env, MAX_DB_QPS="1", LOCAL_DB_QPS="1", VALVE_PACE_SLICES="1")
    first = await rt.dips.answer(dip(customer_id="C-1001"))
    second = await rt.dips.answer(dip(customer_id="C-2002"))
    assert (first.answer.source, second.answer.source) == ("database", "degraded")
    assert second.log.reason == "budget"

    readings = Readings(reader)
    assert readings.sums(SHEDS) == {key(reason="budget"): 1}
    assert readings.sums(VALVE_DECISIONS) == {
        key(outcome="admitted", valve="fleet"): 1,
        key(outcome="shed", valve="fleet"): 1,
    }
    assert readings.sums(DB_READS) == {key(outcome="ok"): 1}
    degraded = {k: v for k, v in readings.sums(DIPS).items() if ("source", "degraded") in k}
    assert sum(degraded.values()) == 1


async def test_with_redis_stopped_the_local_budget_decides_and_says_so(
    env: dict[str, str], make_runtime: MakeRuntime, own_redis: RedisServer
) -> None:
    rt, reader = make_runtime(
        env,
        REDIS_URL=own_redis.url,
        LOCAL_DB_QPS="3",
        VALVE_PACE_SLICES="1",
        REDIS_BREAKER_FAILURES="2",
    )
    assert (await rt.dips.answer(dip(customer_id="C-1001"))).answer.source == "database"
    await rt.dips.drain()
    own_redis.stop()
    outcomes = [await rt.dips.answer(dip(customer_id=f"C-x{n}")) for n in range(5)]
    assert [o.answer.source for o in outcomes] == ["database"] * 3 + ["degraded"] * 2
    assert rt.redis_breaker.is_open

    readings = Readings(reader)
    assert readings.sums(VALVE_DECISIONS) == {
        key(outcome="admitted", valve="fleet"): 1,
        key(outcome="admitted", valve="local"): 3,
        key(outcome="shed", valve="local"): 2,
    }
    assert readings.sums(SHEDS) == {key(reason="budget"): 2}
    # The local budget's reads reached the table, which has none of these callers.
    assert readings.sums(DB_READS) == {key(outcome="ok"): 1, key(outcome="not_found"): 3}


async def test_an_unreachable_table_counts_an_error_read_and_a_database_error_shed(
    env: dict[str, str], make_runtime: MakeRuntime
) -> None:
    rt, reader = make_runtime(env, CustomerStorage=AZURITE_CONNECTION_STRING.format(port=1))
    outcome = await rt.dips.answer(dip(customer_id="C-1001"))
    assert outcome.answer.source == "degraded"
    assert outcome.log.reason == "database: ServiceRequestError"

    readings = Readings(reader)
    assert readings.sums(DB_READS) == {key(outcome="error"): 1}
    assert readings.sums(SHEDS) == {key(reason="database_error"): 1}


async def test_a_table_slower_than_the_read_timeout_counts_a_timeout_read_and_shed(
    env: dict[str, str], make_runtime: MakeRuntime, azurite: Azurite
) -> None:
    async with LatencyProxy(azurite.port, delay=2.0) as proxy:
        rt, reader = make_runtime(
            env,
            CustomerStorage=AZURITE_CONNECTION_STRING.format(port=proxy.port),
            HANDLER_DEADLINE_MS="1000",
            DB_TIMEOUT_MS="300",
        )
        outcome = await rt.dips.answer(dip(customer_id="C-1001"))
    assert outcome.answer.source == "degraded"
    assert outcome.log.reason == "database: TimeoutError"

    readings = Readings(reader)
    assert readings.sums(DB_READS) == {key(outcome="timeout"): 1}
    ((count, total),) = readings.histogram(DB_READ_DURATION).values()
    assert count == 1 and 250 <= total < 1000
    assert readings.sums(SHEDS) == {key(reason="database_timeout"): 1}


async def test_a_bug_counts_an_internal_error_shed(
    env: dict[str, str], make_runtime: MakeRuntime
) -> None:
    rt, reader = make_runtime(env)

    class BrokenStore:
        async def get(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
            raise KeyError("a bug, not an outage")

    rt.dips.store = BrokenStore()
    outcome = await rt.dips.answer(dip(customer_id="C-zz"))
    assert (outcome.answer.source, outcome.log.reason) == ("degraded", "internal_error")
    readings = Readings(reader)
    assert readings.sums(SHEDS) == {key(reason="internal_error"): 1}
    assert readings.sums(DB_READS) == {key(outcome="error"): 1}


async def test_a_stale_answer_counts_as_shed_and_a_cached_one_does_not(
    env: dict[str, str], make_runtime: MakeRuntime
) -> None:
    rt, reader = make_runtime(
        env, CACHE_TTL_SECONDS="1", MAX_DB_QPS="1", LOCAL_DB_QPS="1", VALVE_PACE_SLICES="1"
    )
    assert (await rt.dips.answer(dip(customer_id="C-1001"))).answer.source == "database"
    await rt.dips.drain()
    assert (await rt.dips.answer(dip(customer_id="C-1001"))).answer.source == "cache"
    await asyncio.sleep(1.15)  # the copy is stale; the budget of 1 is free again
    await rt.dips.answer(dip(customer_id="C-2002"))  # spends it
    stale = await rt.dips.answer(dip(customer_id="C-1001"))
    assert (stale.answer.source, stale.log.reason) == ("stale", "budget")

    readings = Readings(reader)
    assert readings.sums(SHEDS) == {key(reason="budget"): 1}
    by_source: dict[str, float] = {}
    for attributes, value in readings.sums(DIPS).items():
        source = dict(attributes)["source"]
        by_source[source] = by_source.get(source, 0) + value
    assert by_source == {"database": 2, "cache": 1, "stale": 1}


# --- the gauges ---


async def test_the_in_flight_gauge_observes_the_reads_a_slow_table_holds(
    env: dict[str, str], make_runtime: MakeRuntime, azurite: Azurite
) -> None:
    async with LatencyProxy(azurite.port, delay=0.3) as proxy:
        rt, reader = make_runtime(
            env, CustomerStorage=AZURITE_CONNECTION_STRING.format(port=proxy.port)
        )
        assert DB_INFLIGHT not in Readings(reader).points  # no DipService, nothing to say
        assert rt.dips.inflight_reads == 0
        assert Readings(reader).gauge(DB_INFLIGHT) == {(): 0}
        dips = [
            asyncio.ensure_future(rt.dips.answer(dip(customer_id=c))) for c in ("C-1001", "C-2002")
        ]
        for _ in range(200):
            if rt.dips.inflight_reads == 2:
                break
            await asyncio.sleep(0.005)
        assert Readings(reader).gauge(DB_INFLIGHT) == {(): 2}
        outcomes = await asyncio.gather(*dips)
    assert [o.answer.source for o in outcomes] == ["database", "database"]
    assert Readings(reader).gauge(DB_INFLIGHT) == {(): 0}


async def test_the_read_model_age_is_observed_once_a_dip_has_read_the_warms_marker(
    env: dict[str, str], make_runtime: MakeRuntime, own_redis: RedisServer
) -> None:
    # A complete warm finished two minutes ago (its filters are gone, so it proves nothing
    # absent and the dip reads the table; only its age matters here).
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.set(MARKER_KEY, Marker("g1", time.time() - 120, 100, 1024).to_json())
    rt, reader = make_runtime(env, REDIS_URL=own_redis.url)
    assert rt.read_model is not None and rt.dips.read_model is rt.read_model
    # Nothing has read the marker yet: no value rather than a made-up one.
    assert READMODEL_AGE not in Readings(reader).points

    outcome = await rt.dips.answer(dip(ani="+13179990001"))  # nobody Redis holds
    assert outcome.answer.source == "database"
    ((age,),) = [list(Readings(reader).gauge(READMODEL_AGE).values())]
    assert 120 <= age < 180


async def test_a_health_check_also_refreshes_the_read_model_age(
    env: dict[str, str], make_runtime: MakeRuntime, own_redis: RedisServer
) -> None:
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.set(MARKER_KEY, Marker("g1", time.time() - 600, 100, 1024).to_json())
    rt, reader = make_runtime(env, REDIS_URL=own_redis.url)
    assert (await rt.read_model.status())["readModelAgeSeconds"] >= 600
    ((age,),) = [list(Readings(reader).gauge(READMODEL_AGE).values())]
    assert 600 <= age < 660


async def test_a_worker_stops_reporting_an_age_it_has_not_looked_at_for_a_while(
    own_redis: RedisServer,
) -> None:
    """A worker that only answers cache hits must not report an age that grows past newer
    warms: after AGE_REPORT_S without reading the marker it reports nothing."""
    now = [time.time()]
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.set(MARKER_KEY, Marker("g1", now[0] - 60, 100, 1024).to_json())
        model = ReadModel(
            client, Breaker(5, 5), max_age_s=3600, authoritative=True, clock=lambda: now[0]
        )
        assert model.last_known_age() is None
        await model.marker(1.0)
        assert model.last_known_age() == pytest.approx(60)
        now[0] += AGE_REPORT_S
        assert model.last_known_age() == pytest.approx(60 + AGE_REPORT_S)
        now[0] += 1
        assert model.last_known_age() is None
        await model.marker(1.0)  # looked at again: reported again
        assert model.last_known_age() == pytest.approx(61 + AGE_REPORT_S)


# --- metrics never break a dip ---


async def test_with_no_meter_provider_configured_dips_answer_as_before(
    env: dict[str, str],
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    # Nothing in the test process installs a global provider: this is the no-op one.
    assert not isinstance(get_meter_provider(), SdkMeterProvider)
    rt = Runtime(load_settings(env))
    try:
        assert rt.meter_provider is get_meter_provider()
        outcome = await rt.dips.answer(dip(customer_id="C-1001"))
        await rt.dips.drain()
        assert outcome.answer.source == "database"
        assert (await rt.dips.answer(dip(customer_id="C-1001"))).answer.source == "cache"
    finally:
        await rt.dips.drain()
        await rt.clients.close()
    # And the pieces built without a Runtime record into nothing.
    DipMetrics().dip("cache", "ani", 1.0, None)


async def test_a_failing_instrument_never_fails_a_dip(
    env: dict[str, str], make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, reader = make_runtime(env)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an exporter bug")

    metrics = rt.metrics
    for histogram in (metrics._dip_duration, metrics._db_duration):
        monkeypatch.setattr(histogram, "record", boom)
    for tally in metrics._tallies:
        monkeypatch.setattr(tally.counter, "add", boom)
    monkeypatch.setattr(rt.dips.metrics, "_inflight", boom)
    outcome = await rt.dips.answer(dip(customer_id="C-1001"))
    assert outcome.answer.source == "database"
    readings = Readings(reader)  # the collection survives the failing adds too
    assert DB_INFLIGHT not in readings.points and DIPS not in readings.points


def test_counted_dips_reach_every_reader_once() -> None:
    readers = InMemoryMetricReader(), InMemoryMetricReader()
    provider = MeterProvider(metric_readers=readers, shutdown_on_exit=False)
    metrics = DipMetrics(provider)
    metrics.dip("cache", "ani", 3.0, None)
    metrics.dip("cache", "ani", 4.0, None)
    first = Readings(readers[0]).sums(DIPS)
    metrics.dip("cache", "ani", 4.5, None)
    # Counted since the first reader's collection: the second reader sees all three, and
    # the first sees the third added to its own two, never one twice.
    assert Readings(readers[1]).sums(DIPS) == {
        key(source="cache", key_kind="ani", latency_le="5"): 3
    }
    assert first == {key(source="cache", key_kind="ani", latency_le="5"): 2}
    assert Readings(readers[0]).sums(DIPS) == {
        key(source="cache", key_kind="ani", latency_le="5"): 3
    }
    provider.shutdown()


# --- the per-dip log line's level ---


@pytest.mark.parametrize(
    ("setting", "level"), [("INFO", logging.INFO), ("warning", logging.WARNING), ("OFF", None)]
)
async def test_the_dip_log_line_is_logged_at_dip_log_level_or_not_at_all(
    env: dict[str, str],
    make_runtime: MakeRuntime,
    caplog: pytest.LogCaptureFixture,
    setting: str,
    level: int | None,
) -> None:
    rt, reader = make_runtime(env, DIP_LOG_LEVEL=setting)
    with caplog.at_level(logging.DEBUG, logger="dipguard.dip"):
        await rt.dips.answer(dip(customer_id="C-1001"))
    lines = [r for r in caplog.records if r.name == "dipguard.dip"]
    assert [r.levelno for r in lines] == ([] if level is None else [level])
    assert all(r.getMessage().startswith('dip {"event":"dip"') for r in lines)
    # The metrics count the dip whatever the log line does.
    assert sum(Readings(reader).sums(DIPS).values()) == 1


async def test_a_dip_logged_at_debug_is_not_logged_under_info(
    env: dict[str, str], make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    rt, _ = make_runtime(env, DIP_LOG_LEVEL="DEBUG")
    with caplog.at_level(logging.INFO, logger="dipguard.dip"):
        await rt.dips.answer(dip(customer_id="C-1001"))
    assert [r for r in caplog.records if r.name == "dipguard.dip"] == []


def test_an_unknown_dip_log_level_is_refused_naming_the_setting() -> None:
    base = {"CustomerStorage": "UseDevelopmentStorage=true", "LOOKUP_KEY_SECRET": SECRET}
    assert load_settings(base).dip.dip_log_level == logging.INFO
    with pytest.raises(SettingsError, match="DIP_LOG_LEVEL"):
        load_settings({**base, "DIP_LOG_LEVEL": "verbose"})


async def test_each_process_reports_how_many_lookup_key_secrets_it_holds(
    env: dict[str, str], make_runtime: MakeRuntime
) -> None:
    rt, reader = make_runtime(env)
    assert not rt.dips.keys.rotating
    assert Readings(reader).gauge(LOOKUP_KEY_SECRETS) == {(): 1}
    rotating, reader = make_runtime(env, LOOKUP_KEY_SECRET_PREVIOUS="p" * 44)
    assert rotating.dips.keys.rotating
    assert Readings(reader).gauge(LOOKUP_KEY_SECRETS) == {(): 2}
