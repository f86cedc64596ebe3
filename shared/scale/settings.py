"""The scale schedule's settings: the schedule, the plan's limits and the app to scale.

Specs only this wing reads; the composition root (app/settings.py) loads them with the
others at start-up and hands the scale wing a ScaleSettings. The burst limit's bounds and
default are shared/scale/schedule.py's own constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shared.scale.schedule import MAX_BURST_LIMIT_DEFAULT, MAX_BURST_MAX
from shared.settings import SettingSpec, boolean, load_specs, text, whole

__all__ = ["SCALE_SETTINGS", "ScaleSettings", "load_scale_settings"]

SCALE_SETTINGS: tuple[SettingSpec[object], ...] = (
    SettingSpec(
        "SCALE_TIMER_SCHEDULE", "0 */5 * * * *", text, "NCRONTAB for the scale_schedule timer."
    ),
    SettingSpec(
        "SCALE_SCHEDULE",
        "",
        text,
        "JSON day/night/high-risk schedule of always-ready and pre-warmed instances "
        "(docs/scale.md).",
    ),
    SettingSpec(
        "SCALE_DRY_RUN",
        "false",
        boolean,
        "Log what the scale timer would change and change nothing.",
    ),
    SettingSpec(
        "SCALE_SYNC_PLAN_MINIMUM",
        "false",
        boolean,
        "Also keep the plan minimum (sku.capacity) in step with always-ready.",
    ),
    SettingSpec(
        "SCALE_ZONE_REDUNDANT",
        "false",
        boolean,
        "The plan is zone redundant, so always-ready may not go below 3.",
    ),
    SettingSpec(
        "SCALE_MAX_BURST_LIMIT",
        str(MAX_BURST_LIMIT_DEFAULT),
        whole(1, MAX_BURST_MAX),
        "The region's Linux Elastic Premium maximum burst: "
        f"{MAX_BURST_LIMIT_DEFAULT} in most regions, {MAX_BURST_MAX} in "
        "some (functions-premium-plan, region table). No schedule maxBurst may exceed "
        "it; Bicep sets it from maxBurstLimit.",
    ),
    SettingSpec(
        "ARM_ENDPOINT",
        "https://management.azure.com",
        text,
        "Azure Resource Manager endpoint (sovereign clouds differ).",
    ),
    SettingSpec(
        "SCALE_SUBSCRIPTION_ID",
        "",
        text,
        "Override: subscription of the app to scale (default from WEBSITE_OWNER_NAME).",
        deployed=False,
    ),
    SettingSpec(
        "SCALE_RESOURCE_GROUP",
        "",
        text,
        "Override: resource group of the app (default WEBSITE_RESOURCE_GROUP).",
        deployed=False,
    ),
    SettingSpec(
        "SCALE_SITE_NAME",
        "",
        text,
        "Override: the app to scale (default WEBSITE_SITE_NAME).",
        deployed=False,
    ),
    SettingSpec(
        "SCALE_PLAN_NAME",
        "",
        text,
        "Override: the Premium plan (default read from the site).",
        deployed=False,
    ),
)


@dataclass(frozen=True)
class ScaleSettings:
    """The scale wing's settings, one field per SCALE_SETTINGS spec."""

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


def load_scale_settings(env: Mapping[str, str]) -> ScaleSettings:
    """The scale wing's settings from ``env``; raise SettingsError naming the first bad one.
    SCALE_SCHEDULE itself is checked by shared.scale.tick.check_schedule, which logs a bad
    one and never stops start-up."""
    return load_specs(ScaleSettings, SCALE_SETTINGS, env)
