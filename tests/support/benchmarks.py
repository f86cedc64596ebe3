"""A benchmark run as a user runs it: ``python -m bench.<name>`` from the repository root."""

from __future__ import annotations

import subprocess
import sys

from tests.support.services import ROOT


def run_python(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
