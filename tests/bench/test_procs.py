"""The benchmark's CPU accounting: the machine's time split into busy, stolen and idle, and
a process counted together with the processes below it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.procs import cpu_seconds, machine_busy, tree_cpu_seconds

TICK = os.sysconf("SC_CLK_TCK")


def test_stolen_time_is_reported_apart_from_busy_time() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice, in ticks
    stat = "cpu  100 0 50 800 20 0 10 30 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    busy, total, stolen = machine_busy(stat)
    assert stolen == pytest.approx(30 / TICK)
    assert busy == pytest.approx((100 + 50 + 10) / TICK)  # idle, iowait and steal left out
    assert total == pytest.approx((100 + 50 + 800 + 20 + 10 + 30) / TICK)  # guest is in user


def test_a_kernel_without_a_steal_column_reports_none_stolen() -> None:
    busy, total, stolen = machine_busy("cpu  100 0 50 800 20 0 10\n")
    assert stolen == 0.0
    assert busy == pytest.approx(160 / TICK) and total == pytest.approx(980 / TICK)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_a_process_tree_counts_its_childrens_cpu() -> None:
    # A parent that only waits, and a child that burns CPU until told to stop.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys\n"
            "subprocess.run([sys.executable, '-c', "
            "'import time\\nend = time.process_time() + 0.5\\n"
            "while time.process_time() < end: pass\\ntime.sleep(30)'])",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        tree = 0.0
        while time.monotonic() < deadline:
            tree = tree_cpu_seconds(parent.pid) or 0.0
            if tree >= 0.45:
                break
            time.sleep(0.1)
        own = cpu_seconds(parent.pid) or 0.0
    finally:
        # The child first: once the parent is gone, its child no longer names it as parent.
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait(timeout=10)
    assert tree >= 0.45
    assert own < 0.45  # the parent itself only waited: the rest is its child's
