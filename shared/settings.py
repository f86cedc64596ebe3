"""Every setting dipguard reads, parsed and validated once.

Settings come from the environment: ``local.settings.json`` ``Values`` locally, app
settings in Azure. A bad value fails at start-up with an error that names the setting,
because a typo found at 03:00 during a recall spike is a typo found too late.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEPLOYED_SETTINGS",
    "SETTINGS",
    "SettingSpec",
    "Settings",
    "SettingsError",
    "inflight_cap_for",
    "load_settings",
    "with_local_settings",
]


class SettingsError(ValueError):
    """A setting is missing or malformed. ``name`` is the setting at fault."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"setting {name}: {message}")
        self.name = name


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected a number from {lo} to {hi}, got {value}")
        return value

    return parse


def _optional_int(lo: int, hi: int) -> Callable[[str], int | None]:
    """A whole number, or nothing: the setting is then derived from others."""
    whole = _int(lo, hi)

    def parse(raw: str) -> int | None:
        return None if not raw.strip() else whole(raw)

    return parse


def _bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _text(raw: str) -> str:
    return raw.strip()


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


# DIP_LOG_LEVEL: the logging level of the per-dip line, None for no line.
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "off": None,
}


def _log_level(raw: str) -> int | None:
    value = raw.strip().lower()
    if value not in _LOG_LEVELS:
        raise ValueError(f"expected one of DEBUG, INFO, WARNING, OFF, got {raw!r}")
    return _LOG_LEVELS[value]


def _region(raw: str) -> str:
    # Imported here so importing settings stays cheap for the scale timer.
    import phonenumbers

    region = raw.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"expected an ISO 3166 region code such as US or GB, got {raw!r}")
    return region


def _redis_url(raw: str) -> str:
    url = raw.strip()
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis:// or rediss:// URL")
    return url


def _table_name(raw: str) -> str:
    name = raw.strip()
    # Table names: 3-63 alphanumerics, not starting with a digit.
    if not (3 <= len(name) <= 63 and name.isalnum() and name.isascii() and name[0].isalpha()):
        raise ValueError(f"expected 3-63 letters and digits starting with a letter, got {raw!r}")
    return name


@dataclass(frozen=True)
class SettingSpec[T]:
    """One setting: its name, its default text, how to parse it, and whether Bicep sets it."""

    name: str
    default: str | None
    parse: Callable[[str], T]
    doc: str
    deployed: bool = True


SETTINGS: tuple[SettingSpec[object], ...] = (
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
        _bool,
        "Redis runs the OSS cluster policy (Azure Managed Redis OSSCluster): "
        "connect cluster-aware. Bicep sets it from the clustering policy.",
    ),
    SettingSpec(
        "REDIS_TIMEOUT_MS",
        "100",
        _int(5, 2000),
        "Longest wait for one Redis command before it counts as a failure.",
    ),
    SettingSpec(
        "REDIS_BREAKER_FAILURES",
        "5",
        _int(1, 1000),
        "Consecutive Redis failures that open the circuit breaker.",
    ),
    SettingSpec(
        "REDIS_BREAKER_RESET_SECONDS",
        "5",
        _int(1, 600),
        "How long the breaker stays open before one trial call.",
    ),
    SettingSpec(
        "CUSTOMER_TABLE",
        "customers",
        _table_name,
        "Table Storage table that holds customers and phone numbers.",
    ),
    SettingSpec(
        "MAX_DB_QPS",
        "200",
        _int(1, 100_000),
        "Fleet-wide budget of Table reads in any 1-second sliding window.",
    ),
    SettingSpec(
        "LOCAL_DB_QPS",
        "20",
        _int(1, 100_000),
        "Read budget of each worker process while Redis is down (about MAX_DB_QPS / "
        "(instances x FUNCTIONS_WORKER_PROCESS_COUNT)).",
    ),
    SettingSpec(
        "MAX_INFLIGHT_DB_READS",
        "",
        _optional_int(1, 10_000),
        "Cap on Table reads in flight in each worker process; a read the valve admitted "
        "beyond it waits up to half of VALVE_GUARD_MS for a slot, then is shed (stale copy "
        "or degraded). Empty: derived by Little's law with twofold "
        "headroom, 2 x MAX_DB_QPS x DB_READ_LATENCY_MS / FUNCTIONS_WORKER_PROCESS_COUNT, "
        "so a healthy database never meets it and a slowing one is held back.",
        deployed=False,
    ),
    SettingSpec(
        "DB_READ_LATENCY_MS",
        "40",
        _int(1, 2000),
        "A healthy Table point read's latency, from which the in-flight cap is derived.",
    ),
    SettingSpec(
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "1",
        _int(1, 10),
        "The Functions host's setting: Python worker processes on each instance, each "
        "with its own event loop. Bicep sets one per vCPU of the plan size; the dev host "
        "honours it too (or --workers N).",
    ),
    SettingSpec(
        "VALVE_GUARD_MS",
        "100",
        _int(0, 500),
        "Added to the 1 s valve window so reads admitted a second apart still reach the "
        "database a second apart: a loaded instance can take tens of milliseconds "
        "between admitting a read and sending it. Costs about 9% of the read budget.",
    ),
    SettingSpec(
        "VALVE_PACE_SLICES",
        "10",
        _int(1, 100),
        "Slices of the valve window; each admits at most its share of the budget, so a "
        "log that starts empty (a restarted Redis) cannot admit it all at once. 1: unpaced.",
    ),
    SettingSpec(
        "CACHE_TTL_SECONDS",
        "60",
        _int(1, 86_400),
        "How long a cached answer is fresh and spends no database budget.",
    ),
    SettingSpec(
        "STALE_TTL_SECONDS",
        "86400",
        _int(1, 30 * 86_400),
        "How long a cached answer is kept to answer while shedding or failing.",
    ),
    SettingSpec(
        "NEGATIVE_TTL_SECONDS",
        "30",
        _int(1, 86_400),
        "How long an unknown caller is remembered as unknown.",
    ),
    SettingSpec(
        "HANDLER_DEADLINE_MS",
        "2500",
        _int(100, 2900),
        "Every dip answers within this many milliseconds, whatever the dependencies do.",
    ),
    SettingSpec(
        "DB_TIMEOUT_MS",
        "1500",
        _int(50, 2900),
        "Longest single Table read, further capped by what is left of the deadline.",
    ),
    SettingSpec(
        "DEGRADED_TIER",
        "Standard",
        _text,
        "Tier answered when the caller is unknown or neither the database nor the cache can say.",
    ),
    SettingSpec(
        "DEFAULT_REGION", "US", _region, "Region used to read national-format caller numbers."
    ),
    SettingSpec(
        "VALVE_MODE",
        "sliding",
        _choice("sliding", "off"),
        "sliding: the fleet-wide valve; off: no valve and no in-flight cap (benchmarks only).",
    ),
    SettingSpec(
        "DIP_LOG_LEVEL",
        "INFO",
        _log_level,
        "Level of the one log line per dip: DEBUG, INFO, WARNING or OFF. Application "
        "Insights samples log lines, so charts and alerts count the dipguard.* metrics "
        "instead. DEBUG (below what the worker and host.json pass on) or OFF keeps the "
        "line out of Application Insights and saves its CPU.",
    ),
    SettingSpec(
        "SCALE_TIMER_SCHEDULE", "0 */5 * * * *", _text, "NCRONTAB for the scale_schedule timer."
    ),
    SettingSpec(
        "SCALE_SCHEDULE",
        "",
        _text,
        "JSON day/night/high-risk schedule of always-ready and pre-warmed instances "
        "(docs/scale.md).",
    ),
    SettingSpec(
        "SCALE_DRY_RUN", "false", _bool, "Log what the scale timer would change and change nothing."
    ),
    SettingSpec(
        "SCALE_SYNC_PLAN_MINIMUM",
        "false",
        _bool,
        "Also keep the plan minimum (sku.capacity) in step with always-ready.",
    ),
    SettingSpec(
        "SCALE_ZONE_REDUNDANT",
        "false",
        _bool,
        "The plan is zone redundant, so always-ready may not go below 3.",
    ),
    # The bounds and default restate shared/scale/schedule.py's MAX_BURST_MAX and
    # MAX_BURST_LIMIT_DEFAULT (the common core does not import a wing);
    # tests/scale/test_schedule.py holds them equal.
    SettingSpec(
        "SCALE_MAX_BURST_LIMIT",
        "20",
        _int(1, 100),
        "The region's Linux Elastic Premium maximum burst: 20 in most regions, 100 in "
        "some (functions-premium-plan, region table). No schedule maxBurst may exceed "
        "it; Bicep sets it from maxBurstLimit.",
    ),
    SettingSpec(
        "ARM_ENDPOINT",
        "https://management.azure.com",
        _text,
        "Azure Resource Manager endpoint (sovereign clouds differ).",
    ),
    SettingSpec(
        "SCALE_SUBSCRIPTION_ID",
        "",
        _text,
        "Override: subscription of the app to scale (default from WEBSITE_OWNER_NAME).",
        deployed=False,
    ),
    SettingSpec(
        "SCALE_RESOURCE_GROUP",
        "",
        _text,
        "Override: resource group of the app (default WEBSITE_RESOURCE_GROUP).",
        deployed=False,
    ),
    SettingSpec(
        "SCALE_SITE_NAME",
        "",
        _text,
        "Override: the app to scale (default WEBSITE_SITE_NAME).",
        deployed=False,
    ),
    SettingSpec(
        "SCALE_PLAN_NAME",
        "",
        _text,
        "Override: the Premium plan (default read from the site).",
        deployed=False,
    ),
    SettingSpec(
        "SURGE_TABLE", "surges", _table_name, "Table Storage table that holds operator surges."
    ),
    SettingSpec(
        "WARM_TIMER_SCHEDULE",
        "0 30 4 * * *",
        _text,
        "NCRONTAB for the cache_warm timer, which fills the read model in bulk: off-peak, "
        "04:30 UTC by default.",
    ),
    SettingSpec(
        "WARM_DB_QPS",
        "",
        _optional_int(1, 100_000),
        "The warm's share of MAX_DB_QPS: table pages it may read in any 1-second window, "
        "and only while dips leave that much headroom. Empty: a quarter of MAX_DB_QPS.",
    ),
    SettingSpec(
        "READ_MODEL_MAX_AGE_SECONDS",
        "93600",
        _int(60, 30 * 86_400),
        "How long a complete warm stays authoritative and its entries fresh: a little "
        "over the warm period (26 h for a daily warm).",
    ),
    SettingSpec(
        "READ_MODEL_AUTHORITATIVE",
        "true",
        _bool,
        "A caller absent from a fresh, complete warm is answered as no customer, without "
        "a database read. Turn it off for tables that other systems write to.",
    ),
    SettingSpec(
        "SURGE_WARM_AFTER_SECONDS",
        "3600",
        _int(0, 30 * 86_400),
        "Starting a surge starts a warm when the last complete one is older than this "
        "(0: every surge).",
    ),
)

# Read from the same environment but owned by the platform or the storage connection: the
# settings page lists them beside dipguard's own.
OTHER_SETTINGS: tuple[tuple[str, str, bool, str], ...] = (
    ("CustomerStorage", "(local)", False, "Table Storage connection string, for Azurite."),
    (
        "CustomerStorage__tableServiceUri",
        "(Azure)",
        True,
        "Table endpoint, used with the app's managed identity instead of a connection string.",
    ),
)

# Settings Bicep must set on the function app; tests/bicep holds it to that.
DEPLOYED_SETTINGS: tuple[str, ...] = (
    *(s.name for s in SETTINGS if s.deployed),
    "CustomerStorage__tableServiceUri",
)


def inflight_cap_for(max_db_qps: float, read_latency_ms: float, workers: int) -> int:
    """Each worker process's share of the reads in flight at MAX_DB_QPS, doubled (Little's
    law; see Settings.inflight_cap). The capacity planner prints the same figure."""
    return max(1, math.ceil(2 * max_db_qps * read_latency_ms / 1000 / workers))


@dataclass(frozen=True)
class Settings:
    redis_url: str
    redis_cluster: bool
    redis_timeout_ms: int
    redis_breaker_failures: int
    redis_breaker_reset_seconds: int
    customer_table: str
    max_db_qps: int
    local_db_qps: int
    max_inflight_db_reads: int | None
    db_read_latency_ms: int
    functions_worker_process_count: int
    valve_guard_ms: int
    valve_pace_slices: int
    cache_ttl_seconds: int
    stale_ttl_seconds: int
    negative_ttl_seconds: int
    handler_deadline_ms: int
    db_timeout_ms: int
    degraded_tier: str
    default_region: str
    valve_mode: str
    dip_log_level: int | None
    scale_timer_schedule: str
    scale_schedule: str
    scale_dry_run: bool
    scale_sync_plan_minimum: bool
    scale_zone_redundant: bool
    scale_max_burst_limit: int
    arm_endpoint: str
    scale_subscription_id: str
    scale_resource_group: str
    scale_site_name: str
    scale_plan_name: str
    surge_table: str
    warm_timer_schedule: str
    warm_db_qps: int | None
    read_model_max_age_seconds: int
    read_model_authoritative: bool
    surge_warm_after_seconds: int
    # Exactly one of these is set: a connection string locally, an endpoint in Azure.
    storage_connection_string: str | None
    storage_table_uri: str | None

    @property
    def inflight_cap(self) -> int:
        """Table reads each worker process may have in flight (MAX_INFLIGHT_DB_READS).

        Little's law: reads in flight = rate x latency. The whole budget may land on one
        instance (always-ready can be 1), so each of its worker processes gets its share of
        MAX_DB_QPS x DB_READ_LATENCY_MS, doubled: a healthy database never meets the cap, and
        one whose latency has doubled is held at the budget instead of piling up.
        """
        if self.max_inflight_db_reads is not None:
            return self.max_inflight_db_reads
        return inflight_cap_for(
            self.max_db_qps, self.db_read_latency_ms, self.functions_worker_process_count
        )

    @property
    def warm_share(self) -> int:
        """Table pages per second the warm may read (WARM_DB_QPS, else a quarter of the
        budget; 0 when the budget is too small to share)."""
        if self.warm_db_qps is not None:
            return self.warm_db_qps
        return self.max_db_qps // 4


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


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every setting; raise SettingsError naming the first bad one."""
    source = os.environ if env is None else env
    values: dict[str, object] = {}
    for spec in SETTINGS:
        raw = source.get(spec.name, spec.default)
        if raw is None:
            raise SettingsError(spec.name, "is required")
        try:
            values[spec.name.lower()] = spec.parse(raw)
        except ValueError as exc:
            raise SettingsError(spec.name, str(exc)) from None

    conn = source.get("CustomerStorage", "").strip() or None
    uri = source.get("CustomerStorage__tableServiceUri", "").strip() or None
    if conn is None and uri is None:
        raise SettingsError(
            "CustomerStorage",
            "set CustomerStorage (a connection string) or CustomerStorage__tableServiceUri",
        )
    if uri is not None and not uri.startswith(("https://", "http://")):
        raise SettingsError("CustomerStorage__tableServiceUri", "expected an https:// URL")
    if conn is not None and "=" not in conn:
        raise SettingsError("CustomerStorage", "expected a connection string (Key=Value;...)")

    settings = Settings(
        storage_connection_string=conn,
        storage_table_uri=uri,
        **values,  # type: ignore[arg-type]
    )
    if settings.local_db_qps > settings.max_db_qps:
        raise SettingsError("LOCAL_DB_QPS", "must not exceed MAX_DB_QPS")
    if settings.stale_ttl_seconds < settings.cache_ttl_seconds:
        raise SettingsError("STALE_TTL_SECONDS", "must be at least CACHE_TTL_SECONDS")
    if settings.db_timeout_ms >= settings.handler_deadline_ms:
        raise SettingsError("DB_TIMEOUT_MS", "must be below HANDLER_DEADLINE_MS")
    if settings.warm_db_qps is not None and settings.warm_db_qps >= settings.max_db_qps:
        raise SettingsError(
            "WARM_DB_QPS",
            "must be below MAX_DB_QPS: the warm only takes a share, and dips keep the rest",
        )
    return settings


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_page() -> str:
    """docs/settings.md: every setting, its default and what it does, from the specs above."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated by `python -m shared.settings --out docs/settings.md` from the",
        "     SETTINGS specs in shared/settings.py; a test fails when the two differ. -->",
        "",
        "Read from the environment: `local.settings.json` `Values` locally (emulator values",
        "only, safe to commit), app settings in Azure. They are parsed and checked once, when",
        "the worker loads `function_app.py`; a bad value stops the app with an error naming",
        "the setting (`setting MAX_DB_QPS: expected a whole number, got 'abc'`).",
        "",
        "| setting | default | set by Bicep | meaning |",
        "|---|---|---|---|",
    ]
    for spec in SETTINGS:
        default = f"`{spec.default}`" if spec.default else "(empty)"
        lines.append(
            f"| `{spec.name}` | {default} | {'yes' if spec.deployed else 'no'} | "
            f"{_cell(spec.doc)} |"
        )
    for name, default, deployed, doc in OTHER_SETTINGS:
        lines.append(f"| `{name}` | {default} | {'yes' if deployed else 'no'} | {_cell(doc)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(
        prog="python -m shared.settings", description="Print the settings page (docs/settings.md)."
    )
    parser.add_argument("--out", type=Path, help="write the page to this file")
    args = parser.parse_args(argv)
    page = settings_page()
    if args.out is None:
        print(page, end="")
    else:
        args.out.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
