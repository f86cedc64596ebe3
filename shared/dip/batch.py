"""The dips' GETs of one event-loop turn, sent to Redis as one MGET.

A cached dip is one Redis round trip, and most of its CPU is that round trip's fixed cost:
the connection pool's checkout, the command's two timeout scopes, a send and a receive
system call, and an event-loop wake-up. At the 10x peak many dips reach Redis in the same
turn of the event loop; one MGET for all of them pays that fixed cost once. A dip that is
alone in its turn sends an MGET of one key, which costs what a GET does.

redis-py has no automatic pipelining (ioredis's ``enableAutoPipelining`` is the model), so
this is written here. It is small: waiters queue a key, the first one of a turn schedules
the send for the end of that turn, and the send answers every waiter still waiting.

A waiter that stops waiting (its deadline, a caller gone) only leaves its future behind;
the MGET carries on for the others. A failed or late MGET is one failure: the first waiter
still waiting gets the exception itself, which the Redis breaker counts as one failure, and
every other waiter a ``RedisUnavailable`` of its own, which the breaker passes on without
counting. So one connection reset costs the breaker what one failed GET did, while a
stalled Redis still opens it within a few turns' timeouts.
"""

from __future__ import annotations

import asyncio

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from shared.clients import RedisClient
from shared.dip.breaker import RedisUnavailable

__all__ = ["MAX_KEYS", "GetBatch"]

# An MGET this long is still a small request (a key is 40 bytes, an answer about 200);
# a longer queue is sent in more than one MGET.
MAX_KEYS = 64


class GetBatch:
    """``get`` as many concurrent callers' keys as one MGET per event-loop turn."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self._queue: list[tuple[str, asyncio.Future[bytes | None]]] = []
        self._deadline = 0.0
        self._sending: set[asyncio.Task[None]] = set()

    async def get(self, name: str, timeout: float) -> bytes | None:
        """The value of ``name``, read with whatever else this turn asks for. The MGET
        waits as long as its most patient caller, ``timeout`` being this caller's wait from
        now: the MGET's deadline counts from its callers' arrival, not from when it is sent."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes | None] = loop.create_future()
        self._queue.append((name, future))
        self._deadline = max(self._deadline, loop.time() + timeout)
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        elif len(self._queue) >= MAX_KEYS:
            self._flush()
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        deadline, self._deadline = self._deadline, 0.0
        waiting = [(name, future) for name, future in queue if not future.done()]
        if not waiting:
            return
        task = asyncio.ensure_future(self._send(waiting, deadline))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(
        self, waiting: list[tuple[str, asyncio.Future[bytes | None]]], deadline: float
    ) -> None:
        names = [name for name, _ in waiting]
        try:
            async with asyncio.timeout_at(deadline):
                if isinstance(self.redis, RedisCluster):
                    # One MGET per hash slot, pipelined per shard.
                    values = await self.redis.mget_nonatomic(names)
                else:
                    values = await self.redis.mget(names)
            if len(values) != len(names):
                raise RedisConnectionError("MGET answered a different number of keys")
        except asyncio.CancelledError:
            # Only shutdown cancels a send; its waiters learn that Redis did not answer.
            _fail(waiting, RedisConnectionError("the read was cancelled"))
            raise
        except Exception as exc:
            _fail(waiting, exc)
            return
        for (_, future), value in zip(waiting, values, strict=True):
            if not future.done():
                future.set_result(value)


def _fail(waiting: list[tuple[str, asyncio.Future[bytes | None]]], exc: BaseException) -> None:
    """The first waiter still waiting gets ``exc`` (the breaker counts it once); every
    other one a RedisUnavailable of its own, which the breaker does not count again."""
    first = True
    for _, future in waiting:
        if future.done():
            continue
        if first:
            future.set_exception(exc)
            first = False
        else:
            future.set_exception(RedisUnavailable(f"shared read failed: {type(exc).__name__}"))
