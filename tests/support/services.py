"""Real local services for the tests and the benchmarks: redis-server and Azurite.

Each is reused when already listening, otherwise started here and stopped at the end.
scripts/setup.sh installs the binaries; these helpers only find and run them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    """A redis-server of the test's own, which a test may stop and start again."""

    def __init__(self, port: int | None = None, extra_args: list[str] | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        # More configuration, such as a memory limit and an eviction policy.
        self.extra_args = list(extra_args or [])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
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
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        deadline = time.monotonic() + 5
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)


def azurite_binary() -> str:
    env = os.environ.get("AZURITE_BIN")
    if env:
        return env
    local = ROOT / ".tools" / "node_modules" / ".bin" / "azurite-table"
    if local.exists():
        return str(local)
    found = shutil.which("azurite-table")
    if found:
        return found
    raise RuntimeError("azurite-table not found: run scripts/test, which installs it")


class Azurite:
    """Azurite's Table service, in memory, reused if one already listens on the port."""

    def __init__(self, port: int = 10002) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def connection_string(self) -> str:
        return AZURITE_CONNECTION_STRING.format(port=self.port)

    def start(self) -> None:
        if port_open(self.port):
            return
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        self.proc = subprocess.Popen(
            [
                azurite_binary(),
                "--tablePort",
                str(self.port),
                "--tableHost",
                "127.0.0.1",
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--loose",
            ],
            cwd=self._workdir.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free and below 65536 too."""
    import random

    ports: list[int] = []
    candidates = random.sample(range(20000, 30000), 2000)
    for port in candidates:
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError("no free ports for a test Redis cluster")


class RedisClusterServers:
    """Three redis-server nodes joined as an OSS cluster (16384 slots, no replicas)."""

    def __init__(self, nodes: int = 3) -> None:
        self.ports = cluster_ports(nodes)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="redis-cluster-")
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        for port in self.ports:
            self.procs.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        f"nodes-{port}.conf",
                        "--protected-mode",
                        "no",
                    ],
                    cwd=self._workdir.name,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            wait_for_port(port)
        cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = subprocess.run(
                [cli, "-p", str(self.ports[0]), "cluster", "info"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            if "cluster_state:ok" in info:
                return
            time.sleep(0.1)
        raise RuntimeError("the test Redis cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)
        self.procs.clear()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
