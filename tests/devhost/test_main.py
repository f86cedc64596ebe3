"""The dev host's worker processes: several share one port, as FUNCTIONS_WORKER_PROCESS_COUNT."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import pytest

from bench.procs import children_of
from tests.support.services import ROOT, free_port, port_open, wait_for_port


def _start(
    port: int,
    *args: str,
    env: dict[str, str] | None = None,
    script: str = "tests/support/apps/pid_app.py",
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devhost", "--port", str(port), "--script", script, *args],
        cwd=ROOT,
        env=dict(os.environ if env is None else env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def _serving(
    *args: str,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    proc = _start(port, *args, env=env)
    try:
        wait_for_port(port, timeout=30)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=15)


@pytest.fixture
def two_workers() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    with _serving("--workers", "2") as serving:
        yield serving


async def _pids(port: int, connections: int) -> set[int]:
    """The pids that answered ``connections`` new connections."""
    pids: set[int] = set()
    for _ in range(connections):
        # A new connection each time: the kernel spreads connections, not requests.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
            async with s.get(f"http://127.0.0.1:{port}/api/pid") as resp:
                assert resp.status == 200
                pids.add(int(await resp.text()))
    return pids


async def _pids_until(port: int, want: int, seconds: float = 30.0) -> set[int]:
    """New connections until ``want`` different pids have answered, or ``seconds`` pass.

    The port opens when the first worker listens, and the kernel spreads connections only
    over the sockets it has, so the first few may all reach one worker. Once both listen,
    each connection lands on either: hundreds all reaching one would be 1 in 2^hundreds.
    """
    pids: set[int] = set()
    deadline = time.monotonic() + seconds
    while len(pids) < want and time.monotonic() < deadline:
        pids |= await _pids(port, 1)
    return pids


async def test_two_workers_share_one_port_and_both_answer(
    two_workers: tuple[int, subprocess.Popen[str]],
) -> None:
    port, proc = two_workers
    pids = await _pids_until(port, 2)
    assert len(pids) == 2
    assert proc.pid not in pids  # the supervisor only supervises


def test_stopping_the_host_stops_every_worker(
    two_workers: tuple[int, subprocess.Popen[str]],
) -> None:
    port, proc = two_workers
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    assert not port_open(port)


async def test_a_stop_lets_the_workers_finish_the_requests_they_hold(
    two_workers: tuple[int, subprocess.Popen[str]],
) -> None:
    port, proc = two_workers
    await _pids_until(port, 2)
    async with aiohttp.ClientSession() as session:
        held = asyncio.ensure_future(session.get(f"http://127.0.0.1:{port}/api/slow?seconds=2"))
        await asyncio.sleep(0.7)  # the request is in a worker's hands, asleep
        proc.terminate()
        resp = await held
        text = await resp.text()
    assert resp.status == 200 and text.startswith("done by ")
    assert await asyncio.to_thread(proc.wait, 15) == 0


def _wait_closed(port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not port_open(port):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_stop_when_the_host_is_killed_outright(
    two_workers: tuple[int, subprocess.Popen[str]],
) -> None:
    port, proc = two_workers
    workers = children_of(proc.pid)
    assert len(workers) == 2
    proc.kill()
    proc.wait(timeout=15)
    # Orphaned workers would keep the port, and SO_REUSEPORT would let the next host share it.
    assert _wait_closed(port, 15)


def test_a_worker_killed_by_a_signal_ends_the_host_with_the_shells_status(
    two_workers: tuple[int, subprocess.Popen[str]],
) -> None:
    port, proc = two_workers
    workers = children_of(proc.pid)
    os.kill(workers[0], signal.SIGKILL)
    assert proc.wait(timeout=15) == 128 + signal.SIGKILL
    assert _wait_closed(port, 15)  # the other worker was stopped too


async def test_one_worker_is_the_default_as_in_the_functions_host() -> None:
    # Set but empty: local.settings.json, which the host also reads, cannot fill it in.
    env = dict(os.environ, FUNCTIONS_WORKER_PROCESS_COUNT="")
    with _serving(env=env) as (port, proc):
        pids = await _pids(port, 6)
    assert pids == {proc.pid}


async def test_the_worker_count_comes_from_functions_worker_process_count() -> None:
    with _serving(env=dict(os.environ, FUNCTIONS_WORKER_PROCESS_COUNT="2")) as (port, proc):
        pids = await _pids_until(port, 2)
    assert len(pids) == 2 and proc.pid not in pids


@pytest.mark.parametrize("value", ["0", "11", "two"])
def test_a_bad_worker_count_stops_the_host_naming_it(value: str) -> None:
    env = dict(os.environ, FUNCTIONS_WORKER_PROCESS_COUNT=value)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devhost",
            "--port",
            str(free_port()),
            "--script",
            "tests/support/apps/pid_app.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        f"FUNCTIONS_WORKER_PROCESS_COUNT must be a whole number from 1 to 10, got {value!r}"
        in result.stderr
    )


def test_a_bad_workers_option_stops_the_host_naming_it() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devhost",
            "--port",
            str(free_port()),
            "--script",
            "tests/support/apps/pid_app.py",
            "--workers",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--workers must be a whole number from 1 to 10, got '0'" in result.stderr


def test_a_worker_that_cannot_start_stops_the_host_with_its_exit_code() -> None:
    env = dict(os.environ, MAX_DB_QPS="abc")
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--port", str(free_port()), "--workers", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MAX_DB_QPS" in result.stderr


def test_by_default_the_host_keeps_every_info_record_as_microsofts_worker_does() -> None:
    # The worker sets the root logger to INFO and forwards every record: the dev host
    # silences nothing, so an SDK request line the app does not quiet itself shows here too.
    port = free_port()
    proc = _start(port, script="tests/support/apps/logging_app.py")
    try:
        wait_for_port(port, timeout=30)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "loggingapp app record at info" in err
    assert "azure.core.pipeline.policies.http_logging_policy sdk record at info" in err
