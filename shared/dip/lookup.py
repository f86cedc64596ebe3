"""One dip, from request to answer, inside the deadline whatever the dependencies do.

    fresh cache hit (a warmed answer, or one a dip cached) ─────────────▶ "cache"
    miss, and a fresh complete warm proves nobody has the key ──────────▶ "cache", not found
    miss ─▶ valve.admit() ─▶ in-flight slot? ─▶ Table point read ──▶ "database"
               │ shed             │ not soon       │ timeout / error
               └──────────────────┴────────────────┴──▶ stale copy ─▶ "stale"
                                                         └─ none ───▶ "degraded"

Every wait takes its timeout from what is left of the deadline, and the whole dip is
bounded once more from outside, so the answer is never later than HANDLER_DEADLINE_MS.
A fast degraded answer beats a slow correct one: a Genesys org runs about 30 data actions
at once, so its dip throughput is roughly 30 / latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from shared.dip.breaker import RedisUnavailable
from shared.dip.cache import Cache, Cached, CacheUnavailable, SingleFlight
from shared.dip.contract import Answer, DipRequest, Source
from shared.dip.customers import CustomerRecord, CustomerStore, DatabaseUnavailable
from shared.dip.keys import KeyKind, LookupKey, LookupKeys
from shared.dip.metrics import DipMetrics, db_outcome
from shared.dip.phone import normalize_number
from shared.dip.readmodel import ReadModel
from shared.dip.valve import Valve

__all__ = [
    "CallerDefaults",
    "Clocks",
    "DipLog",
    "DipService",
    "DipTimeouts",
    "InflightCap",
    "Outcome",
    "Shed",
    "caller_of",
]


log = logging.getLogger("dipguard.dip")

# Kept back from the deadline for writing the answer after the last dependency gives up.
_REPLY_RESERVE_S = 0.05


@dataclass(frozen=True)
class DipTimeouts:
    """How long a dip may take (``deadline_ms``: HANDLER_DEADLINE_MS) and the longest a
    single Table read (``db_timeout_ms``) or Redis call (``redis_timeout_ms``) may wait,
    each further capped by what is left of the deadline."""

    deadline_ms: int
    db_timeout_ms: int
    redis_timeout_ms: int


@dataclass(frozen=True)
class InflightCap:
    """Table reads one worker process may have in flight, and how long a read the valve
    admitted may wait for a slot before it is shed (see DipService._slot)."""

    reads: int
    slot_wait_ms: int = 0


@dataclass(frozen=True)
class CallerDefaults:
    """How a dip reads a caller it is not told everything about: national-format numbers
    are read in ``region``, and a caller nobody can name is answered ``degraded_tier``."""

    region: str
    degraded_tier: str


@dataclass(frozen=True)
class Clocks:
    """The monotonic clock that times deadlines, and the wall clock that stamps answers."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


class Shed(Exception):
    """The read was not attempted: no in-flight slot, or the budget is spent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DipLog:
    """The one structured line per dip. It names the key's kind, never the caller's number."""

    key_kind: str
    source: Source
    latency_ms: float
    shed: bool
    reason: str | None

    def line(self) -> str:
        return "dip " + json.dumps(
            {
                "event": "dip",
                "keyKind": self.key_kind,
                "source": self.source,
                "latencyMs": round(self.latency_ms, 2),
                "shed": self.shed,
                "reason": self.reason,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class Outcome:
    answer: Answer
    log: DipLog


@dataclass
class _Dip:
    """What one dip has learnt so far, so a deadline cut can still answer from it."""

    key: LookupKey
    started: float
    stale: Cached | None = None
    shed: bool = False
    reason: str | None = None


def caller_of(request: DipRequest, region: str) -> tuple[KeyKind, str] | None:
    """What a dip looks the caller up by: a customerId the caller gave wins over the ANI
    (the answer's ``matchedBy`` says which was used); a withheld or unparseable ANI names
    nobody. The value lives only in this dip: the stores see its keyed hash."""
    if request.customer_id is not None:
        return "customerId", request.customer_id
    number = normalize_number(request.ani, region)
    return None if number is None else ("ani", number)


class DipService:
    def __init__(
        self,
        *,
        cache: Cache,
        valve: Valve,
        store: CustomerStore,
        keys: LookupKeys,
        timeouts: DipTimeouts,
        defaults: CallerDefaults,
        inflight: InflightCap | None = None,
        read_model: ReadModel | None = None,
        metrics: DipMetrics | None = None,
        log_level: int | None = logging.INFO,
        clocks: Clocks = Clocks(),
    ) -> None:
        """``inflight`` None: no cap on reads in flight (VALVE_MODE off)."""
        self.cache = cache
        self.valve = valve
        self.store = store
        self.keys = keys
        self.read_model = read_model
        # What the dependencies may spend: the deadline less the time to write the answer.
        self.budget_s = timeouts.deadline_ms / 1000 - _REPLY_RESERVE_S
        self.db_timeout_s = timeouts.db_timeout_ms / 1000
        self.redis_timeout_s = timeouts.redis_timeout_ms / 1000
        self.slot_wait_s = inflight.slot_wait_ms / 1000 if inflight is not None else 0.0
        self._slots = asyncio.Semaphore(inflight.reads) if inflight is not None else None
        self.degraded_tier = defaults.degraded_tier
        self.region = defaults.region
        self._clock = clocks.monotonic
        self._wall_clock = clocks.wall
        self._flight: SingleFlight[CustomerRecord | None] = SingleFlight()
        self._inflight_reads = 0
        self._background: set[asyncio.Task[None]] = set()
        # The per-dip log line's level (DIP_LOG_LEVEL), None for none: Application Insights
        # samples log lines, so counts and latencies come from the metrics instead.
        self.log_level = log_level
        self.metrics = metrics if metrics is not None else DipMetrics()
        self.metrics.watch_inflight(lambda: self._inflight_reads)
        self.metrics.watch_lookup_key_secrets(lambda: self.keys.secret_count)

    @property
    def inflight_reads(self) -> int:
        return self._inflight_reads

    async def answer(self, request: DipRequest) -> Outcome:
        started = self._clock()
        caller = caller_of(request, self.region)
        if caller is None:
            return self._finish("none", Answer.unknown(self.degraded_tier, "none"), started)
        # During a rotation the previous secret's key is tried when the current one names
        # nobody: until the table is reloaded, the customer is only under the old key.
        candidates = self.keys.candidates(*caller)
        dip = _Dip(candidates[0], started)
        first: Answer | None = None
        try:
            # One deadline over the whole dip: when the budget is spent, whichever step is
            # running (Redis, the valve, the table) is cancelled and the fallback answers.
            async with asyncio.timeout(self.budget_s):
                answer = await self._resolve(dip)
                for key in candidates[1:]:
                    if answer.customer_found:
                        break
                    first, dip = answer, _Dip(key, started)
                    answer = await self._resolve(dip)
        except TimeoutError:
            dip.reason = dip.reason or "deadline"
            answer = self._fallback(dip)
        except Exception:
            # A bug here must still not send the caller down Genesys' Failure path.
            log.exception("dip failed unexpectedly; answering the fallback")
            dip.reason = "internal_error"
            answer = self._fallback(dip)
        if first is not None and not answer.customer_found and answer.source != "degraded":
            # Neither key names a customer: the current key's answer stands, unless the
            # previous key could not be looked up, when nobody can say "no customer".
            answer = first
        return self._finish(caller[0], answer, started, dip)

    def _remaining(self, dip: _Dip) -> float:
        return dip.started + self.budget_s - self._clock()

    def _step_timeout(self, dip: _Dip, cap: float) -> float:
        """The wait one step of a read may take. With the deadline spent, the step is shed:
        asking the valve would spend a slot (or count a Redis failure), and reading the
        table would start a read nobody waits for."""
        timeout = min(cap, self._remaining(dip))
        if timeout <= 0:
            raise Shed("deadline")
        return timeout

    async def _resolve(self, dip: _Dip) -> Answer:
        try:
            cached = await self.cache.get(
                dip.key.cache_key, min(self.redis_timeout_s, self._remaining(dip))
            )
        except CacheUnavailable:
            cached = None
            redis_answered = False
        else:
            redis_answered = True
        if cached is not None and cached.fresh:
            return self._from_record(cached.record, "cache", dip.key)
        if cached is None and redis_answered and await self._proved_absent(dip):
            dip.reason = "absent_from_read_model"
            return Answer.unknown(self.degraded_tier, "cache")
        dip.stale = cached
        try:
            record = await self._flight.do(
                dip.key.cache_key, lambda: self._read(dip), self._remaining(dip)
            )
        except Shed as exc:
            dip.shed, dip.reason = True, exc.reason
            return self._fallback(dip)
        except DatabaseUnavailable as exc:
            dip.reason = f"database: {exc}"
            return self._fallback(dip)
        return self._from_record(record, "database", dip.key)

    async def _proved_absent(self, dip: _Dip) -> bool:
        """Does a fresh, complete warm prove nobody has this key? (No when Redis cannot say.)"""
        if self.read_model is None:
            return False
        try:
            return await self.read_model.absent(
                dip.key, min(self.redis_timeout_s, self._remaining(dip))
            )
        except RedisUnavailable:
            return False

    async def _read(self, dip: _Dip) -> CustomerRecord | None:
        """The single-flight leader's read: budget, slot, point read, then cache it."""
        # A record the table does not hold is stamped with when the read began: a loader
        # that adds it afterwards writes a newer answer, which this one will not replace.
        asked_at = self._wall_clock()
        admitted = await self.valve.admit(self._step_timeout(dip, self.redis_timeout_s))
        if not admitted:
            raise Shed("budget")
        await self._slot(dip)
        self._inflight_reads += 1
        try:
            record = await self._point_read(dip.key, self._step_timeout(dip, self.db_timeout_s))
        finally:
            self._inflight_reads -= 1
            if self._slots is not None:
                self._slots.release()
        # The caller is answered "database" whether or not Redis takes the copy.
        self._spawn(self._store_copy(dip.key, record, asked_at))
        return record

    async def _point_read(self, key: LookupKey, timeout: float) -> CustomerRecord | None:
        """One Table point read, counted and timed by its outcome."""
        started = self._clock()
        outcome = "error"
        try:
            record = await self.store.get(key, timeout)
        except (DatabaseUnavailable, TimeoutError) as exc:
            outcome = db_outcome(exc)
            raise
        else:
            outcome = "ok" if record is not None else "not_found"
            return record
        finally:
            self.metrics.db_read(outcome, (self._clock() - started) * 1000)

    async def _slot(self, dip: _Dip) -> None:
        """An in-flight slot for an admitted read, or Shed("inflight").

        Only reads the valve admitted wait, so a spike's excess is shed by the valve at once
        and never queues here. The wait is short (InflightCap.slot_wait_ms: the Runtime
        passes half of VALVE_GUARD_MS): the valve's window is widened by the guard so that
        a read admitted at one moment and sent a little later still reaches the database
        inside the budget, and a slot that takes longer means the database is slow, when
        queueing only holds requests open.
        """
        if self._slots is None:
            return
        wait = min(self.slot_wait_s, self._remaining(dip) - self.redis_timeout_s)
        if wait <= 0 and self._slots.locked():
            raise Shed("inflight")
        try:
            async with asyncio.timeout(max(wait, 0.0)):
                await self._slots.acquire()
        except TimeoutError:
            raise Shed("inflight") from None

    async def _store_copy(
        self, key: LookupKey, record: CustomerRecord | None, asked_at: float
    ) -> None:
        # While a fresh warm stands, a copy stays fresh as long as the warm's own answers.
        fresh_until = self.read_model.fresh_until() if self.read_model is not None else None
        try:
            await self.cache.put(
                key.cache_key,
                record,
                self.redis_timeout_s,
                as_of=record.as_of if record is not None else asked_at,
                fresh_until=fresh_until,
            )
        except CacheUnavailable:
            pass

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background cache writes (tests, shutdown)."""
        # Waits on what is unfinished rather than on the set itself: a finished task leaves
        # the set through a callback the loop runs later, so the set can lag behind.
        while pending := [task for task in self._background if not task.done()]:
            await asyncio.wait(pending)

    def _fallback(self, dip: _Dip) -> Answer:
        if dip.stale is not None:
            return self._from_record(dip.stale.record, "stale", dip.key)
        return Answer.unknown(self.degraded_tier, "degraded")

    def _from_record(self, record: CustomerRecord | None, source: Source, key: LookupKey) -> Answer:
        if record is None:
            return Answer.unknown(self.degraded_tier, source)
        return Answer(
            True,
            record.customer_id,
            record.tier or self.degraded_tier,
            record.is_vip,
            record.preferred_language,
            source,
            key.kind,
        )

    def _finish(
        self, key_kind: str, answer: Answer, started: float, dip: _Dip | None = None
    ) -> Outcome:
        latency_ms = (self._clock() - started) * 1000
        reason = dip.reason if dip else None
        entry = DipLog(key_kind, answer.source, latency_ms, dip.shed if dip else False, reason)
        self.metrics.dip(answer.source, key_kind, latency_ms, reason)
        level = self.log_level
        if level is not None and log.isEnabledFor(level):  # no JSON work when nobody reads it
            log.log(level, entry.line())
        return Outcome(answer, entry)
