"""The bulk warm: every customer's answers into Redis, off-peak, within a share of the budget.

Run by the ``cache_warm`` timer, by a surge, and by operators with ``python -m tools.warm``.

A spike's callers are mostly people who have not called in the last minutes, so a cache
filled only by dips cannot know them. The warm pages through the whole customer table and
writes each lookup key's answer in the dip's own entry format, so known callers keep their
real answer through a spike without costing the database a read. It also builds the Bloom
filter that lets a dip answer an unknown number without a read (``readmodel.py``).

* **Pages, partition by partition.** One query per table partition (``PartitionKey eq``),
  up to 1,000 entities a page, selecting only what a dip needs. Several partitions are read
  at once; the answers go to Redis in pipelines.
* **A share of the valve.** Every page is one admission from the same fleet valve as dips,
  counted in the same log, so the database never sees more than MAX_DB_QPS requests in any
  second, pages included. The warm takes at most WARM_DB_QPS pages a second, and only while
  dips leave that much headroom: when dips need the budget, the warm waits.
* **Resumable and single.** After every page the continuation point is saved in Redis, so a
  warm that is stopped or killed resumes where it was. A lease keeps a second warm out.
* **One log line** at the end: ``cache_warm {json}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from azure.data.tables.aio import TableClient

from shared.clients import REDIS_ERRORS, RedisClient
from shared.dip.cache import Entry, EntryWriter
from shared.dip.customers import PARTITIONS, record_of
from shared.dip.keys import LookupKey
from shared.dip.readmodel import (
    CURSOR_KEY,
    LEASE_KEY,
    MARKER_KEY,
    Bloom,
    Marker,
    bloom_bits_for,
    bloom_key,
    read_marker,
    server_clock,
    used_memory,
)
from shared.dip.settings import DipSettings
from shared.dip.valve import VALVE_KEY, RedisValve, Share

__all__ = ["WARM_VALVE_KEY", "Warm", "WarmReport", "warm_valve"]

LOG = logging.getLogger("dipguard.warm")

# The warm's own admissions, beside the fleet's log and on its hash tag.
WARM_VALVE_KEY = "dipguard:{valve}:warm"
SELECT = ["RowKey", "CustomerId", "Tier", "IsVip", "PreferredLanguage", "Timestamp"]
PAGE_SIZE = 1000
_LEASE_SCRIPT = resources.files(__package__).joinpath("lease.lua").read_text(encoding="utf-8")
_PARTITION_NAMES = [f"b{n:02x}" for n in range(PARTITIONS)]
# What stops a warm for now (Redis or the table failing); the next one resumes.
_FAILURES: tuple[type[BaseException], ...] = (*REDIS_ERRORS, AzureError)


class Admission(Protocol):
    async def admit(self, timeout: float) -> bool: ...

    @property
    def closed_for(self) -> float: ...


def warm_valve(redis: RedisClient, settings: DipSettings) -> RedisValve:
    """The fleet valve, as the warm takes its share of it."""
    share = settings.warm_share
    return RedisValve(
        redis,
        settings.max_db_qps,
        1.0 + settings.valve_guard_ms / 1000,
        key=VALVE_KEY,
        share=Share(WARM_VALVE_KEY, limit=share, headroom=share),
        slices=settings.valve_pace_slices,
    )


@dataclass
class WarmReport:
    """What one warm did. ``completed``: every partition read and the marker written."""

    completed: bool = False
    generation: str = ""
    resumed: bool = False
    entities: int = 0
    pages: int = 0
    # Pages this run read itself; fewer than ``pages`` when it resumed a stopped warm.
    pages_this_run: int = 0
    seconds: float = 0.0
    backoffs: int = 0
    redis_used_memory: int | None = None
    reason: str | None = None
    started: float = field(default_factory=time.monotonic, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "event": "cache_warm",
            "completed": self.completed,
            "generation": self.generation,
            "resumed": self.resumed,
            "entities": self.entities,
            "pages": self.pages,
            "pagesThisRun": self.pages_this_run,
            "seconds": self.seconds,
            "backoffs": self.backoffs,
            "redisUsedMemoryBytes": self.redis_used_memory,
            "reason": self.reason,
        }

    def log_line(self) -> str:
        return "cache_warm " + json.dumps(self.as_json(), separators=(",", ":"))


class _Stop(Exception):
    """The warm cannot go on now; the cursor keeps its place for the next run."""


class Warm:
    """One warm of the read model, from a fresh start or from a saved cursor."""

    def __init__(
        self,
        redis: RedisClient,
        table: TableClient,
        valve: Admission,
        *,
        max_age_s: float,
        stale_ttl_s: float,
        share: int,
        concurrency: int = 4,
        lease_s: float = 60.0,
        page_size: int = PAGE_SIZE,
        redis_timeout_s: float = 2.0,
        page_timeout_s: float = 30.0,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.redis = redis
        self.table = table
        self.valve = valve
        self.max_age_s = max_age_s
        self.stale_ttl_s = stale_ttl_s
        self.share = share
        self.concurrency = concurrency
        self.page_size = page_size
        self.lease_ms = round(lease_s * 1000)
        self.redis_timeout_s = redis_timeout_s
        self.page_timeout_s = page_timeout_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._clock = clock
        self._sleep = sleep
        self._progress = progress
        self._writer = EntryWriter(redis)
        self._lease = redis.register_script(_LEASE_SCRIPT)
        self._lease_renewed = -float("inf")

    # --- the lease ------------------------------------------------------------------------

    async def _take_lease(self) -> str | None:
        """None when held now, else who holds it."""
        reply = await self._lease(keys=[LEASE_KEY], args=[self.owner, self.lease_ms, "take"])
        if int(reply[0]) == 1:
            self._lease_renewed = time.monotonic()
            return None
        holder = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        return holder

    async def _renew_lease(self) -> None:
        # Renewed at a third of its length, so a healthy warm never loses it.
        if time.monotonic() - self._lease_renewed < self.lease_ms / 3000:
            return
        holder = await self._take_lease()
        if holder is not None:
            raise _Stop(f"lost the lease to {holder}")

    async def _release_lease(self) -> None:
        await self._lease(keys=[LEASE_KEY], args=[self.owner, 0, "release"])

    # --- the run --------------------------------------------------------------------------

    async def run(self, *, budget_s: float | None = None) -> WarmReport:
        """Warm until done, or until ``budget_s`` is spent (the cursor keeps the place).

        Never raises: a warm that cannot go on says why in its report and log line.
        """
        report = WarmReport()
        budget = asyncio.timeout(budget_s)
        try:
            async with budget:
                await self._run(report)
        except TimeoutError as exc:
            # The budget's own expiry, or a page or Redis call that timed out on its own.
            if budget.expired() and budget_s is not None:
                report.reason = f"stopped after {budget_s:g} s; the next warm resumes"
            else:
                report.reason = f"TimeoutError: {exc}; the next warm resumes"
        except _Stop as exc:
            report.reason = str(exc)
        except _FAILURES as exc:
            report.reason = f"{type(exc).__name__}: {exc}; the next warm resumes"
        finally:
            report.seconds = round(time.monotonic() - report.started, 1)
            # Best effort: the report says what happened whether or not Redis answers now.
            with contextlib.suppress(*REDIS_ERRORS):
                await asyncio.wait_for(self._release_lease(), self.redis_timeout_s)
            with contextlib.suppress(*REDIS_ERRORS):
                info = await asyncio.wait_for(self.redis.info("memory"), self.redis_timeout_s)
                report.redis_used_memory = used_memory(info)
        level = logging.INFO if report.completed else logging.WARNING
        LOG.log(level, "%s", report.log_line())
        return report

    async def _run(self, report: WarmReport) -> None:
        if self.share < 1:
            raise _Stop("WARM_DB_QPS is 0: MAX_DB_QPS is too small to share with a warm")
        # The marker dates the read model for every instance, and python -m tools.warm may run
        # on a machine whose clock is off.
        self._clock = await server_clock(self.redis, self._clock)
        holder = await self._take_lease()
        if holder is not None:
            raise _Stop(f"another warm holds the lease ({holder})")
        cursor = await self._cursor()
        if cursor and not {"generation", "bloomBits"} <= set(cursor):
            # Pages' places without the warm they belong to: start afresh.
            await self.redis.delete(CURSOR_KEY)
            cursor = {}
        if cursor:
            report.resumed = True
            generation = cursor["generation"]
            bits = int(cursor["bloomBits"])
        else:
            previous = await read_marker(self.redis)
            generation = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + uuid.uuid4().hex[:6]
            bits = bloom_bits_for(previous.entities if previous else 0)
            await self.redis.hset(
                CURSOR_KEY,
                mapping={
                    "generation": generation,
                    "bloomBits": bits,
                    "startedAt": self._clock(),
                    "entities": 0,
                    "pages": 0,
                },
            )
            cursor = {"generation": generation}
        report.generation = generation
        bloom = Bloom(generation, bits)
        todo = [p for p in _PARTITION_NAMES if cursor.get(f"p:{p}") != "done"]
        done = PARTITIONS - len(todo)
        if self._progress:
            self._progress(done, PARTITIONS)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for partition in todo:
            queue.put_nowait(partition)

        async def worker() -> None:
            nonlocal done
            while not queue.empty():
                partition = queue.get_nowait()
                await self._partition(partition, cursor.get(f"p:{partition}"), bloom, report)
                done += 1
                if self._progress:
                    self._progress(done, PARTITIONS)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency, len(todo)) or 1):
                    group.create_task(worker())
        except BaseExceptionGroup as group_error:
            # The first task's failure is the warm's; the group stopped the others.
            raise group_error.exceptions[0] from None
        await self._complete(report, bloom)

    async def _cursor(self) -> dict[str, str]:
        raw = await self.redis.hgetall(CURSOR_KEY)
        return {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in raw.items()
        }

    async def _admit(self, report: WarmReport) -> None:
        """One page's admission from the fleet valve, waiting while dips need the budget."""
        while not await self.valve.admit(self.redis_timeout_s):
            # A spike can keep the warm waiting here longer than its lease lasts.
            await self._renew_lease()
            report.backoffs += 1
            # Until the valve says a slot can free, with jitter so the warm's tasks do not
            # ask again in step; at least 50 ms, so a busy second costs few round trips.
            await self._sleep(max(self.valve.closed_for, 0.05) * random.uniform(1.0, 1.5))

    async def _partition(
        self, partition: str, saved: str | None, bloom: Bloom, report: WarmReport
    ) -> None:
        token: Any = json.loads(saved) if saved else None
        while True:
            await self._renew_lease()
            await self._admit(report)
            # The pager carries the next continuation point once a page is read.
            pages: Any = self.table.query_entities(
                "PartitionKey eq @pk",
                parameters={"pk": partition},
                select=SELECT,
                results_per_page=self.page_size,
                connection_timeout=self.page_timeout_s,
                read_timeout=self.page_timeout_s,
            ).by_page(continuation_token=token)
            entries: list[Entry] = []
            keys: list[LookupKey] = []
            now = self._clock()
            async with asyncio.timeout(self.page_timeout_s):
                page = await anext(pages, None)
                if page is not None:
                    async for entity in page:
                        # Rows that are not keyed hashes (written before keys were
                        # hashed) are never copied to Redis: their keys are numbers.
                        key = LookupKey.from_stored(str(entity["RowKey"]))
                        if key is None or "CustomerId" not in entity:
                            continue
                        record = record_of(entity)
                        entries.append(
                            Entry(
                                key.cache_key,
                                record,
                                record.as_of,
                                now + self.max_age_s,
                                self.max_age_s + self.stale_ttl_s,
                            )
                        )
                        keys.append(key)
            token = pages.continuation_token
            if entries:
                await self._writer.put_many(entries)
            pipe = self.redis.pipeline(transaction=False)
            bloom.queue_adds(pipe, keys)
            # The place is saved only once the page's answers and bits are written, so a
            # warm killed in between reads that page again, never skips it.
            pipe.hset(CURSOR_KEY, f"p:{partition}", json.dumps(token) if token else "done")
            pipe.hincrby(CURSOR_KEY, "entities", len(entries))
            pipe.hincrby(CURSOR_KEY, "pages", 1)
            await pipe.execute()
            report.entities += len(entries)
            report.pages += 1
            report.pages_this_run += 1
            if not token:
                return

    async def _complete(self, report: WarmReport, bloom: Bloom) -> None:
        # Only the lease's holder completes: a warm that lost it must not end another's.
        holder = await self._take_lease()
        if holder is not None:
            raise _Stop(f"lost the lease to {holder}")
        cursor = await self._cursor()
        previous = await read_marker(self.redis)
        # The model is as old as the warm's first page: a warm resumed over days must not
        # make its earliest pages look fresh.
        started = float(cursor.get("startedAt", self._clock()))
        marker = Marker(bloom.generation, started, int(cursor.get("entities", 0)), bloom.bits)
        # A partition that holds no key has no filter yet, and a missing filter proves
        # nothing: an empty one (APPEND of nothing creates it, and never changes one that
        # exists) lets the read model answer its strangers "no customer" too.
        pipe = self.redis.pipeline(transaction=False)
        for partition in _PARTITION_NAMES:
            pipe.append(bloom_key(bloom.generation, partition), b"")
        await pipe.execute()
        await self.redis.set(MARKER_KEY, marker.to_json())
        await self.redis.delete(CURSOR_KEY)
        report.completed = True
        report.entities = marker.entities
        report.pages = int(cursor.get("pages", report.pages))
        if previous is not None and previous.generation != bloom.generation:
            # The old filter is no longer asked; one key per partition, so no cross-slot
            # command on clustered Redis.
            pipe = self.redis.pipeline(transaction=False)
            for partition in _PARTITION_NAMES:
                pipe.delete(bloom_key(previous.generation, partition))
            await pipe.execute()
