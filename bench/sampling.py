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

from bench.procs import children_of, socket_inode, tcp_rows

__all__ = ["process_sample", "sampling_events", "tcp_ports"]


def tcp_ports() -> dict[str, tuple[int, int]]:
    """Every TCP socket's inode and its (local port, remote port), from /proc/net."""
    return {
        cols[9]: (int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16))
        for cols in tcp_rows()
    }


def process_sample(
    pid: int,
    by_port: dict[str, int] | None = None,
    sockets: dict[str, tuple[int, int]] | None = None,
) -> dict[str, Any] | None:
    """A process's resident set (MB) and open file descriptors; None once it is gone.

    ``by_port`` names ports (say {"redis": 6391, "http": 7071}): the sample then also counts
    the process's TCP sockets connected to, or listening on, each, so that a growing count
    says which connections pile up. ``sockets``: a ``tcp_ports()`` taken once for several
    processes."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    rss_kb = next(
        (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
    )
    sample: dict[str, Any] = {"pid": pid, "rssMb": round(rss_kb / 1024, 1), "fds": len(fds)}
    if by_port:
        table = tcp_ports() if sockets is None else sockets
        counts = dict.fromkeys(by_port, 0)
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            inode = socket_inode(target)
            ports = None if inode is None else table.get(inode)
            if ports is None:
                continue
            for name, port in by_port.items():
                if port in ports:
                    counts[name] += 1
        sample["sockets"] = counts
    return sample


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
    ports: dict[str, int] | None = None,
) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
    """Driver events (seconds from the schedule's start) that each append one sample to
    ``into``: the dev host's worker processes (or the host itself when it runs one), with
    their sockets by ``ports``, and Redis."""

    def at(t: float) -> Callable[[], Awaitable[None]]:
        async def take() -> None:
            pid = app_pid()
            pids = [] if pid is None else children_of(pid) or [pid]
            sockets = tcp_ports() if ports else None
            workers = [process_sample(p, ports, sockets) for p in pids]
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
