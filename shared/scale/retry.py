"""Bounded retries of ARM calls inside one tick, with Retry-After honoured up to a cap."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.scale.arm import ArmError

__all__ = ["Retrier", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries inside one tick; the defaults fit well inside a 5-minute timer."""

    attempts: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 10.0
    # A Retry-After longer than this is not worth holding the tick for: the next tick comes.
    retry_after_max: float = 30.0
    # All retry waits and requests of one tick together stop being retried after this.
    budget_seconds: float = 120.0


class Retrier:
    """Calls an ARM operation until it succeeds, fails for good, or the budget is spent."""

    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.policy = policy
        self.sleep = sleep
        self.deadline = time.monotonic() + policy.budget_seconds

    async def __call__[T](self, fn: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await fn()
            except ArmError as err:
                attempt += 1
                if not err.retryable or attempt >= self.policy.attempts:
                    raise
                if err.status == 429 and err.retry_after is not None:
                    delay = err.retry_after
                    if delay > self.policy.retry_after_max:
                        raise
                else:
                    step = self.policy.backoff_base * 2 ** (attempt - 1)
                    # Jitter keeps a retried burst from landing on ARM in lockstep.
                    delay = min(self.policy.backoff_max, step) * random.uniform(0.5, 1.0)
                if time.monotonic() + delay > self.deadline:
                    raise
                await self.sleep(delay)
