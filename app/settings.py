"""Every setting dipguard reads: the core's and both wings', combined and loaded once.

The specs live with what reads them (shared/settings.py for the core, shared/dip/settings.py,
shared/scale/settings.py); this module puts them together, and owns the one setting of the
composition root itself: DIPGUARD_FUNCTIONS, which functions this app serves.
function_app.py loads them when the host imports it, through app.runtime.runtime(), so a
bad value stops start-up with an error naming the setting.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.dip.keys import LOCAL_SECRET
from shared.dip.settings import DIP_SETTINGS, DipSettings, load_dip_settings
from shared.scale.settings import (
    AUTH_ENABLED,
    SCALE_SETTINGS,
    ScaleSettings,
    load_scale_settings,
)
from shared.settings import (
    CORE_SETTINGS,
    STORAGE_SETTINGS,
    CoreSettings,
    SettingsError,
    SettingSpec,
    choice,
    load_core_settings,
    load_specs,
)

__all__ = [
    "APP_SETTINGS",
    "DEPLOYED_SETTINGS",
    "FUNCTION_SETS",
    "SECTIONS",
    "SETTINGS",
    "Section",
    "Settings",
    "load_settings",
]

# The function sets DIPGUARD_FUNCTIONS chooses from (function_app.py registers them): the
# lookup app serves the dip, the operator app the scale timer and the surge switch, and
# "all" is one host serving every function, as the dev host does.
FUNCTION_SETS = ("lookup", "operator", "all")

APP_SETTINGS: tuple[SettingSpec[object], ...] = (
    SettingSpec(
        "DIPGUARD_FUNCTIONS",
        "all",
        choice(*FUNCTION_SETS),
        "Which functions this app serves: lookup (ivr_lookup, health, warmup, cache_warm), "
        "operator (surge, scale_schedule, health) or all (every function, one host: the "
        "dev host). Bicep sets lookup on the lookup app and operator on the operator app.",
    ),
)


@dataclass(frozen=True)
class Section:
    """One owner's settings, as the settings page lists them."""

    title: str
    owner: str
    specs: tuple[SettingSpec[object], ...]
    # Read outside the specs: (name, default, set by Bicep, meaning).
    others: tuple[tuple[str, str, bool, str], ...] = ()


SECTIONS: tuple[Section, ...] = (
    Section("The function apps", "app/settings.py", APP_SETTINGS),
    Section("Redis and Table Storage", "shared/settings.py", CORE_SETTINGS, STORAGE_SETTINGS),
    Section("The dip", "shared/dip/settings.py", DIP_SETTINGS),
    Section(
        "The scale schedule and the surge switch",
        "shared/scale/settings.py",
        SCALE_SETTINGS,
        (
            (
                AUTH_ENABLED,
                "(App Service)",
                False,
                "Set by App Service when App Service Authentication is on; only then does "
                "the surge switch believe the X-MS-CLIENT-PRINCIPAL header.",
            ),
        ),
    ),
)

SETTINGS: tuple[SettingSpec[object], ...] = tuple(spec for s in SECTIONS for spec in s.specs)

# Settings Bicep must set on the function app; tests/bicep holds it to that.
DEPLOYED_SETTINGS: tuple[str, ...] = tuple(
    name
    for section in SECTIONS
    for name, deployed in (
        *((spec.name, spec.deployed) for spec in section.specs),
        *((other[0], other[2]) for other in section.others),
    )
    if deployed
)


@dataclass(frozen=True)
class Settings:
    """All of them, by owner: each wing is handed only its own part."""

    core: CoreSettings
    dip: DipSettings
    scale: ScaleSettings
    # DIPGUARD_FUNCTIONS: lookup, operator or all.
    functions: str = "all"


@dataclass(frozen=True)
class _AppSettings:
    dipguard_functions: str


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every setting; raise SettingsError naming the first bad one."""
    source = os.environ if env is None else env
    functions = load_specs(_AppSettings, APP_SETTINGS, source).dipguard_functions
    settings = Settings(
        core=load_core_settings(source),
        dip=load_dip_settings(source),
        scale=load_scale_settings(source),
        functions=functions,
    )
    _check_scale_target(settings, source)
    _check_local_secret(settings)
    if (
        source.get("WEBSITE_SITE_NAME", "").strip()
        and not source.get("DIPGUARD_FUNCTIONS", "").strip()
    ):
        # In Azure an app serves one side only: a lookup app that fell back to "all" would
        # open the surge switch and run the scale timer with an identity made for dips.
        raise SettingsError(
            "DIPGUARD_FUNCTIONS", "must be set in Azure: lookup or operator (Bicep sets it)"
        )
    return settings


def _local_storage(core: CoreSettings) -> bool:
    """Whether the customer table is a storage emulator on this machine (Azurite)."""
    conn = (core.storage_connection_string or "").lower().replace(" ", "")
    if not conn:
        return False
    if "usedevelopmentstorage=true" in conn:
        return True
    endpoints = re.findall(r"tableendpoint=([^;]+)", conn)
    return bool(endpoints) and all(
        urlsplit(e).hostname in {"127.0.0.1", "localhost", "::1"} for e in endpoints
    )


def _check_local_secret(settings: Settings) -> None:
    """The published local secret hashes keys only for a local emulator: keys it made in a
    real table could be reversed by anyone who has read the repository. This also stops the
    loader, which reads local.settings.json for what the environment does not set, from
    writing a real table with it."""
    if _local_storage(settings.core):
        return
    local = LOCAL_SECRET.encode()
    for name, value in (
        ("LOOKUP_KEY_SECRET", settings.dip.lookup_key_secret),
        ("LOOKUP_KEY_SECRET_PREVIOUS", settings.dip.lookup_key_secret_previous),
    ):
        if value == local:
            raise SettingsError(
                name,
                "is the published local development value, which only a local storage "
                "emulator may use: set the deployment's secret (docs/privacy.md)",
            )


def _check_scale_target(settings: Settings, env: Mapping[str, str]) -> None:
    """In Azure, the operator app scales the lookup app, never itself: without
    SCALE_SITE_NAME its scale timer would move the operator app's always-ready instead."""
    own = env.get("WEBSITE_SITE_NAME", "").strip()
    if settings.functions != "operator" or not own:
        return
    target = settings.scale.scale_site_name
    if not target:
        raise SettingsError(
            "SCALE_SITE_NAME",
            "the operator app scales the lookup app: set it to the lookup app's name",
        )
    if target.lower() == own.lower():
        raise SettingsError(
            "SCALE_SITE_NAME",
            "names the operator app itself; set it to the lookup app's name",
        )
