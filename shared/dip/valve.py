"""The shed valve: whether the database budget allows one more Table read.

Three layers, each answering a different failure:

* ``RedisValve`` holds the fleet-wide budget (MAX_DB_QPS in any 1-second sliding window)
  in one Lua call per decision, timed by the Redis server.
* ``LocalValve`` is the same sliding log in process memory. It takes over while Redis is
  unreachable, with each worker process's share of the budget: neither failing open (the
  database takes the whole spike) nor closed (every caller gets a default).
* ``FleetValve`` puts the two together behind the Redis breaker (``breaker``), which stops a
  sick Redis from costing every dip a timeout.

The in-flight cap of each worker process lives in ``lookup``, beside the read it guards: rate alone
does not protect a database whose latency grows (Little's law).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

from shared.clients import RedisClient
from shared.dip.breaker import Breaker, RedisUnavailable
from shared.dip.metrics import DipMetrics

__all__ = [
    "VALVE_KEY",
    "FleetValve",
    "LocalValve",
    "OpenValve",
    "RedisValve",
    "Share",
    "Valve",
]

# One key for the whole fleet; the {hash tag} pins it to one slot on clustered Redis.
VALVE_KEY = "dipguard:{valve}:reads"

# The app's valves also admit at most 1/slices of the budget in any slice of the window
# (VALVE_PACE_SLICES, 10 by default). A sliding log alone admits its whole budget at once
# whenever it starts empty (a restarted or flushed Redis, the local log when the breaker
# opens): more reads than the in-flight slots can start, so most are shed. And since each
# admission frees its place exactly one window later, the burst recurs every window: the
# benchmark's Redis-kill drill read about half the budget for the rest of the spike.
# Paced, the log evens itself out within one window.


def _pace(limit: int, slices: int) -> int:
    """The most admissions in one slice: the budget spread evenly, rounded up."""
    return max(1, -(-limit // slices))


_SCRIPT = resources.files(__package__).joinpath("valve.lua").read_text(encoding="utf-8")


class Valve(Protocol):
    async def admit(self, timeout: float) -> bool:
        """True if one more database read is within budget; must answer within ``timeout``."""
        ...


class OpenValve:
    """Admits everything: the "no valve" baseline for benchmarks."""

    async def admit(self, timeout: float) -> bool:
        return True


class LocalValve:
    """An exact sliding log of admissions in this process (monotonic clock).

    With ``slices`` above 1, at most ``limit / slices`` (rounded up) in any slice of the
    window too, as ``RedisValve``.
    """

    def __init__(
        self,
        limit: int,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        slices: int = 1,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.pace = _pace(limit, slices)
        self.slice_s = window_s / slices
        self._clock = clock
        self._admitted: deque[float] = deque()

    def try_admit(self) -> bool:
        now = self._clock()
        while self._admitted and now - self._admitted[0] >= self.window_s:
            self._admitted.popleft()
        if len(self._admitted) >= self.limit:
            return False
        if len(self._admitted) >= self.pace and now - self._admitted[-self.pace] < self.slice_s:
            return False
        self._admitted.append(now)
        return True

    async def admit(self, timeout: float) -> bool:
        return self.try_admit()


@dataclass(frozen=True)
class Share:
    """A caller that takes only part of the budget, and only while dips leave it room.

    ``key`` logs its own admissions (same hash tag as the fleet's key), ``limit`` caps them
    per window, and ``headroom`` is what it leaves to everyone else: it is admitted only
    while the fleet's log holds fewer than ``budget - headroom`` admissions in the window.
    """

    key: str
    limit: int
    headroom: int


class RedisValve:
    """The fleet-wide budget: at most one EVALSHA per decision against ``valve.lua``."""

    def __init__(
        self,
        redis: RedisClient,
        limit: int,
        window_s: float = 1.0,
        key: str = VALVE_KEY,
        clock: Callable[[], float] = time.monotonic,
        share: Share | None = None,
        slices: int = 1,
    ) -> None:
        self.limit = limit
        self.window_us = round(window_s * 1_000_000)
        # At most ``pace`` admissions in any ``slice_us``; unpaced, the window and its budget.
        self.pace = _pace(limit, slices)
        self.slice_us = round(self.window_us / slices)
        self.key = key
        self.share = share
        # redis-py sends EVALSHA and loads the script only after a NOSCRIPT reply.
        self._script = redis.register_script(_SCRIPT)
        self._clock = clock
        self._closed_until = 0.0

    async def admit(self, timeout: float) -> bool:
        # A shed reply says how long until the counted admission that blocks leaves the
        # window. No caller can be admitted before then (new admissions only add to the
        # log), so asking again sooner would cost a round trip for a certain "no".
        if self._clock() < self._closed_until:
            return False
        keys, args = [self.key], [self.limit, self.window_us, self.pace, self.slice_us]
        if self.share is not None:
            keys.append(self.share.key)
            args += [self.limit - self.share.headroom, self.share.limit]
        async with asyncio.timeout(timeout):
            reply = await self._script(keys=keys, args=args)
        if int(reply[0]) == 1:
            return True
        # Timed from when the reply arrived, so the local estimate errs towards shedding
        # a round trip longer, never towards admitting early.
        self._closed_until = self._clock() + int(reply[1]) / 1_000_000
        return False

    @property
    def closed_for(self) -> float:
        """Seconds until asking again can be admitted (0 when it may be now)."""
        return max(0.0, self._closed_until - self._clock())


class FleetValve:
    """The fleet-wide valve while Redis answers, the local budget while it does not.

    Each decision is counted (dipguard.valve.decisions) by outcome and by which of the two
    made it.
    """

    def __init__(
        self,
        fleet: Valve,
        local: LocalValve,
        breaker: Breaker,
        metrics: DipMetrics | None = None,
    ) -> None:
        self.fleet = fleet
        self.local = local
        self.breaker = breaker
        self.metrics = metrics if metrics is not None else DipMetrics()

    async def admit(self, timeout: float) -> bool:
        try:
            admitted = await self.breaker.call(lambda: self.fleet.admit(timeout), timeout)
        except RedisUnavailable:
            admitted = self.local.try_admit()
            self.metrics.valve_decision(admitted, local=True)
        else:
            self.metrics.valve_decision(admitted, local=False)
        return admitted
