"""Which app the scale timer scales: the SCALE_* overrides, else what Azure sets in the app."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.scale.settings import ScaleSettings

__all__ = ["Target", "TargetError", "resolve_target"]


class TargetError(ValueError):
    """The app to scale cannot be worked out; ``name`` is the variable to set."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Target:
    subscription_id: str
    resource_group: str
    site_name: str
    # Empty: read it from the site's serverFarmId.
    plan_name: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "subscription": self.subscription_id,
            "resourceGroup": self.resource_group,
            "site": self.site_name,
            "plan": self.plan_name,
        }


def resolve_target(settings: ScaleSettings, env: Mapping[str, str] | None = None) -> Target:
    """The app to scale: the SCALE_* overrides, else the variables Azure sets in the app."""
    source = os.environ if env is None else env
    owner = source.get("WEBSITE_OWNER_NAME", "").strip()
    # WEBSITE_OWNER_NAME is "<subscription id>+<resource group>-<region>webspace".
    subscription = settings.scale_subscription_id or owner.partition("+")[0].strip()
    resource_group = settings.scale_resource_group or source.get("WEBSITE_RESOURCE_GROUP", "")
    site = settings.scale_site_name or source.get("WEBSITE_SITE_NAME", "")
    if not subscription:
        raise TargetError(
            "SCALE_SUBSCRIPTION_ID", "not set, and WEBSITE_OWNER_NAME does not give a subscription"
        )
    if not resource_group.strip():
        raise TargetError("SCALE_RESOURCE_GROUP", "not set, and WEBSITE_RESOURCE_GROUP is empty")
    if not site.strip():
        raise TargetError("SCALE_SITE_NAME", "not set, and WEBSITE_SITE_NAME is empty")
    return Target(subscription, resource_group.strip(), site.strip(), settings.scale_plan_name)
