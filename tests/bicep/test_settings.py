"""Every setting the app reads is deployed, with values the app accepts.

Every name in app.settings.DEPLOYED_SETTINGS is set on the function apps (the lookup app's and
the operator app's settings are the same but for the functions each serves, its content share
and the scale timer's target) and no setting the app derives for itself is, the Functions host
gets its runtime and identity-based storage, the values deployed (by default and by each
environment) pass the app's own validation and, left to their defaults, are the code's
defaults, the gateway waits longer than the handler deadline, and the tuning defaults
main.bicep restates match the code's. The warm read model's settings are parameters: its
timer's schedule, its share of the read budget (a share the app would refuse fails the
deployment early), and whether a fresh warm may answer for absent callers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.settings import DEPLOYED_SETTINGS, load_settings
from shared.scale.schedule import parse_schedule
from shared.settings import SettingsError
from tests.support import bicep_model_check as mc
from tests.support.bicep import (
    MAIN,
    PARAM_FILES,
    ROOT,
    DeploymentFailure,
    Template,
    app_settings_for,
    decorators,
    default_of,
    deployment_values,
    dotted,
    function,
    literal_keys,
    module,
    module_call,
    parsed,
    policy,
    resolve,
    resources_of,
)

# Module outputs of the virtual network, shaped as Azure reports them: with private
# networking (prod.bicepparam) the apps' settings are worked out through them.
NETWORK_OUTPUTS = {
    "network.outputs.appSubnetResourceId": "/subscriptions/sub/resourceGroups/rg/providers"
    "/Microsoft.Network/virtualNetworks/vnet/subnets/apps",
    "network.outputs.privateEndpointSubnetResourceId": "/subscriptions/sub/resourceGroups/rg"
    "/providers/Microsoft.Network/virtualNetworks/vnet/subnets/endpoints",
    "network.outputs.privateDnsZoneResourceIds": {},
}
# Settings that differ between the two apps by design: which functions each serves, and the
# scale timer's target, which only the operator app runs.
ROLE_SETTINGS = {"DIPGUARD_FUNCTIONS": ("lookup", "operator"), "SCALE_SITE_NAME": None}


def _operator_setting_names() -> set[str]:
    operator = module("operator-app")
    (site,) = resources_of(operator, "Microsoft.Web/sites")
    app_settings = site["properties"]["siteConfig"]["appSettings"]
    assert function(app_settings["loop_type"]["detail"]["array_name"], "items") == {
        "arg_1": "appSettingsMap"
    }
    main = parsed(MAIN)
    passed = module_call(main, "modules/operator-app.bicep")["params"]["appSettings"]
    names = literal_keys("appSettingsMap", operator["variables"])
    return names | literal_keys(passed, main["variables"])


def _operator_app_settings(overrides: dict[str, object]) -> dict[str, str]:
    """The operator app's settings as the app reads them: the lookup app's (app_settings_for)
    but for what operator-app.bicep sets differently, resolved for the same parameters."""
    settings = app_settings_for({**NETWORK_OUTPUTS, **overrides})
    operator = module("operator-app")
    platform = operator["variables"]["platformSettings"]["value"]
    env = Template(operator, {"lookupSiteName": "func-dipguard-prod-lookup"})
    for name in ("DIPGUARD_FUNCTIONS", "SCALE_SITE_NAME", "FUNCTIONS_WORKER_PROCESS_COUNT"):
        settings[name] = str(resolve(platform[name], env))
    return settings


def _deployed_setting_names() -> set[str]:
    app = module("function-app")
    (site,) = resources_of(app, "Microsoft.Web/sites")
    app_settings = site["properties"]["siteConfig"]["appSettings"]
    # appSettings is a loop over items(appSettingsMap), with name = key, value = string(value).
    assert mc._is_loop(app_settings)
    source = app_settings["loop_type"]["detail"]["array_name"]
    assert function(source, "items") == {"arg_1": "appSettingsMap"}
    assert dotted(app_settings["config"]["name"]) == "setting.key"
    names = literal_keys("appSettingsMap", app["variables"])
    # The rest comes from main.bicep through the module's appSettings parameter.
    main = parsed(MAIN)
    passed = module_call(main, "modules/function-app.bicep")["params"]["appSettings"]
    return names | literal_keys(passed, main["variables"])


def test_every_setting_the_app_reads_is_set_by_the_bicep() -> None:
    missing = set(DEPLOYED_SETTINGS) - _operator_setting_names()
    assert not missing, f"add these app settings to operator-app.bicep: {sorted(missing)}"
    # The lookup app runs no scale timer, so it has no target to name.
    missing = set(DEPLOYED_SETTINGS) - {"SCALE_SITE_NAME"} - _deployed_setting_names()
    assert not missing, f"add these app settings to function-app.bicep: {sorted(missing)}"


def test_both_apps_get_the_same_settings_but_their_functions_share_and_scale_target() -> None:
    lookup = module("function-app")["variables"]
    operator = module("operator-app")["variables"]
    lookup_platform = lookup["platformSettings"]["value"]
    operator_platform = operator["platformSettings"]["value"]
    assert set(operator_platform) == set(lookup_platform) | {"SCALE_SITE_NAME"}
    different = {
        name
        for name in lookup_platform
        if json.dumps(lookup_platform[name]) != json.dumps(operator_platform[name])
    }
    # Each app its own functions and worker count (one process: a timer and a few calls).
    assert different == {"DIPGUARD_FUNCTIONS", "FUNCTIONS_WORKER_PROCESS_COUNT"}
    assert (lookup_platform["DIPGUARD_FUNCTIONS"], operator_platform["DIPGUARD_FUNCTIONS"]) == (
        "lookup",
        "operator",
    )
    assert operator_platform["SCALE_SITE_NAME"] == "lookupSiteName"
    assert json.dumps(lookup["rotationSettings"]) == json.dumps(operator["rotationSettings"])
    # main.bicep hands both modules the same values, but for what names each app.
    main = parsed(MAIN)
    lookup_call = module_call(main, "modules/function-app.bicep")["params"]
    operator_call = module_call(main, "modules/operator-app.bicep")["params"]
    # The operator app is named, and finds the lookup app's plan through it.
    # Each app has its own host storage account too.
    own = {
        "name",
        "azdServiceName",
        "contentShareName",
        "authClientId",
        "planName",
        "hostStorageAccountName",
    }
    shared = (set(lookup_call) & set(operator_call)) - own
    assert {"appSettings", "redisUrl", "lookupKeySecretUri", "scaleSchedule"} <= shared
    for name in shared:
        assert json.dumps(lookup_call[name]) == json.dumps(operator_call[name]), name
    assert dotted(operator_call["lookupSiteName"]) == "functionApp.outputs.name"
    assert dotted(lookup_call["hostStorageAccountName"]) == "hostStorage.outputs.name"
    assert dotted(operator_call["hostStorageAccountName"]) == "operatorHostStorage.outputs.name"
    # WEBSITE_CONTENTSHARE is set in both, to each app's own share (test_plan_and_app.py).
    assert lookup_platform["WEBSITE_CONTENTSHARE"] == operator_platform["WEBSITE_CONTENTSHARE"]


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_each_environment_deploys_operator_settings_the_app_accepts(path: Path) -> None:
    values = deployment_values(path)
    # In Azure, as App Service runs it: the operator app's own name, authentication on.
    settings = _operator_app_settings(values)
    azure = {
        **settings,
        "WEBSITE_SITE_NAME": "func-dipguard-prod-op",
        "WEBSITE_AUTH_ENABLED": "True",
    }
    loaded = load_settings(azure)
    assert loaded.functions == "operator"
    assert loaded.scale.scale_site_name == "func-dipguard-prod-lookup"
    assert loaded.scale.principal_trusted
    lookup = load_settings({**app_settings_for({**NETWORK_OUTPUTS, **values})})
    assert lookup.functions == "lookup"


def test_settings_the_app_derives_or_finds_itself_are_not_deployed() -> None:
    # MAX_INFLIGHT_DB_READS among them: set, it would override the app's own derivation from
    # MAX_DB_QPS, DB_READ_LATENCY_MS and FUNCTIONS_WORKER_PROCESS_COUNT.
    from app.settings import SETTINGS

    undeployed = {spec.name for spec in SETTINGS if not spec.deployed}
    assert "MAX_INFLIGHT_DB_READS" in undeployed
    assert "SURGE_TRUST_LOCAL_PRINCIPAL" in undeployed
    for deployed in (_deployed_setting_names(), _operator_setting_names()):
        assert not undeployed & deployed, f"bicep/ sets: {sorted(undeployed & deployed)}"


def test_the_functions_host_gets_its_runtime_and_identity_based_storage() -> None:
    names = _deployed_setting_names()
    assert {
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTSHARE",
    } <= names
    assert "AzureWebJobsStorage" not in names  # no connection string for host storage
    platform = module("function-app")["variables"]["platformSettings"]["value"]
    assert platform["FUNCTIONS_EXTENSION_VERSION"] == "~4"
    assert platform["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    assert platform["REDIS_URL"] == "redisUrl"
    main = parsed(MAIN)
    params = module_call(main, "modules/function-app.bicep")["params"]
    assert dotted(params["redisUrl"]) == "redis.outputs.url"


def test_deployed_values_pass_the_apps_own_settings_validation() -> None:
    settings = load_settings(app_settings_for({}))
    assert settings.dip.handler_deadline_ms == 2500
    assert settings.core.customer_table == "customers"
    assert settings.core.surge_table == "surges"
    assert settings.core.storage_table_uri is not None


def test_left_to_their_defaults_the_parameters_deploy_the_codes_defaults() -> None:
    """Parameter defaults (warmTimerSchedule, maxDbQps...) as well as main.bicep's literals."""
    from app.settings import SETTINGS

    # What only the deployment knows: where Redis is, the schedule made of the parameters, and
    # the lookup key secret (a Key Vault reference, tests/bicep/test_lookup_key_secret.py).
    supplied = {"REDIS_URL", "SCALE_SCHEDULE", "LOOKUP_KEY_SECRET", *ROLE_SETTINGS}
    deployed = app_settings_for({})
    for spec in SETTINGS:
        if not spec.deployed or spec.name in supplied:
            continue
        assert spec.default is not None
        assert spec.parse(deployed[spec.name]) == spec.parse(spec.default), spec.name


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_each_environment_deploys_settings_the_app_accepts(path: Path) -> None:
    values = deployment_values(path)
    settings = load_settings(app_settings_for({**NETWORK_OUTPUTS, **values}))
    assert settings.scale.scale_zone_redundant is bool(values.get("zoneRedundant", False))
    assert settings.scale.scale_max_burst_limit == values.get("maxBurstLimit", 20)
    # The schedule as deployed passes the scale timer's own check, against the deployed limit.
    parse_schedule(
        settings.scale.scale_schedule,
        zone_redundant=settings.scale.scale_zone_redundant,
        max_burst_limit=settings.scale.scale_max_burst_limit,
    )


def test_a_bad_tuning_value_would_be_caught() -> None:
    with pytest.raises(SettingsError, match="DB_TIMEOUT_MS"):
        load_settings(app_settings_for({"appTuning": {"DB_TIMEOUT_MS": "2600"}}))


def test_the_gateway_waits_longer_than_the_handler_deadline() -> None:
    main = parsed(MAIN)
    deadline_max = decorators(main["parameters"]["handlerDeadlineMs"])["max_value"]
    timeout = int(policy().find("./backend/limit-concurrency/forward-request").get("timeout-ms"))  # type: ignore[union-attr,arg-type]
    assert default_of(main, "handlerDeadlineMs") < deadline_max < timeout


def test_tuning_defaults_in_main_bicep_match_the_code_defaults() -> None:
    """main.bicep restates the specs' defaults (app.settings.SETTINGS); a literal that drifts
    fails here."""
    from app.settings import SETTINGS

    text = (ROOT / "bicep" / "main.bicep").read_text(encoding="utf-8")
    block = re.search(r"var tuningDefaults = \{(.*?)\n\}", text, re.DOTALL)
    assert block is not None
    literals = dict(re.findall(r"^\s+([A-Z_]+): '([^']*)'", block.group(1), re.MULTILINE))
    defaults = {spec.name: spec.default for spec in SETTINGS}
    assert literals, "no literal tuning values found"
    for name, value in literals.items():
        assert defaults[name] == value, f"{name}: main.bicep {value}, code {defaults[name]}"


def test_the_warm_timer_schedule_is_an_off_peak_parameter_the_host_can_read() -> None:
    from app.settings import SETTINGS

    (spec,) = [s for s in SETTINGS if s.name == "WARM_TIMER_SCHEDULE"]
    main, app = parsed(MAIN), module("function-app")
    for doc in (main, app):
        assert default_of(doc, "warmTimerSchedule") == spec.default
        description = decorators(doc["parameters"]["warmTimerSchedule"])["description"]
        assert "off-peak" in description and "UTC" in description
        assert "WEBSITE_TIME_ZONE" in description
    # A binding (%WARM_TIMER_SCHEDULE%): the module sets it with the host's own settings,
    # whatever appSettings holds.
    assert app["variables"]["platformSettings"]["value"]["WARM_TIMER_SCHEDULE"] == (
        "warmTimerSchedule"
    )
    params = module_call(main, "modules/function-app.bicep")["params"]
    assert params["warmTimerSchedule"] == "warmTimerSchedule"
    deployed = app_settings_for({"warmTimerSchedule": "0 15 2 * * *"})
    assert load_settings(deployed).dip.warm_timer_schedule == "0 15 2 * * *"


@pytest.mark.parametrize(
    ("overrides", "setting", "share"),
    [
        ({}, "", 50),  # a quarter of the default 200
        ({"maxDbQps": 400}, "", 100),
        ({"warmDbQps": 30}, "30", 30),
        ({"maxDbQps": 400, "warmDbQps": 399}, "399", 399),
    ],
)
def test_the_warm_takes_an_optional_share_of_the_read_budget(
    overrides: dict[str, int], setting: str, share: int
) -> None:
    deployed = app_settings_for(overrides)
    assert deployed["WARM_DB_QPS"] == setting
    assert load_settings(deployed).dip.warm_share == share


@pytest.mark.parametrize(
    "overrides", [{"warmDbQps": 200}, {"warmDbQps": 500}, {"maxDbQps": 50, "warmDbQps": 50}]
)
def test_a_warm_share_the_app_would_refuse_fails_the_deployment_early(
    overrides: dict[str, int],
) -> None:
    # The app would refuse it at start-up (SettingsError), and so answer no dip at all.
    with pytest.raises(DeploymentFailure, match="below maxDbQps"):
        app_settings_for(overrides)


def test_whether_a_fresh_warm_answers_for_absent_callers_is_a_parameter() -> None:
    main = parsed(MAIN)
    assert default_of(main, "readModelAuthoritative") is True
    description = decorators(main["parameters"]["readModelAuthoritative"])["description"]
    assert "Turn it off when other systems write the customer table" in description
    assert load_settings(app_settings_for({})).dip.read_model_authoritative is True
    deployed = app_settings_for({"readModelAuthoritative": False})
    assert load_settings(deployed).dip.read_model_authoritative is False
