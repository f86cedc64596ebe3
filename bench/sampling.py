"""What a long run's processes hold over time: each worker's resident memory and open file
descriptors (Linux /proc), and Redis's memory and key count (INFO, DBSIZE).

A drift that a minute-long spike cannot show (connections that pile up, memory that grows
with every caller) shows here as a line that does not stay flat.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.procs import children_of

__all__ = ["process_sample", "sampling_events"]


def process_sample(pid: int) -> dict[str, Any] | None:
    """A process's resident set (MB) and open file descriptors; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    rss_kb = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    return {"pid": pid, "rssMb": round(rss_kb / 1024, 1), "fds": fds}


async def redis_sample(port: int) -> dict[str, Any]:
    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        memory = await client.info("memory")
        keys = await client.dbsize()
    except (aioredis.RedisError, OSError) as exc:
        return {"error": type(exc).__name__}
    finally:
        await client.aclose()
    return {"usedMemoryMb": round(int(memory["used_memory"]) / 2**20, 1), "keys": int(keys)}


def sampling_events(
    app_pid: Callable[[], int | None],
    redis_port: int,
    every_s: float,
    until_s: float,
    into: list[dict[str, Any]],
) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
    """Driver events (seconds from the schedule's start) that each append one sample to
    ``into``: the dev host's worker processes, and Redis."""

    def at(t: float) -> Callable[[], Awaitable[None]]:
        async def take() -> None:
            pid = app_pid()
            workers = [] if pid is None else [process_sample(c) for c in children_of(pid)]
            into.append(
                {
                    "t": round(t, 1),
                    "workers": [w for w in workers if w is not None],
                    "redis": await redis_sample(redis_port),
                }
            )

        return take

    count = int(until_s // every_s) + 1
    return [(n * every_s, at(n * every_s)) for n in range(count)]
