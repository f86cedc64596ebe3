"""CPU per dip, three ways side by side in one run: ``python -m bench.cpu``.

* **in process**: the app's own dip service (``Runtime.dips.answer``), no HTTP;
* **real app**: function_app.py through the dev host and Microsoft's worker;
* **empty function**: bench/empty_app.py through the same path, a function that returns a
  constant answer of the same shape: the floor of that path.

Each is measured for three answers: a **cached** dip (a known caller after a complete warm),
a read-model **absent** (a stranger after a complete warm: "no customer" without a database
read), and a **database** read against Azurite (a known caller with nothing in Redis). One
round measures every way and answer in turn, so a round's figures come from the same minute
of the same machine; the report gives each figure's median over the rounds and the app's
share of the platform path, (real - empty) / empty.

CPU is the app's process tree's user + system time (``/proc``) over the dips, divided by
the dips: the driver (this process, for the HTTP ways) is not counted, nor are Redis and
Azurite. CPU time on a shared machine is noisy, so ``--callgrind`` also counts instructions
per cached dip in process with valgrind's callgrind, which repeats exactly whatever else the
machine does: two runs of different lengths, whose difference removes start-up and imports.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from azure.data.tables.aio import TableClient

from app.runtime import Runtime
from app.settings import load_settings
from bench.population import Population, ensure_loaded
from bench.procs import (
    ROOT,
    AppProcess,
    Azurite,
    RedisServer,
    free_port,
    port_open,
    table_connection_string,
    tree_cpu_seconds,
)
from bench.spike import describe_machine
from shared.dip.cache import ANSWER_PREFIX
from shared.dip.contract import DipRequest
from shared.dip.keys import LOCAL_SECRET
from shared.dip.lookup import caller_of

__all__ = ["WAYS", "main", "measure_in_process"]

WAYS = ("in process", "real app", "empty function")
ANSWERS = ("cached", "absent", "database")
CONCURRENCY = 16
TABLE = "benchcpu"


@dataclass(frozen=True)
class Config:
    dips: int
    rounds: int
    customers: int
    azurite_port: int
    out: Path | None
    callgrind: tuple[int, int] | None
    import_rounds: int = 5


def app_env(redis_url: str, azurite_port: int) -> dict[str, str]:
    """The app's settings for every way: no answer shed, no read waiting for a slot, and
    the longest Redis wait the setting allows, so a machine busy with other work cannot
    turn a cached dip into a database read: each scenario is answered from its own source,
    and what is measured is CPU, not latency."""
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "CustomerStorage": table_connection_string(azurite_port),
        "CUSTOMER_TABLE": TABLE,
        "LOOKUP_KEY_SECRET": LOCAL_SECRET,
        "MAX_DB_QPS": "100000",
        "LOCAL_DB_QPS": "100000",
        "MAX_INFLIGHT_DB_READS": str(CONCURRENCY),
        "DIP_LOG_LEVEL": "OFF",
        "FUNCTIONS_WORKER_PROCESS_COUNT": "1",
        "REDIS_TIMEOUT_MS": "2000",
    }


def callers(population: Population, answer: str, count: int) -> list[str]:
    """The numbers ``count`` dips dial: known callers, or strangers, in turn."""
    if answer == "absent":
        pool = list(population.strangers)
    else:
        pool = [c.phones[0] for c in population.customers]
    if answer == "database" and count > len(pool):
        raise ValueError(
            f"a database round needs {count} customers, the population has {len(pool)}"
        )
    return [pool[i % len(pool)] for i in range(count)]


async def _bounded(
    calls: Sequence[Callable[[], Awaitable[object]]], concurrency: int = CONCURRENCY
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            await call()

    await asyncio.gather(*(one(c) for c in calls))


async def measure_in_process(
    rt: Runtime, numbers: Sequence[str], concurrency: int = CONCURRENCY
) -> tuple[float, dict[str, int]]:
    """CPU µs per dip of this process answering ``numbers``, and the sources it answered."""
    sources: dict[str, int] = {}

    def call(number: str) -> Callable[[], Awaitable[object]]:
        async def dip() -> None:
            outcome = await rt.dips.answer(DipRequest(str(uuid.uuid4()), number, None, None))
            sources[outcome.answer.source] = sources.get(outcome.answer.source, 0) + 1

        return dip

    calls = [call(n) for n in numbers]
    started = time.process_time()
    await _bounded(calls, concurrency)
    spent = time.process_time() - started
    await rt.dips.drain()
    return spent / len(numbers) * 1e6, sources


async def measure_http(
    app: AppProcess, session: aiohttp.ClientSession, numbers: Sequence[str]
) -> tuple[float, dict[str, int]]:
    """CPU µs per dip of the app's process tree answering ``numbers`` over HTTP."""
    sources: dict[str, int] = {}

    def call(number: str) -> Callable[[], Awaitable[object]]:
        async def dip() -> None:
            body = {"conversationId": str(uuid.uuid4()), "ani": number}
            async with session.post(app.url, json=body) as response:
                answer = await response.json()
            source = answer.get("source", f"http {response.status}")
            sources[source] = sources.get(source, 0) + 1

        return dip

    before = tree_cpu_seconds(app.pid)
    await _bounded([call(n) for n in numbers])
    # Background cache writes finish within the request's own tail; give them a moment.
    await asyncio.sleep(0.2)
    after = tree_cpu_seconds(app.pid)
    assert before is not None and after is not None
    return (after - before) / len(numbers) * 1e6, sources


async def _warm(rt: Runtime) -> None:
    report = await rt.warm().run()
    if not report.completed:
        raise RuntimeError("the warm did not complete")


async def _prepare(rt: Runtime, redis: aioredis.Redis, answer: str, numbers: Sequence[str]) -> None:
    """Redis as the answer needs it, under the one warm the whole run shares.

    Every way answers under the same warm generation. Each process re-reads the warm's
    marker only every few seconds (``ReadModel.marker``), so a new warm between ways would
    leave the app processes probing a filter the new warm has deleted, and their first
    strangers would be read from the database. So nothing re-warms: before each way, the
    answers the previous way wrote for these numbers are deleted instead. A cached dip needs
    its warmed entry, which each database way's write-through restores (the empty function,
    which reads nothing, leaves Redis as it is); a stranger needs no
    entry, so that the filter answers; a database read needs no entry either, and the
    filter's "maybe" for a customer sends it to the table.
    """
    if answer == "cached":
        return
    names: set[str] = set()
    for number in numbers:
        caller = caller_of(DipRequest("bench", number, None, None), rt.dips.region)
        if caller is not None:
            names.update(ANSWER_PREFIX + k.cache_key for k in rt.dips.keys.candidates(*caller))
    ordered = sorted(names)
    for start in range(0, len(ordered), 500):
        await redis.delete(*ordered[start : start + 500])


async def run(cfg: Config) -> dict[str, Any]:
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = describe_machine()
    redis_server = RedisServer(free_port())
    azurite = None if port_open(cfg.azurite_port) else Azurite(cfg.azurite_port)
    if azurite is not None:
        azurite.start()
    redis_server.start()
    work = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    env = app_env(redis_server.url, cfg.azurite_port)
    apps = {
        "real app": AppProcess("function_app.py", free_port(), env, work / "real.log"),
        "empty function": AppProcess("bench/empty_app.py", free_port(), env, work / "empty.log"),
    }
    figures: dict[str, dict[str, list[float]]] = {a: {w: [] for w in WAYS} for a in ANSWERS}
    sources: dict[str, dict[str, dict[str, int]]] = {a: {} for a in ANSWERS}
    callgrind_result: dict[str, Any] = {}
    population = Population.build(cfg.customers)
    try:
        async with TableClient.from_connection_string(
            table_connection_string(cfg.azurite_port), table_name=TABLE
        ) as table:
            await ensure_loaded(table, population, work, progress=False)
        rt = Runtime(load_settings(env))
        await _warm(rt)  # before the apps first ask for the warm's marker
        for process in apps.values():
            process.start(process.port)
        redis = aioredis.Redis.from_url(redis_server.url)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:
            for way_app in apps.values():  # first requests load what a dip imports lazily
                await measure_http(way_app, session, callers(population, "cached", 50))
            await measure_in_process(rt, callers(population, "cached", 50))
            for round_no in range(cfg.rounds):
                for answer in ANSWERS:
                    numbers = callers(population, answer, cfg.dips)
                    for way in WAYS:
                        if way != "empty function":  # which reads nothing from Redis
                            await _prepare(rt, redis, answer, numbers)
                        if way == "in process":
                            cpu, seen = await measure_in_process(rt, numbers)
                        else:
                            cpu, seen = await measure_http(apps[way], session, numbers)
                        figures[answer][way].append(round(cpu, 1))
                        counted = sources[answer].setdefault(way, {})
                        for source, count in seen.items():
                            counted[source] = counted.get(source, 0) + count
                print(
                    f"cpu: round {round_no + 1}/{cfg.rounds} done",
                    file=sys.stderr,
                    flush=True,
                )
        if cfg.callgrind is not None:
            await _warm(rt)  # the child reads the new marker at its first dip
            try:
                callgrind_result = await asyncio.to_thread(callgrind, cfg, env)
            except RuntimeError as exc:
                # The CPU figures stand on their own: report them, and why no count.
                callgrind_result = {"error": str(exc)[-500:]}
        await redis.aclose()
        await rt.close()
    finally:
        for process in apps.values():
            process.stop()
        redis_server.stop()
        if azurite is not None:
            azurite.stop()
    imports = import_times(env, cfg.import_rounds)
    result: dict[str, Any] = {
        "imports": imports,
        "config": {
            "dips": cfg.dips,
            "rounds": cfg.rounds,
            "concurrency": CONCURRENCY,
            "customers": cfg.customers,
            "python": sys.version.split()[0],
        },
        "runAt": started_at,
        "machine": machine,
        "answers": {},
    }
    for answer in ANSWERS:
        medians = {w: statistics.median(figures[answer][w]) for w in WAYS}
        real, empty = medians["real app"], medians["empty function"]
        result["answers"][answer] = {
            "cpuUsPerDip": figures[answer],
            "medianCpuUsPerDip": {w: round(m, 1) for w, m in medians.items()},
            "appShareOfEmpty": round((real - empty) / empty, 2) if empty > 0 else None,
            # Every round's answers by source: a figure is only what it says it is when
            # all of a round's dips came from the answer's source.
            "sources": sources[answer],
        }
    if cfg.callgrind is not None:
        result["callgrind"] = callgrind_result
    return result


# --- instructions, with valgrind's callgrind ---------------------------------------------------


def _instructions(out_file: Path) -> int:
    text = out_file.read_text(encoding="utf-8", errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no instruction total in {out_file}")
    return int(found[1])


def callgrind(cfg: Config, env: dict[str, str]) -> dict[str, Any]:
    """Instructions per cached dip in process: two child runs under callgrind, of ``short``
    and ``long`` dips after the same start-up; their difference over the extra dips."""
    short, long = cfg.callgrind or (0, 0)
    counts: dict[int, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as work:
        for dips in (short, long):
            out_file = Path(work) / f"callgrind.{dips}.out"
            done = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={out_file}",
                    sys.executable,
                    "-m",
                    "bench.cpu",
                    "--child-cached",
                    str(dips),
                    "--customers",
                    str(cfg.customers),
                ],
                cwd=ROOT,
                # pymalloc's arenas confuse valgrind's view of the heap; malloc does not.
                # Under callgrind the process runs tens of times slower: with the longest
                # Redis wait the setting allows (app_env) none times out into a database
                # read, and the child dips one at a time (see child_cached).
                env={**env, "PYTHONMALLOC": "malloc"},
                capture_output=True,
                text=True,
                timeout=3600,
            )
            if done.returncode != 0:
                raise RuntimeError(f"callgrind run failed: {done.stderr[-2000:]}")
            counts[dips] = _instructions(out_file)
    return {
        "dips": [short, long],
        "instructions": [counts[short], counts[long]],
        "instructionsPerCachedDip": round((counts[long] - counts[short]) / (long - short)),
    }


async def child_cached(dips: int, customers: int) -> None:
    """Under callgrind: start up, then ``dips`` cached dips (the warm is the parent's), one at
    a time, so that none runs out of its deadline at callgrind's pace."""
    rt = Runtime(load_settings())
    population = Population.build(customers)
    _, seen = await measure_in_process(rt, callers(population, "cached", dips), concurrency=1)
    await rt.close()
    if set(seen) != {"cache"}:
        raise RuntimeError(f"expected cached answers only, got {seen}")


# --- cold start: importing function_app, as the worker's indexing does ----------------------

# A syntactically valid connection string whose endpoint nothing listens on: the distro
# installs its exporter at import, and exports only every 60 s, after the measured import.
_FAKE_INSIGHTS = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
)
_IMPORT_PROBE = (
    "import time; started = time.perf_counter(); import function_app; "
    "print(time.perf_counter() - started)"
)


def import_times(env: dict[str, str], rounds: int) -> dict[str, Any]:
    """Seconds to import function_app for the lookup app in a fresh interpreter, as the
    worker does when it indexes the app: without and with telemetry configured, ``rounds``
    times each, alternating; the minimum is the figure (the rest is the machine's noise)."""
    base = {k: v for k, v in env.items() if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"}
    base["DIPGUARD_FUNCTIONS"] = "lookup"
    variants = {
        "without telemetry": base,
        "with telemetry": {
            **base,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": _FAKE_INSIGHTS,
            # The exporter's own usage reports and remote settings have endpoints of their
            # own on the internet: off, so the probe talks to nothing (the variable names
            # are azure-monitor-opentelemetry-exporter's, _constants.py).
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        },
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant_env in variants.items():
            done = subprocess.run(
                [sys.executable, "-c", _IMPORT_PROBE],
                cwd=ROOT,
                env=variant_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                raise RuntimeError(f"importing function_app failed: {done.stderr[-2000:]}")
            seconds[name].append(round(float(done.stdout.strip().splitlines()[-1]), 3))
    return {
        "rounds": rounds,
        "seconds": seconds,
        "minimumSeconds": {name: min(values) for name, values in seconds.items()},
    }


# --- the report ------------------------------------------------------------------------------


def report_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    machine = result.get("machine", {})
    load = ", ".join(f"{x:.2f}" for x in machine.get("loadAverageAtStart", []))
    lines = [
        "# CPU per dip, three ways side by side",
        "",
        f"Run {result.get('runAt', '?')}. Machine: {machine.get('nproc', '?')} cores, "
        f"{machine.get('cpu', '?')}; Python {machine.get('python', '?')}; worker "
        f"azure-functions-runtime {machine.get('worker', '?')}; {machine.get('redis', '?')}; "
        f"Azurite {machine.get('azurite', '?')}. Commit {machine.get('commit', '?')}. "
        f"Load average at start {load}.",
        "",
        f"`python -m bench.cpu`: {cfg['dips']:,} dips per figure at concurrency "
        f"{cfg['concurrency']}, {cfg['rounds']} rounds, median of the rounds; "
        f"{cfg['customers']:,} customers; Python {cfg['python']}. CPU is the measured "
        "process tree's user + system time over the dips.",
        "",
        "| answer | in process | real app (dev host + worker) | empty function | "
        "app's share (real - empty) / empty |",
        "|---|---:|---:|---:|---:|",
    ]
    for answer, data in result["answers"].items():
        m = data["medianCpuUsPerDip"]
        lines.append(
            f"| {answer} | {m['in process']:,.0f} µs | {m['real app']:,.0f} µs | "
            f"{m['empty function']:,.0f} µs | {data['appShareOfEmpty']} |"
        )
    imports = result.get("imports")
    if imports is not None:
        low = imports["minimumSeconds"]
        lines += [
            "",
            "Importing `function_app` for the lookup app in a fresh interpreter (the worker's "
            f"indexing), minimum of {imports['rounds']}: **{low['without telemetry']:.3f} s** "
            f"without telemetry, **{low['with telemetry']:.3f} s** with it configured.",
        ]
    if "callgrind" in result and "error" in result["callgrind"]:
        lines += ["", f"No instruction count: {result['callgrind']['error']}"]
    elif "callgrind" in result:
        c = result["callgrind"]
        lines += [
            "",
            f"Instructions per cached dip in process (callgrind, {c['dips'][1]:,} minus "
            f"{c['dips'][0]:,} dips after the same start-up): "
            f"**{c['instructionsPerCachedDip']:,}**.",
        ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--dips", type=int, default=3000, help="dips per figure")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--azurite-port", type=int, default=10002)
    parser.add_argument("--out", type=Path, help="write <out>.json and <out>.md")
    parser.add_argument(
        "--callgrind",
        nargs=2,
        type=int,
        metavar=("SHORT", "LONG"),
        help="also count instructions per cached dip: two runs of SHORT and LONG dips",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run that checks every way works (100 dips, 1 round, 150 customers, "
        "2 import rounds): the figures are too few to quote",
    )
    parser.add_argument("--child-cached", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import_rounds = 5
    if args.quick:
        args.dips, args.rounds, args.customers, import_rounds = 100, 1, 150, 2
    if args.dips < 100 or args.rounds < 1:
        parser.error("--dips: at least 100; --rounds: at least 1")
    if args.child_cached is None and args.dips > args.customers:
        parser.error("--customers must be at least --dips: a database round reads each once")
    callgrind_dips: tuple[int, int] | None = None
    if args.callgrind:
        callgrind_dips = (args.callgrind[0], args.callgrind[1])
        if not 0 < callgrind_dips[0] < callgrind_dips[1]:
            parser.error("--callgrind SHORT LONG: 0 < SHORT < LONG")
    cfg = Config(
        args.dips,
        args.rounds,
        args.customers,
        args.azurite_port,
        args.out,
        callgrind_dips,
        import_rounds,
    )
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    if args.child_cached is not None:
        asyncio.run(child_cached(args.child_cached, cfg.customers))
        return 0
    result = asyncio.run(run(cfg))
    text = report_markdown(result)
    print(text)
    if cfg.out is not None:
        cfg.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        cfg.out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
