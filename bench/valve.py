"""The valve under overload, alone: ``python -m bench.valve [--duration 10]``.

Eight client processes, each with its own connection, ask for database reads at five
times MAX_DB_QPS in total (Poisson arrivals, open loop) for ten seconds against a real
redis-server, once through dipguard's ``shared.dip.valve.RedisValve`` and once through the
seed's fixed window (``INCR db_qps:{int(time.time())}`` then ``EXPIRE key 2``, shed
above the budget), run the same way.

For each it prints the most admissions seen in any 1-second sliding window (by the time
each admission's reply arrived) against MAX_DB_QPS, and the Redis round trips per
decision from INFO commandstats. Exit code 1 if dipguard's valve admits more than the
budget in any window or takes more than one round trip per decision; 0 otherwise.
(``RedisValve`` may settle a decision without Redis when an earlier reply already said no
slot frees before then, so its figure can be below one.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.stats import peak_in_window, percentile
from shared.dip.valve import VALVE_KEY, RedisValve

_SCRIPT = resources.files("shared.dip").joinpath("valve.lua").read_text(encoding="utf-8")

__all__ = ["main", "run"]

# What valve.lua runs inside Redis: counted by commandstats, but no round trips.
_SCRIPT_INNER = {"time", "lindex", "lpush", "ltrim", "pexpire"}


@dataclass(frozen=True)
class Job:
    algorithm: str
    url: str
    duration: float
    rate: float  # this client's decisions per second
    limit: int
    window_s: float
    seed: int
    slices: int = 1


async def _seed_admit(client: aioredis.Redis, limit: int) -> bool:
    key = f"db_qps:{int(time.time())}"
    count = await client.incr(key)
    await client.expire(key, 2)
    return int(count) <= limit


async def _client(job: Job, ready: Any, go: Any, start_at: Any) -> list[tuple[float, float, bool]]:
    client = aioredis.Redis.from_url(job.url, socket_timeout=5, max_connections=1024)
    valve = RedisValve(client, job.limit, job.window_s, slices=job.slices)
    rng = random.Random(job.seed)
    loop = asyncio.get_running_loop()
    out: list[tuple[float, float, bool]] = []
    pending: set[asyncio.Task[None]] = set()
    await client.ping()
    ready.put(job.seed)
    # Everyone starts together, at a moment the parent picks once all are connected.
    await asyncio.to_thread(go.wait, 30)
    start = float(start_at.value)

    async def decide() -> None:
        sent = time.monotonic()
        if job.algorithm == "dipguard":
            admitted = await valve.admit(5.0)
        else:
            admitted = await _seed_admit(client, job.limit)
        out.append((sent, time.monotonic(), admitted))

    # Open loop: each decision starts on schedule, whether or not earlier ones answered.
    at = start + rng.expovariate(job.rate)
    end = start + job.duration
    try:
        while at < end:
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = loop.create_task(decide())
            pending.add(task)
            task.add_done_callback(pending.discard)
            at += rng.expovariate(job.rate)
        if pending:
            await asyncio.wait(list(pending), timeout=10)
    finally:
        await client.aclose()
    return out


def _worker(job: Job, ready: Any, go: Any, start_at: Any, results: Any) -> None:
    results.put(asyncio.run(_client(job, ready, go, start_at)))


async def _commandstats(url: str) -> dict[str, int]:
    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("commandstats")
    finally:
        await client.aclose()
    return {
        str(k).removeprefix("cmdstat_"): int(v.get("calls", 0))
        for k, v in info.items()
        if isinstance(v, dict)
    }


async def _reset(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushall()
        await client.script_flush()
        # Loaded once here, so no client meets a NOSCRIPT during the run.
        await client.script_load(_SCRIPT)
        await client.config_resetstat()
    finally:
        await client.aclose()


def run_algorithm(
    algorithm: str,
    url: str,
    *,
    clients: int,
    rate: float,
    duration: float,
    limit: int,
    window_s: float,
    slices: int = 1,
) -> dict[str, Any]:
    asyncio.run(_reset(url))
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    start_at = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(
            target=_worker,
            daemon=True,
            args=(
                Job(
                    algorithm, url, duration, rate / clients, limit, window_s, seed=i, slices=slices
                ),
                ready,
                go,
                start_at,
                out,
            ),
        )
        for i in range(clients)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        start = time.monotonic() + 0.3
        start_at.value = start
        go.set()
        results = [out.get(timeout=duration + 60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    stats = asyncio.run(_commandstats(url))
    decisions = [d for r in results for d in r]
    admitted_at = [done - start for _, done, ok in decisions if ok]
    asked_at = [sent - start for sent, _, ok in decisions if ok]
    peak, peak_at = peak_in_window(admitted_at)
    peak_sent, _ = peak_in_window(asked_at)
    latency = [done - sent for sent, done, _ in decisions]
    # Every command this algorithm sends itself is a round trip; a script's inner calls
    # and the benchmark's own INFO, CONFIG, FLUSHALL, SCRIPT and PING are not.
    own = {
        "info",
        "config|resetstat",
        "flushall",
        "script|flush",
        "script|load",
        "ping",
        "client|setinfo",
        "hello",
    }
    sent_cmds = {k: v for k, v in stats.items() if k not in own}
    round_trips = sum(v for k, v in sent_cmds.items() if k not in _SCRIPT_INNER)
    n = len(decisions)
    return {
        "algorithm": algorithm,
        "decisions": n,
        "admitted": len(admitted_at),
        "admittedPerS": round(len(admitted_at) / duration, 1),
        "peakAdmittedIn1s": peak,
        "peakWindowStartS": None if peak_at is None else round(peak_at, 3),
        "peakAdmittedIn1sBySendTime": peak_sent,
        "limit": limit,
        "roundTripsPerDecision": round(round_trips / n, 4) if n else None,
        "evalshaPerDecision": round(sent_cmds.get("evalsha", 0) / n, 4) if n else None,
        # Decisions the client settled without Redis (a shed it already knew about).
        "decidedWithoutRedis": max(n - sent_cmds.get("evalsha", 0), 0)
        if algorithm == "dipguard"
        else 0,
        "commands": dict(sorted(sent_cmds.items(), key=lambda kv: -kv[1])),
        "decisionLatencyP50Ms": round((percentile(latency, 50) or 0) * 1000, 2),
        "decisionLatencyP99Ms": round((percentile(latency, 99) or 0) * 1000, 2),
    }


def run(
    *,
    duration: float = 10.0,
    clients: int = 8,
    factor: float = 5.0,
    limit: int = 200,
    guard_ms: int = 20,
    pace_slices: int = 10,
    redis_url: str | None = None,
) -> dict[str, Any]:
    from bench.procs import RedisServer, free_port

    server: RedisServer | None = None
    if redis_url is None:
        server = RedisServer(free_port())
        server.start()
        redis_url = server.url
    try:
        rate = limit * factor
        window_s = 1.0 + guard_ms / 1000
        runs = [
            run_algorithm(
                name,
                redis_url,
                clients=clients,
                rate=rate,
                duration=duration,
                limit=limit,
                window_s=window_s,
                slices=pace_slices,
            )
            for name in ("dipguard", "seed")
        ]
    finally:
        if server is not None:
            server.stop()
    ours = runs[0]
    # At most one: RedisValve may answer a certain "no" without asking Redis at all.
    one_trip = ours["roundTripsPerDecision"] is not None and ours["roundTripsPerDecision"] <= 1.0
    checks = {"neverAboveBudget": ours["peakAdmittedIn1s"] <= limit, "atMostOneRoundTrip": one_trip}
    return {
        "benchmark": "valve",
        "clients": clients,
        "durationS": duration,
        "offeredPerS": rate,
        "limit": limit,
        "valveKey": VALVE_KEY,
        "windowS": window_s,
        "runs": runs,
        "verdict": {
            "checks": checks,
            "met": all(checks.values()),
            "seedBreached": runs[1]["peakAdmittedIn1s"] > limit,
        },
    }


def _print(result: dict[str, Any]) -> None:
    print(
        f"valve: {result['clients']} clients, {result['offeredPerS']:g} decisions/s offered "
        f"for {result['durationS']:g} s, budget {result['limit']} per 1 s window"
    )
    print(
        f"{'algorithm':<10} {'decisions':>9} {'admitted/s':>10} {'peak in 1 s':>12} "
        f"{'round trips/decision':>21} {'decision p99':>13}"
    )
    for r in result["runs"]:
        flag = "  > budget" if r["peakAdmittedIn1s"] > r["limit"] else ""
        print(
            f"{r['algorithm']:<10} {r['decisions']:>9} {r['admittedPerS']:>10} "
            f"{r['peakAdmittedIn1s']:>6} / {r['limit']:<4}{r['roundTripsPerDecision']:>21} "
            f"{r['decisionLatencyP99Ms']:>10} ms{flag}"
        )
    verdict = result["verdict"]
    print(
        "valve: dipguard "
        + ("met" if verdict["met"] else "MISSED")
        + " its budget: "
        + ", ".join(f"{k}={v}" for k, v in verdict["checks"].items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.valve",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of overload")
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--factor", type=float, default=5.0, help="offered = factor x budget")
    parser.add_argument("--max-db-qps", type=int, default=200, help="the budget")
    parser.add_argument(
        "--guard-ms",
        type=int,
        default=20,
        help="VALVE_GUARD_MS: added to the 1 s window, as the app does",
    )
    parser.add_argument(
        "--pace-slices",
        type=int,
        default=10,
        help="VALVE_PACE_SLICES: each slice of the window admits its share of the budget",
    )
    parser.add_argument(
        "--redis-url", help="use this Redis instead of starting one (it is flushed)"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = run(
        duration=args.duration,
        clients=args.clients,
        factor=args.factor,
        limit=args.max_db_qps,
        guard_ms=args.guard_ms,
        pace_slices=args.pace_slices,
        redis_url=args.redis_url,
    )
    _print(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0 if result["verdict"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
