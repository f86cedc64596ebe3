"""The Redis circuit breaker: a sick Redis must not cost every dip a timeout.

One breaker guards every use of Redis in a worker process (the cache and the valve), so
they fail over together: to the stale copy and the local budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from shared.clients import REDIS_ERRORS
from shared.errors import DependencyUnavailable

__all__ = ["Breaker", "RedisUnavailable"]


class RedisUnavailable(DependencyUnavailable):
    """Redis did not answer in time, failed, or the breaker is open."""


class Breaker:
    """Consecutive-failure circuit breaker with one trial call after the reset time.

    Written here rather than taken from pybreaker: pybreaker's async support is
    Tornado-only, and the asyncio forks are unmaintained. This is the whole state machine.
    """

    def __init__(
        self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
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

    async def call[T](self, fn: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        """Run one Redis call under the breaker: RedisUnavailable if it is open or the call
        fails or times out. ``timeout`` None: ``fn`` bounds its own wait (a batched read,
        whose MGET has a timeout of its own), and no second timer is set for it.

        A call cancelled from outside (the dip's deadline, a caller gone, shutdown) says
        nothing about Redis and is not counted; a trial cut so frees the way for the next
        one, so a trial never stays "in flight". A timeout counts even when this worker's
        own busy event loop made it late: under load an open breaker sheds the worker's
        Redis calls until a trial succeeds, while a worker that never opened on a stalled
        Redis would pay every call's full timeout through a spike."""
        if not self.allow():
            raise RedisUnavailable("redis breaker is open")
        trial = self._opened_at is not None
        try:
            if timeout is None:
                result = await fn()
            else:
                async with asyncio.timeout(timeout):
                    result = await fn()
        except asyncio.CancelledError:
            if trial:
                self._trial_in_flight = False
            raise
        except REDIS_ERRORS as exc:
            self.failure()
            raise RedisUnavailable(type(exc).__name__) from exc
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
