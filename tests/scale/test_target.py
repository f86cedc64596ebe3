"""Which app and plan a tick scales: the variables Azure sets, or the SCALE_ overrides."""

from __future__ import annotations

import pytest

from shared.scale.target import Target, TargetError, resolve_target
from tests.support.fake_arm import SUBSCRIPTION
from tests.support.ticks import APP_ENV, make_settings


def test_target_comes_from_the_variables_azure_sets() -> None:
    target = resolve_target(make_settings(), APP_ENV)
    assert target == Target(SUBSCRIPTION, "rg-dip", "dip-app", "")


def test_target_overrides_win_over_the_environment() -> None:
    settings = make_settings(
        SCALE_SUBSCRIPTION_ID="sub-x",
        SCALE_RESOURCE_GROUP="rg-x",
        SCALE_SITE_NAME="app-x",
        SCALE_PLAN_NAME="plan-x",
    )
    assert resolve_target(settings, APP_ENV) == Target("sub-x", "rg-x", "app-x", "plan-x")


@pytest.mark.parametrize(
    "missing", ["WEBSITE_OWNER_NAME", "WEBSITE_RESOURCE_GROUP", "WEBSITE_SITE_NAME"]
)
def test_missing_target_names_the_setting_to_set(missing: str) -> None:
    env = {k: v for k, v in APP_ENV.items() if k != missing}
    with pytest.raises(TargetError) as caught:
        resolve_target(make_settings(), env)
    assert caught.value.name.startswith("SCALE_")
