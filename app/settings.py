"""Every setting dipguard reads: the core's and both wings', combined and loaded once.

The specs live with what reads them (shared/settings.py for the core, shared/dip/settings.py,
shared/scale/settings.py); this module puts them together. function_app.py loads them
when the host imports it, through app.runtime.runtime(), so a bad value stops start-up
with an error naming the setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.dip.settings import DIP_SETTINGS, DipSettings, load_dip_settings
from shared.scale.settings import SCALE_SETTINGS, ScaleSettings, load_scale_settings
from shared.settings import (
    CORE_SETTINGS,
    STORAGE_SETTINGS,
    CoreSettings,
    SettingSpec,
    load_core_settings,
)

__all__ = ["DEPLOYED_SETTINGS", "SECTIONS", "SETTINGS", "Section", "Settings", "load_settings"]


@dataclass(frozen=True)
class Section:
    """One owner's settings, as the settings page lists them."""

    title: str
    owner: str
    specs: tuple[SettingSpec[object], ...]
    # Read outside the specs: (name, default, set by Bicep, meaning).
    others: tuple[tuple[str, str, bool, str], ...] = ()


SECTIONS: tuple[Section, ...] = (
    Section("Redis and Table Storage", "shared/settings.py", CORE_SETTINGS, STORAGE_SETTINGS),
    Section("The dip", "shared/dip/settings.py", DIP_SETTINGS),
    Section("The scale schedule", "shared/scale/settings.py", SCALE_SETTINGS),
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


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Parse and validate every setting; raise SettingsError naming the first bad one."""
    source = os.environ if env is None else env
    return Settings(
        core=load_core_settings(source),
        dip=load_dip_settings(source),
        scale=load_scale_settings(source),
    )
