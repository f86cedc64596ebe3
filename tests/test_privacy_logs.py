"""No dialled number, in any form, and no key made from one reaches a log record, a metric
attribute, the health output or an error body.

In Azure, Microsoft's Python worker sets the root logger to INFO (DEBUG with
PYTHON_ENABLE_DEBUG_LOGGING) and forwards every record that reaches it to the host, which
sends the Function category on to Application Insights. So each test here starts from the
logging a fresh worker process has (every logger at NOTSET, propagating, enabled), puts a
handler on the root logger at INFO or at DEBUG, runs function_app.py's own start-up (which
quiets the Azure SDK's request lines), and drives the app against real Redis and Azurite:
dips from the database, the cache, a stale copy and the degraded default, a malformed
request through the dev host and Microsoft's worker, loads through the loader, a warm, a
surge and a scale tick. Everything the handler received, every metric attribute and every
health and error body is then searched for each number as E.164, as national digits, with
its country code, percent-encoded, as a RowKey of old, and as its keyed hash; and for each
customer id and its keyed hash. The control test shows the search finds the keyed hash in
the SDK's request line when that line is let through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import runpy
import time
import traceback
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from azure.data.tables.aio import TableClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from app.runtime import Runtime, set_runtime
from app.settings import load_settings
from devhost.host import DevHost
from devhost.worker import Worker
from shared.dip.cache import RedisCache
from shared.dip.contract import parse_dip_request
from shared.dip.customers import CustomerRecord, table_keys
from shared.dip.health import health_report
from shared.dip.loader import LoadReport, ReplaceRefused, load_file
from shared.dip.readmodel import ReadModelWriter
from shared.errors import CallerError
from shared.scale.arm import AzureArmGateway, ClosableGateway
from shared.scale.settings import ScaleSettings
from shared.scale.target import Target
from shared.scale.tick import run_tick
from shared.telemetry import SDK_REQUEST_LOGGER
from tests.support.dips import dip
from tests.support.fake_arm import FakeArm, StubCredential
from tests.support.keys import KEYS
from tests.support.services import ROOT, RedisServer
from tests.support.surges import OPERATOR, scale_env
from tests.support.surges import body as surge_body

CONV = "43436e96-5c19-4c52-b951-4ea05d9a9af7"

# The export's customers, each findable by one number.
GOLD_PHONE = "+13175550116"  # C-1001: read from the database, then answered from the cache
SILVER_PHONE = "+13175550117"  # C-2002: answered from a stale copy while the table is down
MOVED_PHONE = "+13175550118"  # on a row rejected for a bad phone, then C-3003's
GONE_PHONE = "+13175550119"  # C-4004, whom the replacing load removes
STRANGER = "+13179990001"  # nobody's
ABSENT = "+13179990058"  # nobody's either; its key falls in the partition of C-2002's id
NUMBERS = (GOLD_PHONE, SILVER_PHONE, MOVED_PHONE, GONE_PHONE, STRANGER, ABSENT)
CUSTOMER_IDS = ("C-1001", "C-2002", "C-3003", "C-4004")
SILVER = CustomerRecord("C-2002", "Silver", False, "es-US")

# Numbers written as a CRM export writes them; the loader normalises them to E.164.
FIRST_EXPORT = """customerId,phone,tier,isVip,preferredLanguage
C-1001,+1 317-555-0116,Gold,true,en-US
C-2002,(317) 555-0117,Silver,false,es-US
C-3003,not-a-phone;+13175550118,Gold,false,en-US
C-4004,317.555.0119,Standard,false,
"""
REPLACING_EXPORT = """customerId,phone,tier,isVip,preferredLanguage
C-1001,+13175550116,Gold,true,en-US
C-2002,+13175550117,Silver,false,es-US
C-3003,+13175550118,Platinum,true,en-US
"""

# Whatever the wall clock says when the tick runs, the schedule asks for 7 instances.
ALL_DAY = {
    "timezone": "UTC",
    "default": {"alwaysReady": 1},
    "windows": [{"name": "all-day", "start": "00:00", "end": "24:00", "alwaysReady": 7}],
}


def number_forms(number: str) -> dict[str, str]:
    """Every form a NANP number could take in a log line, a URL or a key."""
    national = number[2:]
    return {
        "E.164": number,
        "national digits": national,
        "digits with the country code": number[1:],
        "dotted national": f"{national[:3]}.{national[3:6]}.{national[6:]}",
        "dashed national": f"{national[:3]}-{national[3:6]}-{national[6:]}",
        "percent-encoded": quote(number, safe=""),
        "a RowKey of old, percent-encoded": quote(f"p|{number}", safe=""),
        "keyed hash": KEYS.key("ani", number).digest,
    }


def id_forms(customer_id: str) -> dict[str, str]:
    return {"customer id": customer_id, "keyed hash": KEYS.key("customerId", customer_id).digest}


FORBIDDEN = [
    (f"{value} as {form}", text)
    for value, forms in [
        *((n, number_forms(n)) for n in NUMBERS),
        *((c, id_forms(c)) for c in CUSTOMER_IDS),
    ]
    for form, text in forms.items()
]


def leaks(texts: Iterable[tuple[str, str]]) -> list[str]:
    """Each forbidden form found, where, and the text around it."""
    found = []
    for where, text in texts:
        for what, form in FORBIDDEN:
            at = text.find(form)
            if at >= 0:
                found.append(f"{what} in {where}: ...{text[max(0, at - 120) : at + 80]!r}...")
    return found


# What every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class RootCapture(logging.Handler):
    """On the root logger: the text of every record that reaches it, as the worker would
    forward it (message, arguments, exception, stack, extras)."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.texts: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format
            message = str(record.msg)
        parts = [message, repr(record.msg), repr(record.args)]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append("".join(traceback.format_exception(record.exc_info[1])))
        parts += [record.exc_text or "", record.stack_info or ""]
        parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in _STANDARD]
        self.texts.append((f"log record {record.name} {record.levelname}", "\n".join(parts)))


def metric_texts(reader: InMemoryMetricReader) -> list[tuple[str, str]]:
    """Every data point's attributes (and its exemplars'), as text."""
    texts = []
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    attributes: list[Any] = [dict(point.attributes or {})]
                    attributes += [
                        dict(e.filtered_attributes or {}) for e in getattr(point, "exemplars", ())
                    ]
                    texts.append((f"metric {metric.name}", repr(attributes)))
    return texts


@dataclass
class World:
    """The app as started in a worker, and everything it let out."""

    env: dict[str, str]
    fake_arm: FakeArm
    capture: RootCapture = field(default_factory=RootCapture)
    readers: list[InMemoryMetricReader] = field(default_factory=list)
    runtimes: list[Runtime] = field(default_factory=list)
    # Health reports, error bodies and loader messages, with where each came from.
    outputs: list[tuple[str, str]] = field(default_factory=list)

    def gateway(self, settings: ScaleSettings, target: Target) -> ClosableGateway:
        return AzureArmGateway(
            target,
            StubCredential(),
            endpoint=self.fake_arm.endpoint,
            connection_verify=self.fake_arm.ca_path,
            timeout=1.0,
        )

    def runtime(self, **overrides: str) -> Runtime:
        """A Runtime over the test's services, its metrics to a reader of its own."""
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
        rt = Runtime(
            load_settings({**self.env, **overrides}),
            gateway_factory=self.gateway,
            meter_provider=provider,
        )
        self.readers.append(reader)
        self.runtimes.append(rt)
        return rt

    @property
    def app(self) -> Runtime:
        """The Runtime function_app.py started with."""
        return self.runtimes[0]

    def output(self, where: str, value: Any) -> None:
        self.outputs.append((where, value if isinstance(value, str) else json.dumps(value)))

    async def health(self, where: str, rt: Runtime) -> dict[str, Any]:
        """What GET /api/health answers (function_app.py health())."""
        report = await health_report(rt.clients, rt.redis_breaker, rt.dips)
        answer = {**report, **await rt.read_model.status()}
        self.output(f"health of {where}", answer)
        return answer

    async def load(
        self, tmp_path: Path, export: str, *, replace: bool = False, write_through: bool = True
    ) -> LoadReport:
        """A load as ``python -m tools.load`` runs one."""
        rt, s = self.app, self.app.settings
        path = tmp_path / "export.csv"
        path.write_text(export, encoding="utf-8")
        writer = ReadModelWriter(
            rt.clients.bulk_redis,
            max_age_s=s.dip.read_model_max_age_seconds,
            stale_ttl_s=s.dip.stale_ttl_seconds,
            negative_ttl_s=s.dip.negative_ttl_seconds,
        )
        return await load_file(
            path,
            rt.clients.table(s.core.customer_table),
            s.dip.default_region,
            rt.keys,
            read_model=writer if write_through else None,
            replace=replace,
            max_delete=0.5,
        )

    def found(self) -> list[str]:
        return leaks(
            [
                *self.capture.texts,
                *(t for reader in self.readers for t in metric_texts(reader)),
                *self.outputs,
            ]
        )

    def assert_clean(self) -> None:
        assert self.capture.texts, "the root handler received no record at all"
        found = self.found()
        assert found == [], "\n".join(found)


@dataclass(frozen=True)
class _LoggerState:
    level: int
    propagate: bool
    disabled: bool


@contextlib.contextmanager
def fresh_worker_logging(level: int, handler: logging.Handler) -> Iterator[None]:
    """Logging as in a new worker process, whose root is at ``level`` with ``handler``;
    as it was afterwards."""
    root = logging.getLogger()
    manager = root.manager
    before = {
        name: _LoggerState(logger.level, logger.propagate, logger.disabled)
        for name, logger in list(manager.loggerDict.items())
        if isinstance(logger, logging.Logger)
    }
    root_level, disabled = root.level, manager.disable
    logging.disable(logging.NOTSET)
    for name in before:
        logger = logging.getLogger(name)
        logger.setLevel(logging.NOTSET)
        logger.propagate, logger.disabled = True, False
    root.setLevel(level)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        logging.disable(disabled)
        for name, state in before.items():
            logger = logging.getLogger(name)
            logger.setLevel(state.level)
            logger.propagate, logger.disabled = state.propagate, state.disabled


ROOT_LEVELS = pytest.mark.parametrize(
    "world", [logging.INFO, logging.DEBUG], indirect=True, ids=["root-at-INFO", "root-at-DEBUG"]
)


@pytest.fixture
async def world(
    request: pytest.FixtureRequest,
    base_env: dict[str, str],
    own_redis: RedisServer,
    redis: aioredis.Redis,
    table: TableClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[World]:
    """function_app.py started as a worker starts it, the root logger at ``request.param``,
    over this module's Redis (emptied) and a fresh customer table."""
    level: int = request.param
    # No Application Insights: configure_telemetry() does nothing, as locally.
    monkeypatch.delenv("APPLICATIONINSIGHTS_CONNECTION_STRING", raising=False)
    env = {
        **scale_env(base_env, ALL_DAY),
        "REDIS_URL": own_redis.url,
        # A warm reads every partition's page (256) within its share: a second at most.
        "MAX_DB_QPS": "2000",
        "WARM_DB_QPS": "1000",
    }
    world = World(env, FakeArm(tmp_path).start())
    try:
        with fresh_worker_logging(level, world.capture):
            # Nothing below the root holds a level of its own yet.
            assert logging.getLogger(SDK_REQUEST_LOGGER).getEffectiveLevel() == level
            set_runtime(world.runtime())
            # function_app.py's module code, as the worker runs it when it imports the app:
            # configure_telemetry(), quiet_sdk_requests(), runtime() (this Runtime) and
            # check_schedule().
            runpy.run_path(str(ROOT / "function_app.py"), run_name="function_app_started")
            assert logging.getLogger(SDK_REQUEST_LOGGER).level == logging.WARNING
            try:
                yield world
            finally:
                for rt in world.runtimes:
                    await rt.dips.drain()
                    await rt.close()
    finally:
        set_runtime(None)
        world.fake_arm.stop()
        async with TableClient.from_connection_string(
            env["CustomerStorage"], env["SURGE_TABLE"]
        ) as surges:
            await surges.delete_table()


def dead_table(env: dict[str, str]) -> str:
    """The environment's storage connection string with nothing listening on its port."""
    dead = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:1", env["CustomerStorage"])
    assert dead != env["CustomerStorage"]
    return dead


@ROOT_LEVELS
async def test_dips_from_the_database_the_cache_a_stale_copy_and_the_default_log_no_number(
    world: World, tmp_path: Path
) -> None:
    # Loaded without write-through (tools.load --no-write-through): the first dips miss.
    await world.load(tmp_path, REPLACING_EXPORT, write_through=False)
    rt = world.app
    database = await rt.dips.answer(dip(ani=f"tel:{GOLD_PHONE}"))
    await rt.dips.drain()
    cache = await rt.dips.answer(dip(ani=f"sip:{GOLD_PHONE}@carrier.example"))
    by_id = await rt.dips.answer(dip(customer_id="C-1001"))
    stranger = await rt.dips.answer(dip(ani=STRANGER))
    await rt.dips.drain()
    assert [o.answer.source for o in (database, cache, by_id, stranger)] == [
        "database",
        "cache",
        "database",
        "database",
    ]
    assert stranger.answer.customer_found is False

    # C-2002's answer as a dip cached it an hour ago: stale now.
    s = rt.settings.dip
    an_hour_ago = RedisCache(
        rt.clients.redis,
        rt.redis_breaker,
        fresh_ttl_s=s.cache_ttl_seconds,
        stale_ttl_s=s.stale_ttl_seconds,
        negative_ttl_s=s.negative_ttl_seconds,
        clock=lambda: time.time() - 3600,
    )
    await an_hour_ago.put(
        KEYS.key("ani", SILVER_PHONE).cache_key, SILVER, 1.0, as_of=time.time() - 3600
    )
    table_down = world.runtime(CustomerStorage=dead_table(world.env))
    stale = await table_down.dips.answer(dip(ani=SILVER_PHONE))
    assert (stale.answer.source, stale.answer.customer_id) == ("stale", "C-2002")

    both_down = world.runtime(
        REDIS_URL="redis://127.0.0.1:1/0", CustomerStorage=dead_table(world.env)
    )
    degraded = [
        await both_down.dips.answer(dip(ani=GOLD_PHONE)),
        await both_down.dips.answer(dip(ani=STRANGER)),
        await both_down.dips.answer(dip(customer_id="C-1001")),
    ]
    assert {o.answer.source for o in degraded} == {"degraded"}

    assert (await world.health("the app", rt))["status"] == "ok"
    assert (await world.health("the app with the table down", table_down))["table"] != "ok"
    assert (await world.health("the app with both down", both_down))["status"] == "degraded"
    world.assert_clean()


@ROOT_LEVELS
async def test_loads_with_a_rejected_row_and_a_replacing_load_log_no_number(
    world: World, tmp_path: Path
) -> None:
    first = await world.load(tmp_path, FIRST_EXPORT)
    assert (first.customers, [r.line for r in first.rejected]) == (3, [4])
    # What tools.load prints of a rejected row: its line and reason, never its number.
    world.output("the rejected row's reason", first.rejected[0].reason)
    with pytest.raises(ReplaceRefused) as refused:
        await world.load(tmp_path, FIRST_EXPORT, replace=True)
    world.output("the refused replacing load's message", str(refused.value))

    replaced = await world.load(tmp_path, REPLACING_EXPORT, replace=True)
    assert (replaced.customers, replaced.removed, replaced.redis_error) == (3, 2, None)
    moved = await world.app.dips.answer(dip(ani=MOVED_PHONE))
    gone = await world.app.dips.answer(dip(ani=GONE_PHONE))
    assert (moved.answer.source, moved.answer.customer_id) == ("cache", "C-3003")
    assert (gone.answer.source, gone.answer.customer_found) == ("cache", False)
    world.assert_clean()


@ROOT_LEVELS
async def test_a_warm_a_surge_and_a_scale_tick_log_no_number(world: World, tmp_path: Path) -> None:
    await world.load(tmp_path, REPLACING_EXPORT)
    rt = world.app
    assert (await rt.warm().run()).completed
    # A partition's filter exists once the warm put a key in it; in another partition a
    # miss proves nothing and reads the database.
    assert table_keys(KEYS.key("ani", ABSENT))[0] == table_keys(KEYS.key("customerId", "C-2002"))[0]
    absent = await rt.dips.answer(dip(ani=ABSENT))
    assert (absent.answer.source, absent.log.reason) == ("cache", "absent_from_read_model")

    started = await rt.surge_api.handle("POST", None, surge_body(alwaysReady=12), headers=OPERATOR)
    assert started.status == 201 and started.body["applied"] is True, started.body
    surge_id = started.body["surge"]["id"]
    listed = await rt.surge_api.handle("GET", None, b"", headers=OPERATOR)
    one = await rt.surge_api.handle("GET", surge_id, b"", headers=OPERATOR)
    # The scale_schedule timer's call, as function_app.py makes it.
    tick = await run_tick(
        rt.settings.scale, surge_table=rt.surge_table, gateway_factory=rt.gateway_factory
    )
    assert not tick.broken and world.fake_arm.state.always_ready == 12
    ended = await rt.surge_api.handle("DELETE", surge_id, b"", headers=OPERATOR)
    assert (listed.status, one.status, ended.status) == (200, 200, 200)
    assert world.fake_arm.state.always_ready == 7
    for name, answer in [("started", started), ("listed", listed), ("one", one), ("ended", ended)]:
        world.output(f"the surge switch's answer, {name}", answer.body)

    assert (await world.health("the app after a warm", rt))["readModel"] == "fresh"
    world.assert_clean()


MALFORMED: list[tuple[str, bytes, str, int]] = [
    (
        "a conversationId that is no UUID",
        json.dumps({"conversationId": "x", "ani": GOLD_PHONE}).encode(),
        "application/json",
        400,
    ),
    (
        "an ani over 256 characters",
        json.dumps({"conversationId": CONV, "ani": f"tel:{GOLD_PHONE};" + "0" * 300}).encode(),
        "application/json",
        400,
    ),
    (
        "an ani that is a JSON number",
        b'{"conversationId": "%s", "ani": %s}' % (CONV.encode(), GOLD_PHONE[1:].encode()),
        "application/json",
        400,
    ),
    (
        "a number as the customerId",
        json.dumps({"conversationId": CONV, "customerId": SILVER_PHONE}).encode(),
        "application/json",
        400,
    ),
    (
        "no conversationId",
        json.dumps({"ani": STRANGER}).encode(),
        "application/json",
        400,
    ),
    (
        "JSON cut off after the number",
        json.dumps({"conversationId": CONV, "ani": STRANGER}).encode()[:-2],
        "application/json",
        400,
    ),
    (
        "a body over 8 KiB",
        json.dumps({"conversationId": CONV, "ani": GOLD_PHONE, "pad": "x" * 9000}).encode(),
        "application/json",
        413,
    ),
    (
        "a form body",
        f"conversationId={CONV}&ani={quote(GOLD_PHONE)}".encode(),
        "application/x-www-form-urlencoded",
        415,
    ),
]


@ROOT_LEVELS
async def test_a_malformed_dip_request_holding_a_number_is_refused_without_echoing_it(
    world: World, app_worker: Worker, tmp_path: Path
) -> None:
    await world.load(tmp_path, REPLACING_EXPORT, write_through=False)
    for what, data, content_type, status in MALFORMED:
        with pytest.raises(CallerError) as refused:
            parse_dip_request(data, content_type)
        assert refused.value.status == status, what
        world.output(f"the error body for {what}", refused.value.body())

    # The same requests through the dev host and Microsoft's worker to ivr_lookup; then a
    # good one, read from the database, health and warmup.
    host = DevHost(app_worker, route_prefix="api")
    async with TestClient(TestServer(host.build())) as client:
        for what, data, content_type, status in MALFORMED:
            resp = await client.post(
                "/api/lookup", data=data, headers={"Content-Type": content_type}
            )
            assert resp.status == status, what
            world.output(f"ivr_lookup's {status} for {what}", await resp.text())
        good = json.dumps({"conversationId": CONV, "ani": f"tel:{GOLD_PHONE}"}).encode()
        resp = await client.post(
            "/api/lookup", data=good, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 200 and (await resp.json())["source"] == "database"
        health = await client.get("/api/health")
        assert health.status == 200
        world.output("GET /api/health", await health.text())
        # warmup logs what it reached.
        assert (await client.post("/admin/functions/warmup", json={})).status == 202
    world.assert_clean()


@pytest.mark.parametrize("world", [logging.INFO], indirect=True, ids=["root-at-INFO"])
async def test_the_search_finds_the_key_in_the_sdk_request_line_when_it_is_let_through(
    world: World, tmp_path: Path
) -> None:
    await world.load(tmp_path, REPLACING_EXPORT, write_through=False)
    assert world.found() == []
    # Undo the start-up's quieting: the SDK logs each request's URL at INFO again.
    logging.getLogger(SDK_REQUEST_LOGGER).setLevel(logging.INFO)
    outcome = await world.app.dips.answer(dip(ani=GOLD_PHONE))
    assert outcome.answer.source == "database"
    found = world.found()
    # The point read's URL carries the RowKey, the number's keyed hash; nothing else leaks.
    assert found and all(
        line.startswith(f"{GOLD_PHONE} as keyed hash in log record {SDK_REQUEST_LOGGER} INFO")
        for line in found
    ), found
