"""The Elastic Premium plan and the function app on it.

Plan sizes, the burst ceiling and its regional limit (a burst above it fails the deployment
early), always-ready and pre-warmed instances, zone redundancy's three-instance floor, the
Python runtime and TLS, basic-auth publishing off, the azd service tag, and one Python worker
process per vCPU with an instance's read budgets split between its worker processes.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from app.settings import load_settings
from tests.support.bicep import (
    MAIN,
    ROOT,
    DeploymentFailure,
    Template,
    app_settings_for,
    decorators,
    dotted,
    function,
    module,
    module_call,
    parsed,
    resolve,
    resources_of,
    unquoted,
)


def test_plan_is_linux_elastic_premium_sized_by_parameter() -> None:
    app = module("function-app")
    (plan,) = resources_of(app, "Microsoft.Web/serverfarms")
    assert plan["kind"] == "elastic"
    assert plan["sku"]["tier"] == "ElasticPremium"
    assert plan["sku"]["name"] == "planSku"
    assert plan["properties"]["reserved"] is True
    assert plan["properties"]["maximumElasticWorkerCount"] == "maximumElasticWorkerCountChecked"
    assert plan["properties"]["zoneRedundant"] == "zoneRedundant"
    for doc in (app, parsed(MAIN)):
        plan_sku = doc["parameters"]["planSku"]
        assert decorators(plan_sku)["allowed"] == ["EP1", "EP2", "EP3"]
        assert plan_sku["default"] == "EP1"
    assert decorators(app["parameters"]["maximumElasticWorkerCount"])["max_value"] == 100


def _plan_burst(**values: Any) -> Any:
    """The maximum burst function-app.bicep writes on the plan, given its parameters."""
    app = module("function-app")
    (plan,) = resources_of(app, "Microsoft.Web/serverfarms")
    return resolve(plan["properties"]["maximumElasticWorkerCount"], Template(app, values))


def test_the_burst_ceiling_is_a_parameter_defaulting_to_the_common_regional_limit() -> None:
    # Linux Elastic Premium: 20 in many regions, 100 in others (functions-premium-plan).
    from app.settings import SETTINGS

    (spec,) = [s for s in SETTINGS if s.name == "SCALE_MAX_BURST_LIMIT"]
    for doc in (module("function-app"), parsed(MAIN)):
        limit = doc["parameters"]["maxBurstLimit"]
        assert limit["default"] == 20 == int(spec.default or "")
        assert (decorators(limit)["min_value"], decorators(limit)["max_value"]) == (1, 100)
    params = module_call(parsed(MAIN), "modules/function-app.bicep")["params"]
    assert params["maxBurstLimit"] == "maxBurstLimit"
    # The app reads the same number, and holds every schedule maxBurst to it.
    assert app_settings_for({})["SCALE_MAX_BURST_LIMIT"] == "20"
    assert app_settings_for({"maxBurstLimit": 100})["SCALE_MAX_BURST_LIMIT"] == "100"
    assert (
        load_settings(app_settings_for({"maxBurstLimit": 100})).scale.scale_max_burst_limit == 100
    )


@pytest.mark.parametrize(("burst", "limit"), [(20, 20), (1, 20), (60, 100), (100, 100)])
def test_a_burst_within_the_regions_limit_is_deployed(burst: int, limit: int) -> None:
    assert _plan_burst(maximumElasticWorkerCount=burst, maxBurstLimit=limit) == burst


@pytest.mark.parametrize(("burst", "limit"), [(21, 20), (60, 20), (100, 60)])
def test_a_burst_above_the_regions_limit_fails_the_deployment_early(burst: int, limit: int) -> None:
    with pytest.raises(DeploymentFailure, match="above maxBurstLimit"):
        _plan_burst(maximumElasticWorkerCount=burst, maxBurstLimit=limit)


def test_always_ready_and_pre_warmed_are_wired_to_parameters() -> None:
    app = module("function-app")
    (site,) = resources_of(app, "Microsoft.Web/sites")
    config = site["properties"]["siteConfig"]
    assert config["minimumElasticInstanceCount"] == "alwaysReadyChecked"
    assert config["preWarmedInstanceCount"] == "preWarmedInstanceCount"
    assert config["functionAppScaleLimit"] == "functionAppScaleLimit"
    (plan,) = resources_of(app, "Microsoft.Web/serverfarms")
    assert plan["sku"]["capacity"] == "alwaysReadyChecked"
    # main.bicep hands its own parameters straight to the module.
    params = module_call(parsed(MAIN), "modules/function-app.bicep")["params"]
    for name in (
        "alwaysReadyInstanceCount",
        "preWarmedInstanceCount",
        "functionAppScaleLimit",
        "maximumElasticWorkerCount",
        "zoneRedundant",
        "planSku",
    ):
        assert params[name] == name
        assert name in parsed(MAIN)["parameters"]


def test_zone_redundancy_requires_three_always_ready_instances() -> None:
    checked = module("function-app")["variables"]["alwaysReadyChecked"]["value"]
    op = checked["operator"]
    assert op["type"] == "conditional"
    condition = json.dumps(op["operands"]["condition"])
    assert '"zoneRedundant"' in condition and '"alwaysReadyInstanceCount"' in condition
    assert '"less_than"' in condition and '"operand_2": 3' in condition
    # The failing branch is int() of a message: an error ARM raises at validation time.
    failing = function(op["operands"]["true_value"], "int")
    assert failing is not None and "at least 3" in json.dumps(failing)
    assert op["operands"]["false_value"] == "alwaysReadyInstanceCount"


def test_function_app_is_python_313_https_only_with_a_system_identity() -> None:
    (site,) = resources_of(module("function-app"), "Microsoft.Web/sites")
    assert site["kind"] == "functionapp,linux"
    # Its own identity, plus the one that resolves Key Vault references only
    # (tests/bicep/test_lookup_key_secret.py).
    assert site["identity"]["type"] == "SystemAssigned, UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    config = props["siteConfig"]
    assert config["linuxFxVersion"] == "Python|3.13"
    assert config["minTlsVersion"] == "1.2"
    assert config["scmMinTlsVersion"] == "1.2"
    assert config["ftpsState"] == "Disabled"
    assert config["remoteDebuggingEnabled"] is False


def test_basic_auth_publishing_is_off() -> None:
    policies = resources_of(
        module("function-app"), "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    )
    assert sorted(p["name"] for p in policies) == ["ftp", "scm"]
    assert all(p["properties"]["allow"] is False for p in policies)


def test_each_function_app_carries_the_azd_service_tag_of_its_azure_yaml_service() -> None:
    azure_yaml = yaml.safe_load((ROOT / "azure.yaml").read_text())
    services = azure_yaml["services"]
    tagged = []
    for path in ("modules/function-app.bicep", "modules/operator-app.bicep"):
        (site,) = resources_of(parsed(ROOT / "bicep" / path), "Microsoft.Web/sites")
        tags = function(site["tags"], "union")
        assert tags is not None
        tag_objects = [v for v in tags.values() if isinstance(v, dict)]
        assert [unquoted(t) for t in tag_objects] == [{"azd-service-name": "azdServiceName"}]
        tagged.append(module_call(parsed(MAIN), path)["params"]["azdServiceName"])
    assert tagged == ["api", "operator"] == list(services)
    # One codebase: both services package the repository root, a Python function app.
    for service in services.values():
        assert (service["project"], service["language"], service["host"]) == (
            ".",
            "python",
            "function",
        )


@pytest.mark.parametrize("path", ["modules/function-app.bicep", "modules/operator-app.bicep"])
def test_both_apps_turn_off_the_runtime_admin_endpoints_and_are_hardened(path: str) -> None:
    (site,) = resources_of(parsed(ROOT / "bicep" / path), "Microsoft.Web/sites")
    props = site["properties"]
    assert props["functionsRuntimeAdminIsolationEnabled"] is True
    assert props["httpsOnly"] is True
    assert site["kind"] == "functionapp,linux"
    config = props["siteConfig"]
    assert config["linuxFxVersion"] == "Python|3.13"
    assert (config["minTlsVersion"], config["scmMinTlsVersion"]) == ("1.2", "1.2")
    assert config["ftpsState"] == "Disabled"
    assert config["remoteDebuggingEnabled"] is False
    policies = resources_of(
        parsed(ROOT / "bicep" / path), "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    )
    assert sorted(p["name"] for p in policies) == ["ftp", "scm"]
    assert all(p["properties"]["allow"] is False for p in policies)


def test_the_operator_app_runs_on_the_lookup_apps_plan_with_its_own_content_share() -> None:
    operator = module("operator-app")
    (site,) = resources_of(operator, "Microsoft.Web/sites")
    assert dotted(site["properties"]["serverFarmId"]) == "plan.id"
    plan = operator["resources"]["plan"]
    assert plan["existing"] and plan["config"]["name"] == "planName"
    assert resources_of(operator, "Microsoft.Web/serverfarms") == []
    main = parsed(MAIN)
    call = module_call(main, "modules/operator-app.bicep")["params"]
    assert dotted(call["planName"]) == "functionApp.outputs.planName"
    # Each app has its own host account and its own Azure Files content share in it: the
    # lookup app holds its account's key, and must reach neither the operator app's code
    # nor its host keys.
    lookup_share = module_call(main, "modules/function-app.bicep")["params"]["contentShareName"]
    assert call["contentShareName"] == "operatorContentShareName" != lookup_share
    host = main["modules"]["hostStorage"]["config"]["params"]
    assert host["fileShareNames"] == [lookup_share]
    operator_host = main["modules"]["operatorHostStorage"]["config"]["params"]
    assert operator_host["fileShareNames"] == ["operatorContentShareName"]
    assert dotted(call["hostStorageAccountName"]) == "operatorHostStorage.outputs.name"
    values = Template(main, {"environmentName": "prod"})
    shares = [
        function(main["variables"][name]["value"], "to_lower")
        for name in (lookup_share, "operatorContentShareName")
    ]
    assert [resolve(s["string_to_change"], values) for s in shares if s] == [
        "dipguard-prod-content",
        "dipguard-prod-operator-content",
    ]
    # It never bursts, and keeps three always-ready instances on a zone-redundant plan,
    # which keeps at least three instances for the lookup app anyway.
    config = site["properties"]["siteConfig"]
    assert config["minimumElasticInstanceCount"] == config["functionAppScaleLimit"] == "alwaysReady"
    assert resolve("alwaysReady", Template(operator, {"zoneRedundant": True})) == 3
    assert resolve("alwaysReady", Template(operator, {"zoneRedundant": False})) == 1
    assert config["preWarmedInstanceCount"] == 0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "1"),  # EP1 by default
        ({"planSku": "EP2"}, "2"),
        ({"planSku": "EP3"}, "4"),
        ({"planSku": "EP2", "workerProcessCount": 3}, "3"),
    ],
)
def test_one_python_worker_process_per_vcpu_unless_told(
    overrides: dict[str, Any], expected: str
) -> None:
    assert app_settings_for(overrides)["FUNCTIONS_WORKER_PROCESS_COUNT"] == expected


def test_every_plan_size_has_a_vcpu_count() -> None:
    main = parsed(MAIN)
    allowed = decorators(main["parameters"]["planSku"])["allowed"]
    assert sorted(main["variables"]["vcpusOfSku"]["value"]) == sorted(allowed)


@pytest.mark.parametrize(
    ("overrides", "local_qps", "inflight"),
    [
        ({}, "20", 16),  # EP1: one worker has it all, 2 x 200 reads/s x 40 ms
        ({"planSku": "EP2"}, "10", 8),
        ({"planSku": "EP3"}, "5", 4),
        ({"planSku": "EP2", "workerProcessCount": 3}, "6", 6),  # ceil(16 / 3)
        ({"planSku": "EP3", "localDbQpsPerInstance": 2}, "1", 4),  # never below one
        ({"planSku": "EP2", "maxDbQps": 400}, "10", 16),  # the cap follows the budget
    ],
)
def test_an_instances_read_budgets_are_split_between_its_worker_processes(
    overrides: dict[str, Any],
    local_qps: str,
    inflight: int,
) -> None:
    # Both are counted in each process: unsplit, more workers would multiply them. The
    # deployment splits LOCAL_DB_QPS; the app derives its in-flight cap from the budget and
    # the worker count the deployment sets, so MAX_INFLIGHT_DB_READS is left unset.
    settings = app_settings_for(overrides)
    assert settings["LOCAL_DB_QPS"] == local_qps
    assert "MAX_INFLIGHT_DB_READS" not in settings
    assert load_settings(settings).dip.inflight_cap == inflight


def test_an_operator_can_still_cap_in_flight_reads_through_app_tuning() -> None:
    settings = app_settings_for({"appTuning": {"MAX_INFLIGHT_DB_READS": "3"}})
    assert load_settings(settings).dip.inflight_cap == 3
    assert "maxInflightDbReadsPerInstance" not in parsed(MAIN)["parameters"]
