"""The benchmark's processes: its own redis-server, Azurite, the database proxy, the app.

Redis, Azurite and port helpers come from ``tests.support.services``. Each process here is
started by the benchmark and stopped by it, by its own handle, never by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import aiohttp

from devhost.process import die_with_parent
from tests.support.services import (
    AZURITE_CONNECTION_STRING,
    Azurite,
    free_port,
    port_open,
    wait_for_port,
)
from tests.support.services import RedisServer as _RedisServer

__all__ = [
    "ROOT",
    "AppProcess",
    "Azurite",
    "ProxyProcess",
    "RedisServer",
    "children_of",
    "cpu_seconds",
    "free_port",
    "listen_overflows",
    "listener_pid",
    "machine_busy",
    "port_open",
    "process_children",
    "table_connection_string",
    "tcp_rows",
    "tree_cpu_seconds",
    "wait_for_port",
]

ROOT = Path(__file__).resolve().parents[1]


class RedisServer(_RedisServer):
    """The benchmark's own redis-server, which goes away with the benchmark.

    Children are started from the main thread only: the parent-death signal follows the
    thread that started the child, and a worker thread may end first.
    """

    def spawn(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )

    def start(self) -> None:
        self.spawn()
        wait_for_port(self.port)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # Fields 14 and 15 of stat (utime, stime), counted after the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_children() -> dict[int, list[int]]:
    """Every process's children, by parent pid (Linux /proc): one pass over /proc."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(proc.name))
    return children


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    return process_children().get(pid, [])


def tree_cpu_seconds(pid: int | None, children: dict[int, list[int]] | None = None) -> float | None:
    """CPU seconds of a process and every process below it (a dev host and its workers).
    ``children``: a ``process_children()`` taken once for several trees."""
    own = cpu_seconds(pid)
    if pid is None or own is None:
        return own
    children = process_children() if children is None else children
    total, todo = own, list(children.get(pid, []))
    while todo:
        child = todo.pop()
        total += cpu_seconds(child) or 0.0
        todo.extend(children.get(child, []))
    return total


def tcp_rows() -> Iterator[list[str]]:
    """Every TCP socket's row of /proc/net/tcp and tcp6, split into columns: 1 the local
    address, 2 the remote one (each ending in the port in hex), 3 the state, 9 the inode."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            yield row.split()


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on the port: one per process with SO_REUSEPORT."""
    # State 0A is LISTEN.
    return {cols[9] for cols in tcp_rows() if cols[3] == "0A" and cols[1].endswith(f":{port:04X}")}


def socket_inode(fd_target: str) -> str | None:
    """The inode of a socket as /proc/<pid>/fd/<n> links to it ("socket:[123]"), else None."""
    return fd_target[8:-1] if fd_target.startswith("socket:[") else None


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:port, if this user can see it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if socket_inode(os.readlink(fd)) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


def listen_overflows() -> int:
    """Connections the kernel dropped because a listen backlog was full (all sockets)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def machine_busy(stat: str | None = None) -> tuple[float, float, float]:
    """(busy, total, stolen) CPU seconds of the whole machine since boot, all cores together,
    from /proc/stat (or ``stat``, its text).

    Stolen is time a virtual machine's CPUs were ready to run but the hypervisor ran someone
    else; it is not part of busy. On a shared host it shows up in every latency tail.
    """
    text = Path("/proc/stat").read_text() if stat is None else stat
    values = [int(x) for x in text.splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    idle = values[3] + values[4]
    steal = values[7] if len(values) > 7 else 0
    total = sum(values[:8])
    return (total - idle - steal) / tick, total / tick, steal / tick


def table_connection_string(port: int) -> str:
    """An Azurite connection string whose table endpoint is ``127.0.0.1:port``."""
    return AZURITE_CONNECTION_STRING.format(port=port)


class _Child:
    """A Python child process with its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def spawn(self) -> None:
        self._log = self.log_path.open("wb")  # one run per log
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, *self.argv],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    def wait(self, port: int, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
                )
            if port_open(port):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen on {port} within {timeout} s")

    def start(self, port: int, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait(port, timeout)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


class AppProcess(_Child):
    """The dev host serving one function app script with one variant's settings, in
    ``workers`` worker processes (FUNCTIONS_WORKER_PROCESS_COUNT)."""

    def __init__(
        self, script: str, port: int, env: dict[str, str], log_path: Path, workers: int = 1
    ) -> None:
        super().__init__(
            f"devhost({script})",
            [
                "-m",
                "devhost",
                "--port",
                str(port),
                "--script",
                script,
                "--log-level",
                "WARNING",
                "--workers",
                str(workers),
            ],
            log_path,
            env,
        )
        self.port = port
        self.workers = workers

    def wait(self, port: int, timeout: float = 30.0) -> None:
        """Until every worker listens: the port opens with the first, and connections made
        before the others listen would all stay with it."""
        deadline = time.monotonic() + timeout
        super().wait(port, timeout)
        while len(_listening_inodes(port)) < self.workers:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.name}: fewer than {self.workers} workers listen on "
                    f"{port} after {timeout} s; see {self.log_path}"
                )
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/lookup"


class ProxyProcess(_Child):
    """``bench.dbproxy`` with control helpers."""

    def __init__(
        self, port: int, upstream_port: int, slots: int, service_ms: float, log_path: Path
    ) -> None:
        super().__init__(
            "dbproxy",
            [
                "-m",
                "bench.dbproxy",
                "--port",
                str(port),
                "--upstream",
                f"http://127.0.0.1:{upstream_port}",
                "--slots",
                str(slots),
                "--service-ms",
                str(service_ms),
            ],
            log_path,
        )
        self.port = port

    def _url(self, action: str) -> str:
        return f"http://127.0.0.1:{self.port}/__dbproxy/{action}"

    async def set_mode(self, session: aiohttp.ClientSession, mode: str) -> float:
        async with session.post(self._url("mode"), json={"mode": mode}) as resp:
            resp.raise_for_status()
            return float((await resp.json())["at"])

    async def reset(self, session: aiohttp.ClientSession) -> None:
        async with session.post(self._url("reset")) as resp:
            resp.raise_for_status()

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(self._url("stats")) as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data
