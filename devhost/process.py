"""Child-process hygiene shared by the dev host's supervisor and the benchmark."""

from __future__ import annotations

import ctypes
import signal
import sys

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when its parent dies, even by SIGKILL, so
    no child outlives the process that started it (and keeps a port, say). Linux only;
    elsewhere it does nothing.

    The signal follows the thread that started the child, so start children from a thread
    that lives as long as the parent.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
