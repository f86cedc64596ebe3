"""The shed valve: whether the database budget allows one more Table read.

Three layers, each answering a different failure:

* ``RedisValve`` holds the fleet-wide budget (MAX_DB_QPS in any 1-second sliding window)
  in one Lua call per decision, timed by the Redis server.
* ``LocalValve`` is the same sliding log in process memory. It takes over while Redis is
  unreachable, with each worker process's share of the budget: neither failing open (the
  database takes the whole spike) nor closed (every caller gets a default).
* ``Breaker`` stops a sick Redis from costing every dip a timeout.

The in-flight cap of each worker process lives in ``lookup``, beside the read it guards: rate alone
does not protect a database whose latency grows (Little's law).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Protocol, TypeVar

from shared.clients import REDIS_ERRORS, RedisClient

__all__ = [
    "VALVE_KEY",
    "Breaker",
    "FleetValve",
    "LocalValve",
    "OpenValve",
    "RedisUnavailable",
    "RedisValve",
    "Valve",
]

# One key for the whole fleet; the {hash tag} pins it to one slot on clustered Redis.
VALVE_KEY = "dipguard:{valve}:reads"

T = TypeVar("T")

_SCRIPT = resources.files(__package__).joinpath("valve.lua").read_text(encoding="utf-8")


class RedisUnavailable(Exception):
    """Redis did not answer in time, failed, or the breaker is open."""


class Valve(Protocol):
    async def admit(self, timeout: float) -> bool:
        """True if one more database read is within budget; must answer within ``timeout``."""
        ...


class OpenValve:
    """Admits everything: the "no valve" baseline for benchmarks."""

    async def admit(self, timeout: float) -> bool:
        return True


class LocalValve:
    """An exact sliding log of admissions in this process (monotonic clock)."""

    def __init__(self, limit: int, window_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._admitted: deque[float] = deque()

    def try_admit(self) -> bool:
        now = self._clock()
        while self._admitted and now - self._admitted[0] >= self.window_s:
            self._admitted.popleft()
        if len(self._admitted) >= self.limit:
            return False
        self._admitted.append(now)
        return True

    async def admit(self, timeout: float) -> bool:
        return self.try_admit()


class RedisValve:
    """The fleet-wide budget: at most one EVALSHA per decision against ``valve.lua``."""

    def __init__(self, redis: RedisClient, limit: int, window_s: float = 1.0,
                 key: str = VALVE_KEY, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_us = round(window_s * 1_000_000)
        self.key = key
        # redis-py sends EVALSHA and loads the script only after a NOSCRIPT reply.
        self._script = redis.register_script(_SCRIPT)
        self._clock = clock
        self._closed_until = 0.0

    async def admit(self, timeout: float) -> bool:
        # A shed reply says how long until the oldest counted admission leaves the window.
        # No instance can be admitted before then (new admissions only add to the log),
        # so asking again sooner would cost a round trip for a certain "no".
        if self._clock() < self._closed_until:
            return False
        async with asyncio.timeout(timeout):
            reply = await self._script(keys=[self.key], args=[self.limit, self.window_us])
        if int(reply[0]) == 1:
            return True
        # Timed from when the reply arrived, so the local estimate errs towards shedding
        # a round trip longer, never towards admitting early.
        self._closed_until = self._clock() + int(reply[1]) / 1_000_000
        return False


class Breaker:
    """Consecutive-failure circuit breaker with one trial call after the reset time.

    Written here rather than taken from pybreaker: pybreaker's async support is
    Tornado-only, and the asyncio forks are unmaintained. This is the whole state machine.
    """

    def __init__(self, failures: int, reset_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures_to_open = failures
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """May this call try Redis? Closed: yes. Open: only one trial after the reset time."""
        if self._opened_at is None:
            return True
        if self._trial_in_flight or self._clock() - self._opened_at < self.reset_s:
            return False
        self._trial_in_flight = True
        return True

    async def call(self, fn: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Run one Redis call under the breaker: RedisUnavailable if it is open or the call
        fails or times out. A cancelled call (the dip's deadline ran out while Redis was
        silent) counts as a failure too, so a trial call never stays "in flight"."""
        if not self.allow():
            raise RedisUnavailable("redis breaker is open")
        try:
            async with asyncio.timeout(timeout):
                result = await fn()
        except REDIS_ERRORS as exc:
            self.failure()
            raise RedisUnavailable(type(exc).__name__) from exc
        except asyncio.CancelledError:
            self.failure()
            raise
        self.success()
        return result

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def failure(self) -> None:
        if self._opened_at is not None:
            if self._trial_in_flight:
                # The trial failed: stay open for another reset period.
                self._trial_in_flight = False
                self._opened_at = self._clock()
            # Otherwise a call made before the breaker opened has only now timed out. It says
            # nothing new, and restarting the reset period would delay recovery.
            return
        self._failures += 1
        if self._failures >= self.failures_to_open:
            self._opened_at = self._clock()


class FleetValve:
    """The fleet-wide valve while Redis answers, the local budget while it does not."""

    def __init__(self, fleet: Valve, local: LocalValve, breaker: Breaker) -> None:
        self.fleet = fleet
        self.local = local
        self.breaker = breaker

    async def admit(self, timeout: float) -> bool:
        try:
            return await self.breaker.call(lambda: self.fleet.admit(timeout), timeout)
        except RedisUnavailable:
            return self.local.try_admit()
