"""The scale schedule's settings: the schedule, the plan's limits, the app to scale, and
whom the surge switch believes.

Specs only this wing reads; the composition root (app/settings.py) loads them with the
others at start-up and hands the scale wing a ScaleSettings. The burst limit's bounds and
default are shared/scale/schedule.py's own constants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

from shared.scale.schedule import MAX_BURST_LIMIT_DEFAULT, MAX_BURST_MAX
from shared.settings import SettingsError, SettingSpec, boolean, load_specs, text, whole

__all__ = ["AUTH_ENABLED", "SCALE_SETTINGS", "ScaleSettings", "load_scale_settings"]

# Set by App Service in an app with App Service Authentication on ("Environment variables
# and app settings in Azure App Service", ms.date 09/14/2023: "Injected into a Windows or
# Linux app to indicate whether App Service authentication is enabled"); "True" when on.
AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"

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
        "The app to scale: in the operator app, the lookup app's name, which the operator "
        "app's start-up requires in Azure (default WEBSITE_SITE_NAME, the app itself, "
        "which is what a single host serving every function scales).",
    ),
    SettingSpec(
        "SCALE_PLAN_NAME",
        "",
        text,
        "Override: the Premium plan (default read from the site).",
        deployed=False,
    ),
    SettingSpec(
        "SURGE_TRUST_LOCAL_PRINCIPAL",
        "false",
        boolean,
        "Local only: believe X-MS-CLIENT-PRINCIPAL headers without App Service "
        "Authentication, so the surge switch can be tried on the dev host with the headers "
        "it sets. An app in Azure (WEBSITE_SITE_NAME set) refuses to start with it on.",
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
    surge_trust_local_principal: bool
    # WEBSITE_AUTH_ENABLED: App Service Authentication stands in front of this app.
    app_service_auth: bool

    @property
    def principal_trusted(self) -> bool:
        """Whether the surge switch may believe the X-MS-CLIENT-PRINCIPAL headers."""
        return self.app_service_auth or self.surge_trust_local_principal


def load_scale_settings(env: Mapping[str, str]) -> ScaleSettings:
    """The scale wing's settings from ``env``; raise SettingsError naming the first bad one.
    SCALE_SCHEDULE itself is checked by shared.scale.tick.check_schedule, which logs a bad
    one and never stops start-up."""
    auth = env.get(AUTH_ENABLED, "").strip().lower() == "true"
    settings = load_specs(partial(ScaleSettings, app_service_auth=auth), SCALE_SETTINGS, env)
    if settings.surge_trust_local_principal and env.get("WEBSITE_SITE_NAME", "").strip():
        raise SettingsError(
            "SURGE_TRUST_LOCAL_PRINCIPAL",
            "is for the dev host only and is refused in Azure (WEBSITE_SITE_NAME is set): "
            "operators reach the surge switch through App Service Authentication",
        )
    return settings
