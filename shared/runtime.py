"""The worker's one-per-process state: settings parsed once, clients created lazily.

function_app.py reaches everything through ``runtime()``, so tests can build a Runtime
of their own from explicit settings and never patch module globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.clients import Clients
from shared.settings import Settings, load_settings

__all__ = ["Runtime", "runtime", "set_runtime"]


@dataclass
class Runtime:
    settings: Settings
    clients: Clients = field(init=False)

    def __post_init__(self) -> None:
        self.clients = Clients(self.settings)


_current: Runtime | None = None


def runtime() -> Runtime:
    """The process's Runtime, built from the environment on first use."""
    global _current
    if _current is None:
        _current = Runtime(load_settings())
    return _current


def set_runtime(value: Runtime | None) -> None:
    """Install a Runtime (tests, the dev host) or forget it so the next call rebuilds."""
    global _current
    _current = value
