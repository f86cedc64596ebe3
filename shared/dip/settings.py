"""The dip's settings: its budget, valve, cache, deadline, answers and the read model's warm.

Specs only this wing reads; the composition root (app/settings.py) loads them with the
others at start-up and hands the dip a DipSettings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.dip.keys import LOCAL_SECRET, MIN_SECRET_CHARS, parse_secret
from shared.settings import (
    SettingsError,
    SettingSpec,
    boolean,
    choice,
    load_specs,
    optional_whole,
    text,
    whole,
)

__all__ = ["DIP_SETTINGS", "DipSettings", "inflight_cap_for", "load_dip_settings"]

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
    # Imported here so loading the settings stays cheap for the scale timer.
    import phonenumbers

    region = raw.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"expected an ISO 3166 region code such as US or GB, got {raw!r}")
    return region


def _previous_secret(raw: str) -> bytes | None:
    return None if not raw.strip() else parse_secret(raw)


DIP_SETTINGS: tuple[SettingSpec[object], ...] = (
    SettingSpec(
        "LOOKUP_KEY_SECRET",
        None,
        parse_secret,
        f"The secret of the keyed hash every Redis key and Table key holds instead of a "
        f"number or customer id (at least {MIN_SECRET_CHARS} characters). In Azure, a Key "
        "Vault reference; locally, a published development value. See docs/privacy.md.",
    ),
    SettingSpec(
        "LOOKUP_KEY_SECRET_PREVIOUS",
        "",
        _previous_secret,
        "Set only while a rotation reloads the table under a new LOOKUP_KEY_SECRET: the "
        "secret before it, which dips also try (docs/privacy.md).",
        deployed=False,
    ),
    SettingSpec(
        "REDIS_BREAKER_FAILURES",
        "5",
        whole(1, 1000),
        "Consecutive Redis failures that open the circuit breaker.",
    ),
    SettingSpec(
        "REDIS_BREAKER_RESET_SECONDS",
        "5",
        whole(1, 600),
        "How long the breaker stays open before one trial call.",
    ),
    SettingSpec(
        "MAX_DB_QPS",
        "200",
        whole(1, 100_000),
        "Fleet-wide budget of Table reads in any 1-second sliding window.",
    ),
    SettingSpec(
        "LOCAL_DB_QPS",
        "20",
        whole(1, 100_000),
        "Read budget of each worker process while Redis is down (about MAX_DB_QPS / "
        "(instances x FUNCTIONS_WORKER_PROCESS_COUNT)).",
    ),
    SettingSpec(
        "MAX_INFLIGHT_DB_READS",
        "",
        optional_whole(1, 10_000),
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
        whole(1, 2000),
        "A healthy Table point read's latency, from which the in-flight cap is derived.",
    ),
    SettingSpec(
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "1",
        whole(1, 10),
        "The Functions host's setting: Python worker processes on each instance, each "
        "with its own event loop. Bicep sets one per vCPU of the plan size; the dev host "
        "honours it too (or --workers N).",
    ),
    SettingSpec(
        "VALVE_GUARD_MS",
        "100",
        whole(0, 500),
        "Added to the 1 s valve window so reads admitted a second apart still reach the "
        "database a second apart: a loaded instance can take tens of milliseconds "
        "between admitting a read and sending it. Costs about 9% of the read budget.",
    ),
    SettingSpec(
        "VALVE_PACE_SLICES",
        "10",
        whole(1, 100),
        "Slices of the valve window; each admits at most its share of the budget, so a "
        "log that starts empty (a restarted Redis) cannot admit it all at once. 1: unpaced.",
    ),
    SettingSpec(
        "CACHE_TTL_SECONDS",
        "60",
        whole(1, 86_400),
        "How long a cached answer is fresh and spends no database budget.",
    ),
    SettingSpec(
        "STALE_TTL_SECONDS",
        "86400",
        whole(1, 30 * 86_400),
        "How long a cached answer is kept to answer while shedding or failing.",
    ),
    SettingSpec(
        "NEGATIVE_TTL_SECONDS",
        "30",
        whole(1, 86_400),
        "How long an unknown caller is remembered as unknown.",
    ),
    SettingSpec(
        "HANDLER_DEADLINE_MS",
        "2500",
        whole(100, 2900),
        "Every dip answers within this many milliseconds, whatever the dependencies do.",
    ),
    SettingSpec(
        "DB_TIMEOUT_MS",
        "1500",
        whole(50, 2900),
        "Longest single Table read, further capped by what is left of the deadline.",
    ),
    SettingSpec(
        "DEGRADED_TIER",
        "Standard",
        text,
        "Tier answered when the caller is unknown or neither the database nor the cache can say.",
    ),
    SettingSpec(
        "DEFAULT_REGION", "US", _region, "Region used to read national-format caller numbers."
    ),
    SettingSpec(
        "VALVE_MODE",
        "sliding",
        choice("sliding", "off"),
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
        "WARM_TIMER_SCHEDULE",
        "0 30 4 * * *",
        text,
        "NCRONTAB for the cache_warm timer, which fills the read model in bulk: off-peak, "
        "04:30 UTC by default.",
    ),
    SettingSpec(
        "WARM_DB_QPS",
        "",
        optional_whole(1, 100_000),
        "The warm's share of MAX_DB_QPS: table pages it may read in any 1-second window, "
        "and only while dips leave that much headroom. Empty: a quarter of MAX_DB_QPS.",
    ),
    SettingSpec(
        "READ_MODEL_MAX_AGE_SECONDS",
        "93600",
        whole(60, 30 * 86_400),
        "How long a complete warm stays authoritative and its entries fresh: a little "
        "over the warm period (26 h for a daily warm).",
    ),
    SettingSpec(
        "READ_MODEL_AUTHORITATIVE",
        "true",
        boolean,
        "A caller absent from a fresh, complete warm is answered as no customer, without "
        "a database read. Turn it off for tables that other systems write to.",
    ),
    SettingSpec(
        "SURGE_WARM_AFTER_SECONDS",
        "3600",
        whole(0, 30 * 86_400),
        "Starting a surge starts a warm when the last complete one is older than this "
        "(0: every surge).",
    ),
)


def inflight_cap_for(max_db_qps: float, read_latency_ms: float, workers: int) -> int:
    """Each worker process's share of the reads in flight at MAX_DB_QPS, doubled (Little's
    law; see DipSettings.inflight_cap). The capacity planner prints the same figure."""
    return max(1, math.ceil(2 * max_db_qps * read_latency_ms / 1000 / workers))


@dataclass(frozen=True)
class DipSettings:
    """The dip's settings, one field per DIP_SETTINGS spec."""

    redis_breaker_failures: int
    redis_breaker_reset_seconds: int
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
    lookup_key_secret: bytes = field(repr=False)
    lookup_key_secret_previous: bytes | None = field(repr=False)
    degraded_tier: str
    default_region: str
    valve_mode: str
    dip_log_level: int | None
    warm_timer_schedule: str
    warm_db_qps: int | None
    read_model_max_age_seconds: int
    read_model_authoritative: bool
    surge_warm_after_seconds: int

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


def load_dip_settings(env: Mapping[str, str]) -> DipSettings:
    """The dip's settings from ``env``; raise SettingsError naming the first bad one, or
    the one to change when two disagree."""
    settings = load_specs(DipSettings, DIP_SETTINGS, env)
    if env.get("WEBSITE_SITE_NAME") and settings.lookup_key_secret == LOCAL_SECRET.encode():
        # App Service sets WEBSITE_SITE_NAME on every app it runs.
        raise SettingsError(
            "LOOKUP_KEY_SECRET", "is the published local development value; Azure needs its own"
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
