"""An open-loop HTTP driver: every call fires at its scheduled time, answered or not.

A closed loop (N workers, each waiting for its answer) slows down exactly when the system
under test does, and so hides the latency it should measure. Here each arrival is its
own task, started on schedule; the driver never waits for earlier calls.

``genesys_concurrency`` models a Genesys org's data action concurrency limit: when that
many calls are in flight, a new one is rejected on the Genesys side (a "Concurrency Rate
Limit Error") and never reaches the app.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
from tqdm import tqdm

from bench.traffic import Arrival, Profile

__all__ = ["CAP_REJECTED", "CONN_ERROR", "TIMEOUT", "Driven", "drive"]

# Pseudo-statuses for calls that got no HTTP answer.
TIMEOUT = -1
CONN_ERROR = -2
CAP_REJECTED = -3

_SOURCE_MARK = b'"source":"'
_FOUND_MARK = b'"customerFound":true'
_HEADERS = {"Content-Type": "application/json"}


@dataclass
class Driven:
    """What happened to each arrival, index for index."""

    started: float  # monotonic time of the schedule's zero
    sent: list[float] = field(default_factory=list)  # seconds from ``started``
    latency: list[float] = field(default_factory=list)  # seconds; the timeout if none
    status: list[int] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    # Whether the answer named a customer ("customerFound": true).
    found: list[bool] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # how late the driver fired it
    peak_inflight: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


def _source(payload: bytes) -> str:
    at = payload.find(_SOURCE_MARK)
    if at < 0:
        return ""
    at += len(_SOURCE_MARK)
    return payload[at : payload.find(b'"', at)].decode()


async def drive(
    url: str,
    schedule: Sequence[Arrival],
    profile: Profile,
    *,
    timeout_s: float = 3.2,
    genesys_concurrency: int | None = None,
    events: Sequence[tuple[float, Callable[[], Awaitable[None]]]] = (),
    progress: bool = True,
    label: str = "",
) -> Driven:
    loop = asyncio.get_running_loop()
    n = len(schedule)
    run = Driven(
        started=0.0,
        sent=[0.0] * n,
        latency=[timeout_s] * n,
        status=[0] * n,
        source=[""] * n,
        found=[False] * n,
        lag=[0.0] * n,
    )
    inflight = 0
    counts = {"5xx": 0, "4xx": 0, "timeout": 0, "error": 0, "capped": 0, "done": 0}
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    )
    tasks: set[asyncio.Task[None]] = set()

    async def call(i: int) -> None:
        nonlocal inflight
        begin = loop.time()
        run.sent[i] = begin - run.started
        try:
            async with session.post(url, data=schedule[i].body, headers=_HEADERS) as resp:
                payload = await resp.read()
                status = resp.status
            run.latency[i] = loop.time() - begin
            run.status[i] = status
            run.source[i] = _source(payload) if status == 200 else ""
            run.found[i] = status == 200 and _FOUND_MARK in payload
            if status >= 500:
                counts["5xx"] += 1
            elif status >= 400:
                counts["4xx"] += 1
        except TimeoutError:
            run.status[i] = TIMEOUT
            counts["timeout"] += 1
        except (aiohttp.ClientError, OSError) as exc:
            run.latency[i] = loop.time() - begin
            run.status[i] = CONN_ERROR
            counts["error"] += 1
            kind = f"{type(exc).__name__}: {exc}"[:120]
            run.error_kinds[kind] = run.error_kinds.get(kind, 0) + 1
        finally:
            inflight -= 1
            counts["done"] += 1

    async def fire_events(start: float) -> None:
        for at, action in sorted(events, key=lambda e: e[0]):
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await action()

    bar = tqdm(
        total=round(profile.seconds),
        unit="s",
        disable=not progress,
        file=sys.stderr,
        desc=label,
        bar_format="{desc} {bar:20} {n_fmt}/{total_fmt}s{postfix}",
        leave=True,
    )

    async def show() -> None:
        last_done, last_t = 0, loop.time()
        while True:
            await asyncio.sleep(0.5)
            now = loop.time()
            elapsed = now - run.started
            phase = profile.at(min(elapsed, profile.seconds - 1e-6))[0].name
            rate = (counts["done"] - last_done) / max(now - last_t, 1e-6)
            last_done, last_t = counts["done"], now
            bar.n = min(round(elapsed), round(profile.seconds))
            bar.set_postfix_str(
                f"{phase} offered={profile.rate(min(elapsed, profile.seconds - 1e-6)):.0f}/s "
                f"answered={rate:.0f}/s inflight={inflight} 5xx={counts['5xx']} "
                f"timeouts={counts['timeout']} errors={counts['error']}"
                + (f" capped={counts['capped']}" if genesys_concurrency else ""),
                refresh=True,
            )

    # The driver must not pause to collect garbage mid-run: a full collection over the
    # schedule and the population takes long enough to show up as the app's latency.
    # What exists now is frozen out of the collector; collection resumes afterwards.
    gc.collect()
    gc.freeze()
    gc.disable()
    shower = asyncio.ensure_future(show()) if progress else None
    run.started = loop.time() + 0.1
    eventer = asyncio.ensure_future(fire_events(run.started))
    try:
        for i, arrival in enumerate(schedule):
            due = run.started + arrival.t
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif i % 32 == 0:
                await asyncio.sleep(0)  # behind schedule: still let answers in
            run.lag[i] = max(0.0, loop.time() - due)
            if genesys_concurrency is not None and inflight >= genesys_concurrency:
                run.sent[i] = arrival.t
                run.status[i] = CAP_REJECTED
                counts["capped"] += 1
                continue
            inflight += 1
            run.peak_inflight = max(run.peak_inflight, inflight)
            task = asyncio.ensure_future(call(i))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        # Bounded: every call has a total timeout.
        if tasks:
            await asyncio.wait(list(tasks), timeout=timeout_s + 5)
        await eventer
    finally:
        eventer.cancel()
        if shower is not None:
            shower.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(eventer, *([shower] if shower else []), *tasks, return_exceptions=True)
        await session.close()
        bar.close()
        gc.enable()
        gc.unfreeze()
    return run
