"""The settings machinery and the core's own settings.

Settings come from the environment: ``local.settings.json`` ``Values`` locally, app
settings in Azure. A bad value fails at start-up with an error that names the setting,
because a typo found at 03:00 during a recall spike is a typo found too late.

Each wing owns its settings (shared/dip/settings.py, shared/scale/settings.py) as
SettingSpecs built from the parsers here; the core owns those of what both wings stand on:
Redis, Table Storage and the tables. The composition root (app/settings.py) combines them
and loads them all once, at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

__all__ = [
    "CORE_SETTINGS",
    "STORAGE_SETTINGS",
    "CoreSettings",
    "SettingSpec",
    "SettingsError",
    "boolean",
    "choice",
    "load_core_settings",
    "load_specs",
    "optional_whole",
    "table_name",
    "text",
    "whole",
    "with_local_settings",
]


class SettingsError(ValueError):
    """A setting is missing or malformed. ``name`` is the setting at fault."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"setting {name}: {message}")
        self.name = name


# --- parsers: each reads one raw value or raises ValueError saying what it expected ---


def whole(lo: int, hi: int) -> Callable[[str], int]:
    """A whole number from ``lo`` to ``hi``."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected a number from {lo} to {hi}, got {value}")
        return value

    return parse


def optional_whole(lo: int, hi: int) -> Callable[[str], int | None]:
    """A whole number, or nothing: the setting is then derived from others."""
    parse_whole = whole(lo, hi)

    def parse(raw: str) -> int | None:
        return None if not raw.strip() else parse_whole(raw)

    return parse


def boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def text(raw: str) -> str:
    return raw.strip()


def choice(*choices: str) -> Callable[[str], str]:
    """One of ``choices``, in any case."""

    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def table_name(raw: str) -> str:
    name = raw.strip()
    # Table names: 3-63 alphanumerics, not starting with a digit.
    if not (3 <= len(name) <= 63 and name.isalnum() and name.isascii() and name[0].isalpha()):
        raise ValueError(f"expected 3-63 letters and digits starting with a letter, got {raw!r}")
    return name


def _redis_url(raw: str) -> str:
    url = raw.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis:// or rediss:// URL")
    return url


@dataclass(frozen=True)
class SettingSpec[T]:
    """One setting: its name, its default text, how to parse it, and whether Bicep sets it.

    Its value lands in the settings object's field of the same name in lower case
    (``MAX_DB_QPS`` in ``max_db_qps``).
    """

    name: str
    default: str | None
    parse: Callable[[str], T]
    doc: str
    deployed: bool = True


def load_specs[S](
    build: Callable[..., S], specs: tuple[SettingSpec[object], ...], env: Mapping[str, str]
) -> S:
    """Parse every spec from ``env`` (its default when unset) and pass the values to
    ``build`` by field name; raise SettingsError naming the first bad one."""
    values: dict[str, object] = {}
    for spec in specs:
        raw = env.get(spec.name, spec.default)
        if raw is None:
            raise SettingsError(spec.name, "is required")
        try:
            values[spec.name.lower()] = spec.parse(raw)
        except ValueError as exc:
            raise SettingsError(spec.name, str(exc)) from None
    return build(**values)


CORE_SETTINGS: tuple[SettingSpec[object], ...] = (
    SettingSpec(
        "REDIS_URL",
        "redis://127.0.0.1:6379/0",
        _redis_url,
        "Redis for the valve and cache. rediss:// without a password uses Entra ID "
        "(redis-entraid).",
    ),
    SettingSpec(
        "REDIS_CLUSTER",
        "false",
        boolean,
        "Redis runs the OSS cluster policy (Azure Managed Redis OSSCluster): "
        "connect cluster-aware. Bicep sets it from the clustering policy.",
    ),
    SettingSpec(
        "REDIS_TIMEOUT_MS",
        "100",
        whole(5, 2000),
        "Longest wait for one Redis command before it counts as a failure.",
    ),
    SettingSpec(
        "CUSTOMER_TABLE",
        "customers",
        table_name,
        "Table Storage table that holds customers and phone numbers.",
    ),
    SettingSpec(
        "SURGE_TABLE", "surges", table_name, "Table Storage table that holds operator surges."
    ),
)

# How the app reaches Table Storage: exactly one of the two, checked by load_core_settings
# rather than by a spec. Rows of the settings page: (name, default, set by Bicep, meaning).
STORAGE_SETTINGS: tuple[tuple[str, str, bool, str], ...] = (
    ("CustomerStorage", "(local)", False, "Table Storage connection string, for Azurite."),
    (
        "CustomerStorage__tableServiceUri",
        "(Azure)",
        True,
        "Table endpoint, used with the app's managed identity instead of a connection string.",
    ),
)


@dataclass(frozen=True)
class CoreSettings:
    """What the core's clients need: where Redis and Table Storage are, and the tables."""

    redis_url: str
    redis_cluster: bool
    redis_timeout_ms: int
    customer_table: str
    surge_table: str
    # Exactly one of these is set: a connection string locally, an endpoint in Azure.
    storage_connection_string: str | None
    storage_table_uri: str | None


def load_core_settings(env: Mapping[str, str]) -> CoreSettings:
    """The core's settings from ``env``; raise SettingsError naming the first bad one."""
    conn = env.get("CustomerStorage", "").strip() or None
    uri = env.get("CustomerStorage__tableServiceUri", "").strip() or None
    settings = load_specs(
        partial(CoreSettings, storage_connection_string=conn, storage_table_uri=uri),
        CORE_SETTINGS,
        env,
    )
    if conn is None and uri is None:
        raise SettingsError(
            "CustomerStorage",
            "set CustomerStorage (a connection string) or CustomerStorage__tableServiceUri",
        )
    if uri is not None and not uri.startswith(("https://", "http://")):
        raise SettingsError("CustomerStorage__tableServiceUri", "expected an https:// URL")
    if conn is not None and "=" not in conn:
        raise SettingsError("CustomerStorage", "expected a connection string (Key=Value;...)")
    return settings


def with_local_settings(
    path: str = "local.settings.json", env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment, plus local.settings.json ``Values`` for names it does not set.

    This is how ``func start`` reads local settings; command-line tools (the loader, the
    schedule preview, the dev host) use it so they see what the app sees.
    """
    import json
    from pathlib import Path

    merged = dict(os.environ if env is None else env)
    file = Path(path)
    if file.exists():
        values = json.loads(file.read_text(encoding="utf-8")).get("Values", {})
        for name, value in values.items():
            merged.setdefault(name, str(value))
    return merged
