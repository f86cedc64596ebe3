"""Cached answers in Redis: fresh, stale and negative entries, and single flight.

One Redis key per lookup key (a customer id or an E.164 number), never per conversation:
every call is a new conversation, so a per-conversation cache almost never hits.

Each entry is one JSON value holding its own ``freshUntil``, with a Redis TTL of the
stale lifetime. So a single GET tells fresh from stale, and a fresh hit is one round trip.
Freshness is judged by the instance clock: skew of a few seconds only shifts when a
60-second entry is re-read, unlike the valve, where skew would break the budget.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from shared.clients import RedisClient
from shared.dip.breaker import Breaker, RedisUnavailable
from shared.dip.customers import CustomerRecord

__all__ = ["Cache", "CacheUnavailable", "Cached", "RedisCache", "SingleFlight"]

_PREFIX = "dipguard:answer:"
_VERSION = 1


class CacheUnavailable(Exception):
    """Redis did not answer (or the breaker is open); the dip carries on without it."""


@dataclass(frozen=True)
class Cached:
    """A cached lookup: ``record`` is None for a caller known to be unknown."""

    record: CustomerRecord | None
    fresh: bool


class Cache(Protocol):
    async def get(self, key: str, timeout: float) -> Cached | None: ...

    async def put(self, key: str, record: CustomerRecord | None, timeout: float) -> None: ...


def _encode(record: CustomerRecord | None, fresh_until: float) -> bytes:
    data: dict[str, object] = {"v": _VERSION, "freshUntil": round(fresh_until, 3)}
    if record is not None:
        data.update(record.to_json())
    return json.dumps(data, separators=(",", ":")).encode()


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

    def __init__(self, redis: RedisClient, breaker: Breaker, *, fresh_ttl_s: int,
                 stale_ttl_s: int, negative_ttl_s: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.breaker = breaker
        self.fresh_ttl_s = fresh_ttl_s
        self.stale_ttl_s = stale_ttl_s
        self.negative_ttl_s = negative_ttl_s
        # An unknown caller is remembered far less long than a known one: a customer
        # added to the CRM mid-spike should be found within minutes, not a day.
        self.negative_stale_ttl_s = min(stale_ttl_s, max(negative_ttl_s * 10, 600))
        self._clock = clock

    async def _call[T](self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        try:
            return await self.breaker.call(fn, timeout)
        except RedisUnavailable as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def get(self, key: str, timeout: float) -> Cached | None:
        raw = await self._call(lambda: self.redis.get(_PREFIX + key), timeout)
        return None if raw is None else _decode(raw, self._clock())

    async def put(self, key: str, record: CustomerRecord | None, timeout: float) -> None:
        if record is None:
            fresh, hard = self.negative_ttl_s, self.negative_stale_ttl_s
        else:
            fresh, hard = self.fresh_ttl_s, self.stale_ttl_s
        value = _encode(record, self._clock() + fresh)
        await self._call(lambda: self.redis.set(_PREFIX + key, value, ex=hard), timeout)


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
