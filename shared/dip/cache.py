"""Cached answers in Redis: fresh, stale and negative entries, and single flight.

One Redis key per lookup key (the keyed hash of a customer id or an E.164 number, see
keys.py), never per conversation: every call is a new conversation, so a per-conversation
cache almost never hits.

Each entry is one JSON value holding its own ``freshUntil``, with a Redis TTL of the
stale lifetime. So a single GET tells fresh from stale, and a fresh hit is one round trip.
Freshness is judged by the instance clock: skew of a few seconds only shifts when a
60-second entry is re-read, unlike the valve, where skew would break the budget.

Dips, the bulk warm and the loader all write entries, each stamped with ``asOf`` (when the
table last said so), through ``put_entry.lua``: an older answer never replaces a newer one,
whichever write lands last.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from redis.exceptions import NoScriptError

from shared.clients import RedisClient
from shared.dip.batch import GetBatch
from shared.dip.breaker import Breaker, RedisUnavailable
from shared.dip.customers import CustomerRecord
from shared.errors import DependencyUnavailable

__all__ = [
    "ANSWER_PREFIX",
    "Cache",
    "CacheUnavailable",
    "Cached",
    "Entry",
    "EntryWriter",
    "RedisCache",
    "SingleFlight",
    "encode_entry",
]

ANSWER_PREFIX = "dipguard:answer:"
_VERSION = 1
_PUT_SCRIPT = resources.files(__package__).joinpath("put_entry.lua").read_text(encoding="utf-8")


class CacheUnavailable(DependencyUnavailable):
    """Redis did not answer (or the breaker is open); the dip carries on without it."""


@dataclass(frozen=True)
class Cached:
    """A cached lookup: ``record`` is None for a caller known to be unknown."""

    record: CustomerRecord | None
    fresh: bool


class Cache(Protocol):
    async def get(self, key: str, timeout: float) -> Cached | None: ...

    async def put(
        self,
        key: str,
        record: CustomerRecord | None,
        timeout: float,
        *,
        as_of: float,
        fresh_until: float | None = None,
    ) -> None:
        """Cache an answer the table gave at ``as_of``, unless a newer one is there.
        ``fresh_until`` (instance clock) overrides the usual freshness."""
        ...


def encode_entry(record: CustomerRecord | None, *, fresh_until: float, as_of: float) -> bytes:
    data: dict[str, object] = {
        "v": _VERSION,
        "freshUntil": round(fresh_until, 3),
        "asOf": round(as_of, 6),
    }
    if record is not None:
        data.update(record.to_json())
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Entry:
    """One answer to write: ``key`` is the lookup key's cache key (``p|<hash>``)."""

    key: str
    record: CustomerRecord | None
    as_of: float
    fresh_until: float
    ttl_s: float


class EntryWriter:
    """Put-if-newer writes of answers, alone or many to a pipeline (the warm, the loader)."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self._script = redis.register_script(_PUT_SCRIPT)
        self._sha = hashlib.sha1(_PUT_SCRIPT.encode()).hexdigest()

    @staticmethod
    def _args(entry: Entry) -> tuple[bytes, float, int]:
        value = encode_entry(entry.record, fresh_until=entry.fresh_until, as_of=entry.as_of)
        return value, round(entry.as_of, 6), max(1, round(entry.ttl_s * 1000))

    async def put(self, entry: Entry) -> bool:
        """True when written, False when a newer answer was kept."""
        reply = await self._script(keys=[ANSWER_PREFIX + entry.key], args=self._args(entry))
        return int(reply) == 1

    async def put_many(self, entries: Sequence[Entry]) -> int:
        """Write in one pipeline (no transaction); the number written.

        EVALSHA in a pipeline cannot load the script on a NOSCRIPT reply the way a single
        call does, so the first NOSCRIPT loads it (on every shard, clustered) and the
        pipeline runs again: a write that already went through writes the same again.
        """
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for entry in entries:
                pipe.evalsha(self._sha, 1, ANSWER_PREFIX + entry.key, *self._args(entry))
            replies = await pipe.execute(raise_on_error=False)
            errors = [r for r in replies if isinstance(r, Exception)]
            if errors and attempt == 0 and all(isinstance(e, NoScriptError) for e in errors):
                await self.redis.script_load(_PUT_SCRIPT)
                continue
            if errors:
                raise errors[0]
            return sum(int(r) for r in replies)
        raise AssertionError("unreachable: the second attempt returns or raises")


def _decode(raw: bytes | str, now: float) -> Cached | None:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != _VERSION:
            return None
        record = CustomerRecord.from_json(data) if "customerId" in data else None
        return Cached(record, now < float(data["freshUntil"]))
    except (ValueError, KeyError, TypeError):
        # An entry we cannot read is a miss, never an error for the caller.
        return None


class RedisCache:
    """Fresh + stale + negative entries over redis.asyncio, guarded by the Redis breaker."""

    def __init__(
        self,
        redis: RedisClient,
        breaker: Breaker,
        *,
        fresh_ttl_s: int,
        stale_ttl_s: int,
        negative_ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.writer = EntryWriter(redis)
        self.reads = GetBatch(redis)
        self.breaker = breaker
        self.fresh_ttl_s = fresh_ttl_s
        self.stale_ttl_s = stale_ttl_s
        # An unknown caller is remembered for NEGATIVE_TTL_SECONDS and no longer, whatever
        # the read model's age: a customer added mid-spike is found within a minute, and
        # Redis keeps no trace of a stranger's call past it (docs/privacy.md).
        self.negative_ttl_s = negative_ttl_s
        self._clock = clock

    async def _call[T](self, fn: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        try:
            return await self.breaker.call(fn, timeout)
        except RedisUnavailable as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def get(self, key: str, timeout: float) -> Cached | None:
        # The batch's MGET times out by itself, failing every waiter, and the breaker counts
        # that as one failure (batch.py); the dip's own deadline bounds this caller's wait.
        raw = await self._call(lambda: self.reads.get(ANSWER_PREFIX + key, timeout), None)
        return None if raw is None else _decode(raw, self._clock())

    async def put(
        self,
        key: str,
        record: CustomerRecord | None,
        timeout: float,
        *,
        as_of: float,
        fresh_until: float | None = None,
    ) -> None:
        now = self._clock()
        if record is None:
            ttl = self.negative_ttl_s
            entry = Entry(key, None, as_of, now + ttl, ttl)
        else:
            fresh, hard = self.fresh_ttl_s, self.stale_ttl_s
            until = now + fresh if fresh_until is None else max(fresh_until, now + fresh)
            entry = Entry(key, record, as_of, until, max(hard, until - now + hard - fresh))
        await self._call(lambda: self.writer.put(entry), timeout)


class SingleFlight[T]:
    """Concurrent callers for one key share one execution (Go's singleflight, for asyncio).

    Followers wait on the leader's task without cancelling it, so one caller running out
    of time does not waste the read the others are waiting for.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    async def do(self, key: str, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(fn())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finish(key, done))
        async with asyncio.timeout(timeout):
            return await asyncio.shield(task)

    def _finish(self, key: str, task: asyncio.Task[T]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            # Mark the outcome as seen: if every waiter timed out, nobody else will.
            task.exception()
