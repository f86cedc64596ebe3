"""The Bicep deployment, validated offline.

The Bicep CLI cannot run here, so the deployment is held to account in layers:

1. every .bicep file parses with pycep-parser (a real Bicep grammar);
2. every resource body matches the azure-mgmt-* SDK model of its type
   (tests/bicep_model_check.py), and the checker is shown to catch mistakes;
3. the knobs the service depends on are asserted one by one;
4. checkov finds nothing it is not told, inline and with a reason, to skip;
5. the API Management policy XML is well-formed and says what the docs promise.

Plus: every setting the app reads is set by the Bicep (shared.settings.DEPLOYED_SETTINGS),
the values deployed pass the app's own validation, and the parameter files, azure.yaml and
the CI workflow agree with main.bicep.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import ChainMap
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.scale.schedule import parse_schedule
from shared.settings import DEPLOYED_SETTINGS, SettingsError, load_settings
from tests.support import bicep_model_check as mc

ROOT = Path(__file__).resolve().parents[1]
BICEP = ROOT / "bicep"
MAIN = BICEP / "main.bicep"
MODULES = BICEP / "modules"
POLICY = BICEP / "policies" / "lookup-api.xml"
BICEP_FILES = sorted(BICEP.rglob("*.bicep"))
PARAM_FILES = sorted(BICEP.glob("*.bicepparam"))

# Built-in role definition IDs the deployment must grant.
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"
WEB_PLAN_CONTRIBUTOR = "2cc479cb-7b4d-49a8-b449-8c00fd0f0a4b"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"


# --- helpers over pycep's JSON -----------------------------------------------------------------


@cache
def parsed(path: Path) -> dict[str, Any]:
    doc = mc.parse_bicep(path)
    # pycep leaves out sections a file does not have.
    for section in ("metadata", "parameters", "variables", "resources", "modules", "outputs"):
        doc.setdefault(section, {})
    return doc


def module(name: str) -> dict[str, Any]:
    return parsed(MODULES / f"{name}.bicep")


def resources_of(doc: Mapping[str, Any], rtype: str) -> list[dict[str, Any]]:
    """Bodies (conditions and loops stripped) of the declared resources of one type."""
    return [
        mc._unwrap_resource_body(res["config"])
        for res in doc["resources"].values()
        if res["type"].lower() == rtype.lower() and not res["existing"]
    ]


def resource(doc: Mapping[str, Any], symbol: str) -> dict[str, Any]:
    return mc._unwrap_resource_body(doc["resources"][symbol]["config"])  # type: ignore[no-any-return]


def decorators(param: Mapping[str, Any]) -> dict[str, Any]:
    # @secure() takes no argument: present means True.
    return {d["type"]: d.get("argument", True) for d in param["decorators"]}


def dotted(value: Any) -> str | None:
    """'a.b.c' for an identifier or a chain of property accessors; None otherwise."""
    if isinstance(value, str):
        return value
    if mc._is_expression(value) and "operator" in value:
        op = value["operator"]
        if op["type"] == "property_accessor":
            left, right = dotted(op["operands"]["operand_1"]), dotted(op["operands"]["operand_2"])
            if left is not None and right is not None:
                return f"{left}.{right}"
    return None


def function(value: Any, name: str) -> dict[str, Any] | None:
    """The parameters of a call to ``name`` (pycep's snake_case type), else None."""
    if mc._is_expression(value) and "function" in value and value["function"]["type"] == name:
        return value["function"]["parameters"]  # type: ignore[no-any-return]
    return None


def walk(value: Any) -> Iterator[Any]:
    """Every value nested anywhere inside ``value``, itself included."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def literal_keys(value: Any, variables: Mapping[str, Any]) -> set[str]:
    """Keys of an object literal, following variables and union(...) arguments."""
    if isinstance(value, str) and value in variables:
        return literal_keys(variables[value]["value"], variables)
    union = function(value, "union")
    if union is not None:
        return set().union(*(literal_keys(arg, variables) for arg in union.values()))
    if isinstance(value, dict) and not mc._is_expression(value) and not mc._is_loop(value):
        return {mc.unquote(key) for key in value}
    return set()


def unquoted(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {mc.unquote(key): value for key, value in obj.items()}


def module_call(doc: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The body of the one call of a module, its `if (...)` condition stripped."""
    calls = [mc._unwrap_resource_body(m["config"]) for m in doc["modules"].values()
             if m["detail"]["path"] == path]
    assert len(calls) == 1, f"expected one call of {path}"
    return calls[0]  # type: ignore[no-any-return]


def module_condition(doc: Mapping[str, Any], path: str) -> Any:
    """The `if (...)` condition of the one call of a module, or None."""
    (config,) = [m["config"] for m in doc["modules"].values() if m["detail"]["path"] == path]
    return config["condition"] if set(config) == {"condition", "config"} else None


def default_of(doc: Mapping[str, Any], param: str) -> Any:
    return doc["parameters"][param]["default"]


def role_assignments(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(role GUID or variable, scope symbol, principal) for each role assignment."""
    out = []
    variables = doc.get("variables") or {}
    for body in resources_of(doc, "Microsoft.Authorization/roleAssignments"):
        props = body["properties"]
        role_args = function(props["roleDefinitionId"], "subscription_resource_id") or {}
        role = next((v for k, v in role_args.items() if k.startswith("resource_name")), None)
        if isinstance(role, str) and role in variables:
            role = variables[role]["value"]
        out.append({"role": role, "scope": body.get("scope"), "principal": props["principalId"]})
    return out


# --- 1. every file parses ----------------------------------------------------------------------


def test_the_deployment_has_a_main_template_and_local_modules() -> None:
    assert MAIN in BICEP_FILES
    names = {p.name for p in MODULES.glob("*.bicep")}
    assert {"function-app.bicep", "storage.bicep", "redis.bicep", "apim.bicep",
            "apim-api.bicep", "key-vault.bicep", "monitoring.bicep", "alerts.bicep",
            "app-access.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(BICEP)))
def test_bicep_file_parses_with_the_bicep_grammar(path: Path) -> None:
    doc = parsed(path)
    assert doc["resources"] or doc["modules"], f"{path.name} declares nothing"


def test_the_grammar_rejects_broken_bicep() -> None:
    broken = "resource site 'Microsoft.Web/sites@2024-11-01' = {\n  name: 'x'\n  kind: 'it''s'\n}\n"
    with pytest.raises(Exception, match="Unexpected"):
        mc._parser().parse(text=broken)


def test_modules_are_local_and_exist() -> None:
    for path in BICEP_FILES:
        for call in (parsed(path).get("modules") or {}).values():
            assert call["type"] == "local", "registry modules cannot be restored offline"
            assert (path.parent / call["detail"]["path"]).is_file()


# --- 2. every resource against its SDK model -----------------------------------------------------


def test_every_resource_matches_its_azure_sdk_model() -> None:
    findings = [str(f) for path in BICEP_FILES for f in mc.check_file(path, parsed(path))]
    assert findings == []


def test_every_declared_resource_type_has_an_sdk_model() -> None:
    checked = {
        res.type.lower()
        for path in BICEP_FILES
        for res in mc.iter_resources(path, parsed(path))
        if not res.existing
    }
    assert len(checked) >= 20
    assert checked <= set(mc.RESOURCE_MODELS)


def _findings(bicep: str) -> list[tuple[str, str]]:
    doc = mc._parser().parse(text=bicep)
    (res,) = doc["resources"].values()
    return mc.check_resource(res["type"], mc._unwrap_resource_body(res["config"]))


def test_model_check_reports_a_misspelt_property() -> None:
    problems = _findings(
        "resource site 'Microsoft.Web/sites@2024-11-01' = {\n"
        "  name: 'x'\n  location: 'westeurope'\n"
        "  properties: {\n    httpsOnly: true\n    siteConfig: {\n"
        "      minimumElasticInstancesCount: 3\n    }\n  }\n}\n"
    )
    assert problems == [(
        "properties.siteConfig.minimumElasticInstancesCount",
        "unknown property for SiteConfig (did you mean 'minimumElasticInstanceCount'?)",
    )]


def test_model_check_reports_a_property_at_the_wrong_level() -> None:
    # maximumElasticWorkerCount belongs to properties, not to sku.
    problems = _findings(
        "resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {\n"
        "  name: 'p'\n  location: 'westeurope'\n"
        "  sku: {\n    name: 'EP1'\n    maximumElasticWorkerCount: 20\n  }\n}\n"
    )
    assert [p for p, _ in problems] == ["sku.maximumElasticWorkerCount"]


def test_model_check_reports_wrong_case_read_only_and_wrong_shape() -> None:
    problems = dict(_findings(
        "resource redis 'Microsoft.Cache/redisEnterprise@2025-07-01' = {\n"
        "  name: 'r'\n  location: 'westeurope'\n  sku: {\n    name: 'Balanced_B0'\n  }\n"
        "  properties: {\n    MinimumTlsVersion: '1.2'\n    hostName: 'x'\n"
        "    highAvailability: {\n      enabled: true\n    }\n  }\n}\n"
    ))
    assert "case-sensitive" in problems["properties.MinimumTlsVersion"]
    assert "read-only" in problems["properties.hostName"]
    assert "an object is given" in problems["properties.highAvailability"]


def test_model_check_looks_inside_loops_and_conditions() -> None:
    problems = _findings(
        "resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for p in ps: {\n"
        "  name: guid(p)\n"
        "  properties: cond ? {\n    principalId: p\n    roleDefinitionId: 'r'\n  } : {\n"
        "    principalID: p\n    roleDefinitionId: 'r'\n  }\n}]\n"
    )
    paths = [p for p, _ in problems]
    assert "properties.principalID" in paths
    assert "properties.principalId" in paths  # missing from the false branch


def test_model_check_refuses_a_type_it_has_no_model_for() -> None:
    with pytest.raises(KeyError, match="no SDK model"):
        _findings("resource x 'Microsoft.Foo/bars@2020-01-01' = {\n  name: 'x'\n}\n")


def test_both_generations_of_sdk_models_are_enumerated() -> None:
    # azure-mgmt-web 11 (TypeSpec rest_field models): real nesting under properties.
    site = mc.shape_of(mc._model(mc._WEB, "Site"))
    site_config = site.fields["properties"].shape.fields["siteConfig"].shape  # type: ignore[attr-defined]
    assert {"minimumElasticInstanceCount", "preWarmedInstanceCount",
            "functionAppScaleLimit"} <= set(site_config.fields)
    # azure-mgmt-apimanagement (msrest _attribute_map): flattened "properties.x" keys.
    apim = mc.shape_of(mc._model(mc._APIM, "ApiManagementServiceResource"))
    apim_props = apim.fields["properties"].shape.fields  # type: ignore[attr-defined]
    assert apim_props["publisherEmail"].required


# --- Azure Verified Modules conventions ----------------------------------------------------------


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(BICEP)))
def test_every_parameter_is_described_as_required_or_optional(path: Path) -> None:
    for name, param in (parsed(path).get("parameters") or {}).items():
        description = decorators(param).get("description", "")
        has_default = param["default"] is not None
        expected = "Optional." if has_default else "Required."
        assert description.startswith(expected), f"{path.name}: param {name}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(BICEP)))
def test_every_output_and_file_is_described(path: Path) -> None:
    doc = parsed(path)
    assert {"name", "description"} <= set(doc["metadata"])
    for name, output in (doc.get("outputs") or {}).items():
        assert decorators(output).get("description"), f"{path.name}: output {name}"


@pytest.mark.parametrize("path", sorted(MODULES.glob("*.bicep")), ids=lambda p: p.name)
def test_every_module_outputs_name_and_resource_id(path: Path) -> None:
    outputs = parsed(path)["outputs"]
    assert outputs["name"]["type"] == "string"
    assert outputs["resourceId"]["type"] == "string"


def test_resource_symbolic_names_are_readable() -> None:
    for path in BICEP_FILES:
        for symbol in parsed(path)["resources"]:
            assert re.fullmatch(r"[a-z][A-Za-z]+(_[a-z][A-Za-z]+)*", symbol), symbol
            assert len(symbol) >= 4, symbol


# --- 3. the knobs --------------------------------------------------------------------------------


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
    return _resolve(plan["properties"]["maximumElasticWorkerCount"], _Template(app, values))


def test_the_burst_ceiling_is_a_parameter_defaulting_to_the_common_regional_limit() -> None:
    # Linux Elastic Premium: 20 in many regions, 100 in others (functions-premium-plan).
    from shared.settings import SETTINGS

    (spec,) = [s for s in SETTINGS if s.name == "SCALE_MAX_BURST_LIMIT"]
    for doc in (module("function-app"), parsed(MAIN)):
        limit = doc["parameters"]["maxBurstLimit"]
        assert limit["default"] == 20 == int(spec.default or "")
        assert (decorators(limit)["min_value"], decorators(limit)["max_value"]) == (1, 100)
    params = module_call(parsed(MAIN), "modules/function-app.bicep")["params"]
    assert params["maxBurstLimit"] == "maxBurstLimit"
    # The app reads the same number, and holds every schedule maxBurst to it.
    assert _app_settings_for({})["SCALE_MAX_BURST_LIMIT"] == "20"
    assert _app_settings_for({"maxBurstLimit": 100})["SCALE_MAX_BURST_LIMIT"] == "100"
    assert load_settings(_app_settings_for({"maxBurstLimit": 100})).scale_max_burst_limit == 100


@pytest.mark.parametrize(("burst", "limit"), [(20, 20), (1, 20), (60, 100), (100, 100)])
def test_a_burst_within_the_regions_limit_is_deployed(burst: int, limit: int) -> None:
    assert _plan_burst(maximumElasticWorkerCount=burst, maxBurstLimit=limit) == burst


@pytest.mark.parametrize(("burst", "limit"), [(21, 20), (60, 20), (100, 60)])
def test_a_burst_above_the_regions_limit_fails_the_deployment_early(burst: int,
                                                                   limit: int) -> None:
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
    for name in ("alwaysReadyInstanceCount", "preWarmedInstanceCount", "functionAppScaleLimit",
                 "maximumElasticWorkerCount", "zoneRedundant", "planSku"):
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
    assert site["identity"]["type"] == "SystemAssigned"
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


# How each API Management tier calls a backend, as Microsoft documents it: the classic tiers
# from static public addresses, Standard v2 from a subnet it integrates with; v2 addresses
# are not static and the ApiManagement service tag covers the control plane only
# (api-management-howto-ip-addresses, integrate-vnet-outbound).
DOCUMENTED_APIM_PATHS = {
    "Developer": "staticPublicIp",
    "Basic": "staticPublicIp",
    "Standard": "staticPublicIp",
    "Premium": "staticPublicIp",
    "StandardV2": "vnetIntegration",
}
# What Azure reports as the gateway's publicIPAddresses; v2 gateways report addresses too,
# which are not static and must not end up in a rule.
GATEWAY_IP = "203.0.113.10"
OPERATOR_RANGE = "198.51.100.0/24"
OPERATOR_RULE = {"name": "operator-0", "description": "Operators (surge endpoint)",
                 "ipAddress": OPERATOR_RANGE, "action": "Allow", "priority": 200}


def _apim_tiers() -> list[str]:
    return decorators(parsed(MAIN)["parameters"]["apimSkuName"])["allowed"]  # type: ignore[no-any-return]


def _deployment_for_tier(tier: str) -> dict[str, Any]:
    """What main.bicep and its modules build for one API Management tier."""
    main = parsed(MAIN)
    values = {"apimSkuName": tier, "environmentName": "prod",
              "publisherEmail": "ops@example.com", "operatorIpRanges": [OPERATOR_RANGE]}
    env = _Template(main, values)
    out: dict[str, Any] = {"network": _resolve(module_condition(main, "modules/network.bicep"),
                                               env),
                           "subnet": env["apimSubnetResourceId"]}
    # The gateway.
    apim = module("apim")
    call = module_call(main, "modules/apim.bicep")["params"]
    apim_env = _Template(apim, {**{k: _resolve(v, env) for k, v in call.items()},
                                "apiManagement.properties.publicIPAddresses": [GATEWAY_IP]})
    (service,) = resources_of(apim, "Microsoft.ApiManagement/service")
    out["gateway"] = _resolve(service["properties"], apim_env)
    env = _Template(main, {**values, "apim.outputs.publicIpAddresses": _resolve(
        apim["outputs"]["publicIpAddresses"]["value"], apim_env)})
    # The function app's inbound rules.
    app = module("function-app")
    call = module_call(main, "modules/function-app.bicep")["params"]
    app_env = _Template(app, {k: _resolve(v, env) for k, v in call.items()})
    (site,) = resources_of(app, "Microsoft.Web/sites")
    config = site["properties"]["siteConfig"]
    out["app_rules"] = _resolve(config["ipSecurityRestrictions"], app_env)
    out["app_default"] = _resolve(config["ipSecurityRestrictionsDefaultAction"], app_env)
    # The key vault's firewall.
    vault = module("key-vault")
    call = module_call(main, "modules/key-vault.bicep")["params"]
    vault_env = _Template(vault, {k: _resolve(v, env) for k, v in call.items()})
    (kv,) = resources_of(vault, "Microsoft.KeyVault/vaults")
    out["vault_acls"] = _resolve(kv["properties"]["networkAcls"], vault_env)
    return out


def test_every_tier_offered_has_a_documented_path_to_the_app() -> None:
    assert _apim_tiers() == list(DOCUMENTED_APIM_PATHS)
    assert decorators(module("apim")["parameters"]["skuName"])["allowed"] == _apim_tiers()
    table = parsed(MAIN)["variables"]["apimNetworkPathOfTier"]["value"]
    assert unquoted(table) == DOCUMENTED_APIM_PATHS


@pytest.mark.parametrize("tier", list(DOCUMENTED_APIM_PATHS))
def test_each_tier_reaches_the_app_and_key_vault_by_its_documented_path(tier: str) -> None:
    built = _deployment_for_tier(tier)
    gateway, acls = built["gateway"], built["vault_acls"]
    if DOCUMENTED_APIM_PATHS[tier] == "staticPublicIp":
        assert built["network"] is False and built["subnet"] == ""
        assert gateway["virtualNetworkType"] == "None"
        assert "virtualNetworkConfiguration" not in gateway
        assert built["app_rules"] == [
            {"name": "apim-0", "description": "API Management gateway",
             "ipAddress": f"{GATEWAY_IP}/32", "action": "Allow", "priority": 100},
            OPERATOR_RULE]
        assert (acls["ipRules"], acls["virtualNetworkRules"]) == ([{"value": GATEWAY_IP}], [])
    else:
        subnet = built["subnet"]
        assert built["network"] is True
        assert subnet.endswith("/virtualNetworks/vnet-dipguard-prod/subnets/apim-outbound")
        assert gateway["virtualNetworkType"] == "External"
        assert gateway["virtualNetworkConfiguration"] == {"subnetResourceId": subnet}
        assert built["app_rules"] == [
            {"name": "apim-subnet",
             "description": "API Management gateway (outbound virtual network integration)",
             "vnetSubnetResourceId": subnet, "action": "Allow", "priority": 100},
            OPERATOR_RULE]
        assert acls["ipRules"] == []
        assert acls["virtualNetworkRules"] == [
            {"id": subnet, "ignoreMissingVnetServiceEndpoint": False}]
    # Nothing else: everything unmatched is denied, and the vault has no trusted-service
    # bypass, which API Management may no longer use.
    assert built["app_default"] == "Deny"
    assert (acls["defaultAction"], acls["bypass"]) == ("Deny", "None")


def test_nothing_admits_the_api_management_service_tag() -> None:
    # It covers API Management's control plane, not the v2 gateways' calls to backends, and
    # every API Management customer shares it.
    for path in BICEP_FILES:
        text = json.dumps(parsed(path))
        assert "ServiceTag" not in text and "'ApiManagement'" not in text, path.name


def _gateway_properties(tier: str, subnet: str) -> Any:
    apim = module("apim")
    (service,) = resources_of(apim, "Microsoft.ApiManagement/service")
    env = _Template(apim, {"skuName": tier, "outboundSubnetResourceId": subnet})
    return _resolve(service["properties"], env)


@pytest.mark.parametrize(("tier", "subnet"), [("StandardV2", ""), ("Developer", "/subnets/x"),
                                               ("Premium", "/subnets/x")])
def test_a_gateway_without_its_tiers_path_fails_the_deployment_early(tier: str,
                                                                    subnet: str) -> None:
    with pytest.raises(DeploymentFailure, match="outboundSubnetResourceId"):
        _gateway_properties(tier, subnet)


@pytest.mark.parametrize(("ips", "subnet"), [([], ""), ([GATEWAY_IP], "/subnets/x")])
def test_an_app_with_no_or_two_gateway_paths_fails_the_deployment_early(ips: list[str],
                                                                      subnet: str) -> None:
    app = module("function-app")
    (site,) = resources_of(app, "Microsoft.Web/sites")
    env = _Template(app, {"apimPublicIpAddresses": ips, "apimSubnetResourceId": subnet})
    with pytest.raises(DeploymentFailure, match="exactly one"):
        _resolve(site["properties"]["siteConfig"]["ipSecurityRestrictions"], env)


def test_the_integration_subnet_is_delegated_guarded_and_has_the_service_endpoints() -> None:
    network = module("network")
    (vnet,) = resources_of(network, "Microsoft.Network/virtualNetworks")
    (subnet,) = vnet["properties"]["subnets"]
    props = subnet["properties"]
    assert subnet["name"] == "subnetName"
    # integrate-vnet-outbound: delegated to Microsoft.Web/serverFarms, with an NSG.
    assert [d["properties"]["serviceName"] for d in props["delegations"]] == [
        "Microsoft.Web/serverFarms"]
    assert dotted(props["networkSecurityGroup"]["id"]) == "networkSecurityGroup.id"
    (_nsg,) = resources_of(network, "Microsoft.Network/networkSecurityGroups")
    # Service endpoints, so the app's access restriction and the vault's firewall can name it.
    assert [e["service"] for e in props["serviceEndpoints"]] == [
        "Microsoft.Web", "Microsoft.KeyVault"]
    # main.bicep computes the subnet's ID from the same names it gives the module.
    main = parsed(MAIN)
    call = module_call(main, "modules/network.bicep")["params"]
    assert (call["name"], call["subnetName"]) == ("apimVnetName", "apimSubnetName")
    subnet_id = function(main["variables"]["apimSubnetResourceId"]["value"]["operator"][
        "operands"]["true_value"], "resource_id")
    assert subnet_id is not None
    assert (subnet_id["resource_name_1"], subnet_id["resource_name_2"]) == (
        "apimVnetName", "apimSubnetName")
    # API Management is created after the subnet it integrates with.
    assert module_call(main, "modules/apim.bicep")["dependsOn"] == ["network"]


def test_cipher_settings_are_sent_only_to_tiers_that_accept_them() -> None:
    # They "can't be changed" on Consumption, Basic v2, Standard v2 and Premium v2
    # (api-management-howto-manage-protocols-ciphers).
    for tier, path in DOCUMENTED_APIM_PATHS.items():
        subnet = "/subnets/x" if path == "vnetIntegration" else ""
        props = _gateway_properties(tier, subnet)
        assert ("customProperties" in props) is (not tier.endswith("V2")), tier


def test_every_tier_offered_is_known_to_the_api_version_and_the_sdk_model() -> None:
    # PremiumV2 is not in API version 2024-05-01's SKU list, nor in the SDK's enum.
    from azure.mgmt.apimanagement.models import SkuType

    (service,) = [r for r in mc.iter_resources(MODULES / "apim.bicep", module("apim"))
                  if r.type == "Microsoft.ApiManagement/service"]
    assert service.api_version == "2024-05-01"
    known = {member.value for member in SkuType}
    assert set(_apim_tiers()) <= known
    assert "PremiumV2" not in _apim_tiers() and "BasicV2" not in _apim_tiers()


def test_function_app_carries_the_azd_service_tag_of_azure_yaml() -> None:
    (site,) = resources_of(module("function-app"), "Microsoft.Web/sites")
    tags = function(site["tags"], "union")
    assert tags is not None
    tag_objects = [v for v in tags.values() if isinstance(v, dict)]
    assert [unquoted(t) for t in tag_objects] == [{"azd-service-name": "azdServiceName"}]
    params = module_call(parsed(MAIN), "modules/function-app.bicep")["params"]
    azure_yaml = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert list(azure_yaml["services"]) == [params["azdServiceName"]]


def test_storage_is_tls12_private_blobs_and_shared_keys_off_for_customer_data() -> None:
    storage = module("storage")
    (account,) = resources_of(storage, "Microsoft.Storage/storageAccounts")
    props = account["properties"]
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["allowBlobPublicAccess"] is False
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["allowSharedKeyAccess"] == "allowSharedKeyAccess"
    assert default_of(storage, "allowSharedKeyAccess") is False
    main = parsed(MAIN)
    calls = {m["config"]["name"]: m["config"]["params"] for m in main["modules"].values()
             if m["detail"]["path"] == "modules/storage.bicep"}
    assert calls["dipguard-data-storage"]["allowSharedKeyAccess"] is False
    # The host account keeps shared keys for the Azure Files content share only (see
    # function-app.bicep); nothing else in the app uses a key.
    assert calls["dipguard-host-storage"]["allowSharedKeyAccess"] is True


def test_the_tables_the_app_reads_are_created_in_the_account_it_reads() -> None:
    main = parsed(MAIN)
    calls = {m["config"]["name"]: m["config"]["params"] for m in main["modules"].values()
             if m["detail"]["path"] == "modules/storage.bicep"}
    assert calls["dipguard-data-storage"]["tableNames"] == ["customerTableName", "surgeTableName"]
    assert default_of(main, "customerTableName") == "customers"
    assert default_of(main, "surgeTableName") == "surges"
    app_params = module_call(main, "modules/function-app.bicep")["params"]
    assert app_params["customerTableName"] == "customerTableName"
    assert app_params["surgeTableName"] == "surgeTableName"
    assert dotted(app_params["customerTableServiceUri"]) == "dataStorage.outputs.tableEndpoint"
    (tables,) = resources_of(module("storage"),
                             "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert tables["name"] == "tableName"


def test_redis_is_tls_only_with_access_keys_off_and_entra_access_for_the_app() -> None:
    redis = module("redis")
    (cluster,) = resources_of(redis, "Microsoft.Cache/redisEnterprise")
    assert cluster["properties"]["minimumTlsVersion"] == "1.2"
    (database,) = resources_of(redis, "Microsoft.Cache/redisEnterprise/databases")
    db = database["properties"]
    assert db["clientProtocol"] == "Encrypted"
    assert db["accessKeysAuthentication"] == "Disabled"
    assert db["clusteringPolicy"] == "clusteringPolicy"
    assert decorators(redis["parameters"]["clusteringPolicy"])["allowed"] == [
        "EnterpriseCluster", "OSSCluster"]
    assert db["evictionPolicy"] != "NoEviction"
    # The URL the app gets: TLS, port, database 0, and no credentials in it.
    url = redis["outputs"]["url"]["value"]
    assert url.startswith("rediss://") and url.endswith("/0") and "@" not in url
    access = module("app-access")
    (assignment,) = resources_of(
        access, "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments")
    assert assignment["properties"] == {"accessPolicyName": "default",
                                        "user": {"objectId": "principalId"}}
    params = module_call(parsed(MAIN), "modules/app-access.bicep")["params"]
    assert dotted(params["principalId"]) == "functionApp.outputs.systemAssignedMIPrincipalId"


def test_the_scale_schedule_identity_can_change_the_site_and_the_plan() -> None:
    app = module("function-app")
    grants = {(g["role"], g["scope"]) for g in role_assignments(app)}
    assert (WEBSITE_CONTRIBUTOR, "site") in grants
    assert (WEB_PLAN_CONTRIBUTOR, "plan") in grants
    assert all(dotted(g["principal"]) == "site.identity.principalId"
               for g in role_assignments(app))


def test_the_app_identity_gets_data_access_and_nothing_broad() -> None:
    access = module("app-access")
    variables = access["variables"]
    by_scope: dict[str, set[str]] = {}
    for grant in role_assignments(access):
        assert grant["principal"] == "principalId"
        role = grant["role"]
        if role == "roleId":  # the host storage loop over hostStorageRoleIds
            roles = {variables[r]["value"] for r in variables["hostStorageRoleIds"]["value"]}
        else:
            roles = {role}
        by_scope.setdefault(grant["scope"], set()).update(roles)
    assert by_scope == {
        "hostStorageAccount": {STORAGE_BLOB_DATA_OWNER, STORAGE_QUEUE_DATA_CONTRIBUTOR,
                               STORAGE_TABLE_DATA_CONTRIBUTOR},
        "dataStorageAccount": {STORAGE_TABLE_DATA_CONTRIBUTOR},
        "appInsights": {MONITORING_METRICS_PUBLISHER},
    }


def test_api_management_can_read_the_function_key_and_nothing_else() -> None:
    vault = module("key-vault")
    (grant,) = role_assignments(vault)
    assert grant["role"] == KEY_VAULT_SECRETS_USER
    assert grant["scope"] == "keyVault"
    (kv,) = resources_of(vault, "Microsoft.KeyVault/vaults")
    assert kv["properties"]["enableRbacAuthorization"] is True
    assert kv["properties"]["enablePurgeProtection"] is True
    acls = kv["properties"]["networkAcls"]
    # No trusted-service bypass: API Management may no longer use it; it is admitted by
    # address or subnet instead (see test_each_tier_reaches_the_app_and_key_vault_...).
    assert (acls["defaultAction"], acls["bypass"]) == ("Deny", "None")
    assert acls["ipRules"]["loop_type"]["detail"]["array_name"] == "allowedIpAddresses"
    assert acls["virtualNetworkRules"]["loop_type"]["detail"]["array_name"] == (
        "allowedSubnetResourceIds")
    params = module_call(parsed(MAIN), "modules/key-vault.bicep")["params"]
    (principal,) = params["secretsUserPrincipalIds"]
    assert dotted(principal) == "apim.outputs.systemAssignedMIPrincipalId"


def test_api_management_tier_is_a_parameter_without_consumption() -> None:
    for doc, param in ((module("apim"), "skuName"), (parsed(MAIN), "apimSkuName")):
        allowed = decorators(doc["parameters"][param])["allowed"]
        assert "Consumption" not in allowed
        assert "Developer" in allowed and "StandardV2" in allowed
    (service,) = resources_of(module("apim"), "Microsoft.ApiManagement/service")
    assert service["identity"]["type"] == "SystemAssigned"
    tls = unquoted(module("apim")["variables"]["securityProperties"]["value"])
    prefix = "Microsoft.WindowsAzure.ApiManagement.Gateway.Security."
    for protocol in ("Protocols.Tls10", "Protocols.Tls11", "Backend.Protocols.Tls10",
                     "Backend.Protocols.Tls11"):
        assert tls[prefix + protocol] == "False"


def test_the_api_is_imported_from_the_repository_openapi_document() -> None:
    api_module = module("apim-api")
    (api,) = resources_of(api_module, "Microsoft.ApiManagement/service/apis")
    props = api["properties"]
    assert props["format"] == "openapi+json"
    load = function(props["value"], "load_text_content")
    assert load is not None
    assert (MODULES / load["file_path"]).resolve() == ROOT / "openapi.json"
    assert props["subscriptionRequired"] is True
    assert props["protocols"] == ["https"]
    assert props["subscriptionKeyParameterNames"]["header"] == "Ocp-Apim-Subscription-Key"


def test_the_policy_is_loaded_from_the_xml_file_with_its_placeholders_filled() -> None:
    api_module = module("apim-api")
    load = function(api_module["variables"]["policyXml"]["value"], "load_text_content")
    assert load is not None and (MODULES / load["file_path"]).resolve() == POLICY
    (policy,) = resources_of(api_module, "Microsoft.ApiManagement/service/apis/policies")
    assert policy["properties"]["format"] == "xml"
    text = json.dumps(policy["properties"]["value"])
    replaced = set(re.findall(r"__[A-Z_]+__", text))
    assert replaced == set(re.findall(r"__[A-Z_]+__", POLICY.read_text()))
    assert '"rateLimitCallsPerSecond"' in text and '"maxConcurrentCalls"' in text


def test_rate_and_concurrency_limits_default_to_1000_per_second_and_200() -> None:
    for doc in (module("apim-api"), parsed(MAIN)):
        assert default_of(doc, "rateLimitCallsPerSecond") == 1000
        assert default_of(doc, "maxConcurrentCalls") == 200
    params = module_call(parsed(MAIN), "modules/apim-api.bicep")["params"]
    assert params["rateLimitCallsPerSecond"] == "rateLimitCallsPerSecond"
    assert params["maxConcurrentCalls"] == "maxConcurrentCalls"


def test_backend_sends_the_function_key_from_a_key_vault_backed_named_value() -> None:
    api_module = module("apim-api")
    (named,) = resources_of(api_module, "Microsoft.ApiManagement/service/namedValues")
    assert named["properties"]["secret"] is True
    assert named["properties"]["keyVault"]["secretIdentifier"] == "functionKeySecretUri"
    params = module_call(parsed(MAIN), "modules/apim-api.bicep")["params"]
    assert dotted(params["functionKeySecretUri"]) == "functionKey.outputs.secretUriWithVersion"
    assert dotted(module("function-key")["outputs"]["secretUriWithVersion"]["value"]) == (
        "keyVault_functionKey.properties.secretUriWithVersion")
    (backend,) = resources_of(api_module, "Microsoft.ApiManagement/service/backends")
    header = unquoted(backend["properties"]["credentials"]["header"])
    assert header == {"x-functions-key": ["{{${functionKeyName}}}"]}
    assert backend["properties"]["url"].endswith("/api")


def test_the_function_key_is_written_by_the_deployment_and_never_read_from_the_app() -> None:
    # listKeys on host/default of an app with no code yet fails intermittently
    # (Azure/azure-functions-host#5722, Azure/bicep-types-az#1356): nothing may call it.
    for path in BICEP_FILES:
        for value in walk(parsed(path)):
            listed = function(value, "list_func")
            if listed is not None:
                assert "host" not in json.dumps(listed).lower(), path.name
    keys = module("function-key")
    (key,) = resources_of(keys, "Microsoft.Web/sites/host/functionKeys")
    # A named host key (FUNCTION-level triggers open, ADMIN-level surge endpoints not) with
    # the value the deployment supplies.
    assert key["parent"] == "functionAppHost"
    assert key["properties"] == {"name": "keyName", "value": "keyValue"}
    host = keys["resources"]["functionAppHost"]
    assert (host["type"], host["existing"]) == ("Microsoft.Web/sites/host", True)
    assert host["config"]["name"] == "default" and host["config"]["parent"] == "functionApp"
    # The same value in Key Vault, written once the host has the key.
    (secret,) = resources_of(keys, "Microsoft.KeyVault/vaults/secrets")
    assert secret["properties"]["value"] == "keyValue"
    assert secret["dependsOn"] == ["functionAppHost_apimKey"]
    value = keys["parameters"]["keyValue"]
    assert decorators(value)["secure"] is True and decorators(value)["min_length"] >= 32


def test_the_key_value_is_generated_at_deployment_and_kept_out_of_deployment_history() -> None:
    main = parsed(MAIN)
    given, generated = (main["parameters"][n] for n in ("functionKeyValue",
                                                         "generatedFunctionKeyValue"))
    # @secure(): the values never reach deployment history.
    assert decorators(given)["secure"] is True and decorators(generated)["secure"] is True
    assert given["default"] == ""
    # newGuid() twice, hyphens dropped: 64 hex digits, 244 random bits, new each deployment.
    assert generated["default"].count("newGuid()") == 2 and "replace(" in generated["default"]
    key_value = module_call(main, "modules/function-key.bicep")["params"]["keyValue"]
    env = _Template(main, {"generatedFunctionKeyValue": "g" * 64})
    assert _resolve(key_value, env) == "g" * 64          # nothing given: a new key
    env = _Template(main, {"generatedFunctionKeyValue": "g" * 64, "functionKeyValue": "k" * 40})
    assert _resolve(key_value, env) == "k" * 40          # the current key given: kept


def test_each_way_of_deploying_can_pass_the_current_key() -> None:
    # Unset, the variable gives '' and so a new key; set, it keeps the one it holds.
    for path in PARAM_FILES:
        _, assignments = _bicepparam_doc(path)
        read = function(assignments["functionKeyValue"]["value"], "readEnvironmentVariable")
        assert read is not None and list(read.values()) == ["DIPGUARD_FUNCTION_KEY", ""]
    azd = json.loads((BICEP / "main.parameters.json").read_text())["parameters"]
    assert azd["functionKeyValue"] == {"value": "${DIPGUARD_FUNCTION_KEY}"}


def test_every_resource_that_needs_a_role_waits_for_its_grant() -> None:
    main = parsed(MAIN)
    # The host stores its keys in host storage with the app's identity: the key waits for
    # that identity's storage roles (app-access.bicep, Storage Blob Data Owner among them).
    assert module_call(main, "modules/function-key.bicep")["dependsOn"] == ["appAccess"]
    # API Management reads the named value with its identity: the API waits for its Key
    # Vault Secrets User grant, which the keyVault module holds.
    assert module_call(main, "modules/apim-api.bicep")["dependsOn"] == ["keyVault"]
    vault = module("key-vault")
    (grant,) = role_assignments(vault)
    assert grant["role"] == KEY_VAULT_SECRETS_USER


def test_model_check_holds_a_function_key_to_its_template_body() -> None:
    # name and value belong under properties in a template (functions-infrastructure-as-code,
    # Function access keys), not at the top as in the SDK's KeyInfo.
    problems = _findings(
        "resource key 'Microsoft.Web/sites/host/functionKeys@2024-11-01' = {\n"
        "  name: 'x/default/apim'\n  value: 'v'\n}\n"
    )
    assert sorted(p for p, _ in problems) == ["properties", "value"]
    assert _findings(
        "resource key 'Microsoft.Web/sites/host/functionKeys@2024-11-01' = {\n"
        "  name: 'x/default/apim'\n  properties: {\n    name: 'apim'\n    value: 'v'\n"
        "  }\n}\n"
    ) == []


def test_model_check_reports_a_misspelt_subnet_property() -> None:
    problems = _findings(
        "resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {\n"
        "  name: 'v'\n  location: 'westeurope'\n  properties: {\n    subnets: [\n"
        "      {\n        name: 's'\n        properties: {\n"
        "          serviceEndpoint: []\n        }\n      }\n    ]\n  }\n}\n"
    )
    assert [p for p, _ in problems] == ["properties.subnets[0].properties.serviceEndpoint"]


def test_genesys_gets_a_product_and_a_subscription_to_it() -> None:
    api_module = module("apim-api")
    (product,) = resources_of(api_module, "Microsoft.ApiManagement/service/products")
    assert product["properties"]["subscriptionRequired"] is True
    assert product["properties"]["state"] == "published"
    (link,) = resources_of(api_module, "Microsoft.ApiManagement/service/products/apis")
    assert link["parent"] == "apiManagement_product"
    (subscription,) = resources_of(api_module, "Microsoft.ApiManagement/service/subscriptions")
    assert dotted(subscription["properties"]["scope"]) == "apiManagement_product.id"
    assert subscription["properties"]["state"] == "active"


def test_monitoring_is_workspace_based_application_insights_with_entra_ingestion() -> None:
    monitoring = module("monitoring")
    (component,) = resources_of(monitoring, "Microsoft.Insights/components")
    assert dotted(component["properties"]["WorkspaceResourceId"]) == "workspace.id"
    assert component["properties"]["DisableLocalAuth"] is True
    (_workspace,) = resources_of(monitoring, "Microsoft.OperationalInsights/workspaces")


def _alert_rules() -> dict[str, dict[str, Any]]:
    alerts = module("alerts")
    rules = {}
    for symbol, res in alerts["resources"].items():
        if res["type"] == "Microsoft.Insights/scheduledQueryRules":
            body = mc._unwrap_resource_body(res["config"])
            (criterion,) = body["properties"]["criteria"]["allOf"]
            query = criterion["query"]
            replaced = function(query, "replace")
            if replaced is not None:
                query = replaced["original_string"]
            if isinstance(query, str) and query in alerts["variables"]:
                query = alerts["variables"][query]["value"]
            rules[symbol] = {**criterion, "query": query, "properties": body["properties"]}
    return rules


def test_alert_on_degraded_answers_over_a_threshold_for_five_minutes() -> None:
    rule = _alert_rules()["degradedAlert"]
    assert 'startswith "dip "' in rule["query"]
    assert 'dip.source) == "degraded"' in rule["query"]
    assert rule["metricMeasureColumn"] == "degradedPercent"
    assert rule["threshold"] == "degradedPercentThreshold"
    assert rule["properties"]["windowSize"] == "PT5M"
    assert default_of(module("alerts"), "degradedPercentThreshold") == 5


def test_alert_on_p95_dip_latency_over_one_second() -> None:
    rule = _alert_rules()["latencyAlert"]
    assert '"ivr_lookup"' in rule["query"]
    assert "percentile(duration, 95)" in rule["query"]
    assert rule["metricMeasureColumn"] == "p95DurationMs"
    assert rule["threshold"] == "p95LatencyThresholdMs"
    assert default_of(module("alerts"), "p95LatencyThresholdMs") == 1000


def test_alert_on_any_5xx_from_the_function() -> None:
    rule = _alert_rules()["serverErrorAlert"]
    assert '"ivr_lookup"' in rule["query"]
    assert "toint(resultCode) >= 500" in rule["query"]
    assert (rule["operator"], rule["threshold"]) == ("GreaterThan", 0)


def test_alert_on_scale_schedule_failures() -> None:
    rule = _alert_rules()["scaleFailureAlert"]
    assert 'startswith "scale_tick "' in rule["query"]
    for outcome in ("failed", "partial", "invalid_schedule"):
        assert f'"{outcome}"' in rule["query"]
    assert '"scale_schedule"' in rule["query"]
    assert (rule["operator"], rule["threshold"]) == ("GreaterThan", 0)


def _kql_cut(query: str, message: str) -> dict[str, Any] | None:
    """What the query's `startswith` + `parse_json(substring(message, n))` makes of a line."""
    prefix = re.search(r'where message startswith "([^"]+)"', query)
    offset = re.search(r"parse_json\(substring\(message, (\d+)\)\)", query)
    assert prefix and offset
    if not message.startswith(prefix.group(1)):
        return None
    return json.loads(message[int(offset.group(1)):])  # type: ignore[no-any-return]


def test_alert_queries_read_the_log_lines_the_app_writes() -> None:
    from shared.dip.lookup import DipLog
    from shared.scale.tick import TickReport

    rules = _alert_rules()
    dip = DipLog("ani", "degraded", 2400.0, True, "deadline").line()
    assert _kql_cut(rules["degradedAlert"]["query"], dip) == {
        "event": "dip", "keyKind": "ani", "source": "degraded", "latencyMs": 2400.0,
        "shed": True, "reason": "deadline"}
    tick = _kql_cut(rules["scaleFailureAlert"]["query"], TickReport(outcome="failed").log_line())
    assert tick is not None and (tick["event"], tick["outcome"]) == ("scale_tick", "failed")
    assert _kql_cut(rules["degradedAlert"]["query"], TickReport().log_line()) is None


# --- every setting the app reads is deployed -----------------------------------------------------


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
    missing = set(DEPLOYED_SETTINGS) - _deployed_setting_names()
    assert not missing, f"add these app settings to bicep/: {sorted(missing)}"


def test_the_functions_host_gets_its_runtime_and_identity_based_storage() -> None:
    names = _deployed_setting_names()
    assert {"FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME",
            "APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential",
            "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE"} <= names
    assert "AzureWebJobsStorage" not in names  # no connection string for host storage
    platform = module("function-app")["variables"]["platformSettings"]["value"]
    assert platform["FUNCTIONS_EXTENSION_VERSION"] == "~4"
    assert platform["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert platform["AzureWebJobsStorage__credential"] == "managedidentity"
    assert platform["REDIS_URL"] == "redisUrl"
    main = parsed(MAIN)
    params = module_call(main, "modules/function-app.bicep")["params"]
    assert dotted(params["redisUrl"]) == "redis.outputs.url"


class DeploymentFailure(Exception):
    """int() of a non-number: ARM stops the deployment with this text as the error."""


class _Template(Mapping[str, Any]):
    """A Bicep file's parameters (defaults, then the values given) and its variables.

    Variables are resolved when first used, as ARM evaluates them, so a fail-early check
    (int() of a message) raises DeploymentFailure only where the deployment would stop.
    """

    def __init__(self, doc: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        self._values = {name: p["default"] for name, p in doc["parameters"].items()}
        self._values.update(values)
        self._variables = doc["variables"]
        self._resolved: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        if name not in self._resolved:
            self._resolved[name] = _resolve(self._variables[name]["value"], self)
        return self._resolved[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._variables

    def __iter__(self) -> Iterator[str]:
        return iter({**self._variables, **self._values})

    def __len__(self) -> int:
        return len({**self._variables, **self._values})


def _interpolate(text: str, params: Mapping[str, Any]) -> str | None:
    """'${name}' pieces filled in; None when one is not a known identifier."""
    names = re.findall(r"\$\{([^}]*)\}", text)
    if not all(name in params and params[name] is not None for name in names):
        return None
    return re.sub(r"\$\{([^}]*)\}", lambda m: str(params[m.group(1)]), text)


def _resolve_loop(loop: Mapping[str, Any], params: Mapping[str, Any]) -> list[Any] | None:
    detail = loop["loop_type"]["detail"]
    items = _resolve(detail["array_name"], params)
    if not isinstance(items, list):
        return None
    out = []
    for index, item in enumerate(items):
        names = {detail["item_name"]: item}
        if detail.get("index_name"):
            names[detail["index_name"]] = index
        # The loop's names first, then the file's, looked up only when used.
        out.append(_resolve(loop["config"], ChainMap(names, params)))  # type: ignore[arg-type]
    return out


def _resolve(value: Any, params: Mapping[str, Any]) -> Any:
    """A literal, or a parameter's value; None for anything computed at deployment.

    A property path such as ``apim.outputs.publicIpAddresses`` resolves when ``params``
    holds it: that is how a test states what Azure would report.
    """
    if isinstance(value, str) and value in params:
        return params[value]
    path = None if isinstance(value, str) else dotted(value)
    if path is not None and path in params:
        return params[path]
    if isinstance(value, str) and "${" not in value:
        return value
    if isinstance(value, str):
        return _interpolate(value, params)
    if mc._is_loop(value):
        return _resolve_loop(value, params)
    int_of = function(value, "int")
    if int_of is not None:
        inner = _resolve(int_of["value_to_convert"], params)
        if isinstance(inner, str) and not inner.strip().lstrip("-").isdigit():
            raise DeploymentFailure(inner)
        return None if inner is None else int(inner)
    empty_of = function(value, "empty")
    if empty_of is not None:
        inner = _resolve(empty_of["item_to_test"], params)
        return None if inner is None else len(inner) == 0
    contains_of = function(value, "contains")
    if contains_of is not None:
        container = _resolve(contains_of["container"], params)
        item = _resolve(contains_of["item_to_find"], params)
        return None if container is None or item is None else item in container
    concat_of = function(value, "concat")
    if concat_of is not None:
        parts = [_resolve(arg, params) for arg in concat_of.values()]
        if any(not isinstance(part, list) for part in parts):
            return None
        return [item for part in parts for item in part]
    resource_id = function(value, "resource_id")
    if resource_id is not None:
        names = [_resolve(v, params) for k, v in resource_id.items()
                 if k.startswith("resource_name")]
        if any(n is None for n in names):
            return None
        # ARM interleaves the type's segments with the names: .../virtualNetworks/v/subnets/s
        namespace, *types = str(resource_id["resource_type"]).split("/")
        pairs = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
        return f"/subscriptions/sub/resourceGroups/rg/providers/{namespace}/{pairs}"
    max_of = function(value, "max")
    if max_of is not None:
        args = [_resolve(a, params) for a in max_of.values()]
        return None if any(a is None for a in args) else max(args)
    string_of = function(value, "string")
    if string_of is not None:
        inner = _resolve(string_of["value_to_convert"], params)
        if isinstance(inner, bool):
            return "True" if inner else "False"  # ARM's string(true)
        if isinstance(inner, (dict, list)):
            return json.dumps(inner)
        return None if inner is None else str(inner)
    if isinstance(value, (bool, int)):
        return value
    operator = value.get("operator") if isinstance(value, dict) else None
    if isinstance(operator, dict):
        return _resolve_operator(operator["type"], operator["operands"], params)
    if isinstance(value, dict) and not mc._is_expression(value):
        return {k: _resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    return None


def _resolve_operator(kind: str, operands: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """The few operators the app settings use; None for the rest."""
    first = _resolve(operands.get("operand_1"), params)
    second = _resolve(operands.get("operand_2"), params)
    if kind == "conditional":
        condition = _resolve(operands["condition"], params)
        if condition is None:
            return None
        return _resolve(operands["true_value" if condition else "false_value"], params)
    if kind == "equals":
        return None if first is None or second is None else first == second
    if kind in {"and", "or", "less_than", "greater_than", "add"}:
        if first is None or second is None:
            return None
        return {"and": lambda: first and second, "or": lambda: first or second,
                "less_than": lambda: first < second, "greater_than": lambda: first > second,
                "add": lambda: first + second}[kind]()
    if kind == "divide":
        # ARM divides integers and drops the remainder.
        return None if first is None or second is None else first // second
    if kind == "index_accessor":
        return first.get(second) if isinstance(first, dict) else None
    return None


def _param_values(overrides: Mapping[str, Any]) -> dict[str, Any]:
    main = parsed(MAIN)
    values = {name: p["default"] for name, p in main["parameters"].items()}
    values.update(overrides)
    return values


def _effective_schedule(values: Mapping[str, Any]) -> dict[str, Any]:
    """main.bicep's effectiveScaleSchedule: the scaleSchedule given, else one flat level."""
    chosen = parsed(MAIN)["variables"]["effectiveScaleSchedule"]["value"]["operator"]
    assert chosen["type"] == "conditional"
    assert function(chosen["operands"]["condition"], "empty") == {"item_to_test": "scaleSchedule"}
    if values["scaleSchedule"]:
        return dict(values["scaleSchedule"])
    return _resolve(chosen["operands"]["true_value"], values)  # type: ignore[no-any-return]


def _app_settings_for(overrides: Mapping[str, Any]) -> dict[str, str]:
    """App settings as deployed with main.bicep's defaults plus ``overrides``."""
    main = parsed(MAIN)
    values = _param_values(overrides)
    # Variables of main.bicep the module call uses.
    variables = dict(values)
    schedule = _effective_schedule(values)
    variables["effectiveScaleSchedule"] = schedule
    for name in ("vcpusOfSku", "workersPerInstance"):
        variables[name] = _resolve(main["variables"][name]["value"], variables)
    module_params = {}
    for name, arg in module_call(main, "modules/function-app.bicep")["params"].items():
        module_params[name] = _resolve(arg, variables)
    union_args = function(module_call(main, "modules/function-app.bicep")["params"]["appSettings"],
                          "union")
    assert union_args is not None
    tuning = _resolve(main["variables"]["tuningDefaults"]["value"], variables)
    tuning.update(values["appTuning"])
    app = module("function-app")
    app_values = {name: p["default"] for name, p in app["parameters"].items()}
    app_values.update({k: v for k, v in module_params.items() if v is not None})
    settings = _resolve(app["variables"]["platformSettings"]["value"], app_values)
    settings.update(tuning)
    # Values only known at deployment, shaped as Azure would produce them.
    settings["REDIS_URL"] = "rediss://redis-dipguard.westeurope.redis.azure.net:10000/0"
    settings["CustomerStorage__tableServiceUri"] = "https://stdata.table.core.windows.net/"
    settings["ARM_ENDPOINT"] = "https://management.azure.com"
    settings["SCALE_SCHEDULE"] = json.dumps(schedule)
    return {k: str(v) for k, v in settings.items() if v is not None}


def test_deployed_values_pass_the_apps_own_settings_validation() -> None:
    settings = load_settings(_app_settings_for({}))
    assert settings.handler_deadline_ms == 2500
    assert settings.customer_table == "customers"
    assert settings.surge_table == "surges"
    assert settings.storage_table_uri is not None


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_each_environment_deploys_settings_the_app_accepts(path: Path) -> None:
    values = _bicepparam_values(path)
    settings = load_settings(_app_settings_for(values))
    assert settings.scale_zone_redundant is bool(values.get("zoneRedundant", False))
    assert settings.scale_max_burst_limit == values.get("maxBurstLimit", 20)
    # The schedule as deployed passes the scale timer's own check, against the deployed limit.
    parse_schedule(settings.scale_schedule, zone_redundant=settings.scale_zone_redundant,
                   max_burst_limit=settings.scale_max_burst_limit)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, "1"),                                          # EP1 by default
    ({"planSku": "EP2"}, "2"),
    ({"planSku": "EP3"}, "4"),
    ({"planSku": "EP2", "workerProcessCount": 3}, "3"),
])
def test_one_python_worker_process_per_vcpu_unless_told(overrides: dict[str, Any],
                                                         expected: str) -> None:
    assert _app_settings_for(overrides)["FUNCTIONS_WORKER_PROCESS_COUNT"] == expected


def test_every_plan_size_has_a_vcpu_count() -> None:
    main = parsed(MAIN)
    allowed = decorators(main["parameters"]["planSku"])["allowed"]
    assert sorted(main["variables"]["vcpusOfSku"]["value"]) == sorted(allowed)


@pytest.mark.parametrize(("overrides", "local_qps", "inflight"), [
    ({}, "20", "16"),                                   # EP1: one worker has it all
    ({"planSku": "EP2"}, "10", "8"),
    ({"planSku": "EP3"}, "5", "4"),
    ({"planSku": "EP2", "workerProcessCount": 3}, "6", "5"),
    ({"planSku": "EP3", "localDbQpsPerInstance": 2}, "1", "4"),  # never below one
])
def test_an_instances_read_budgets_are_split_between_its_worker_processes(
    overrides: dict[str, Any], local_qps: str, inflight: str,
) -> None:
    # Both settings are counted in each process: unsplit, more workers would multiply them.
    settings = _app_settings_for(overrides)
    assert settings["LOCAL_DB_QPS"] == local_qps
    assert settings["MAX_INFLIGHT_DB_READS"] == inflight


def test_a_bad_tuning_value_would_be_caught() -> None:
    with pytest.raises(SettingsError, match="DB_TIMEOUT_MS"):
        load_settings(_app_settings_for({"appTuning": {"DB_TIMEOUT_MS": "2600"}}))


def test_the_gateway_waits_longer_than_the_handler_deadline() -> None:
    main = parsed(MAIN)
    deadline_max = decorators(main["parameters"]["handlerDeadlineMs"])["max_value"]
    timeout = int(_policy().find("./backend/limit-concurrency/forward-request").get("timeout-ms"))
    assert default_of(main, "handlerDeadlineMs") < deadline_max < timeout


# --- parameter files, azure.yaml, CI -------------------------------------------------------------


def _bicepparam_doc(path: Path) -> tuple[str, dict[str, Any]]:
    """(the `using` target, the parsed assignments) of a .bicepparam file.

    pycep has no .bicepparam grammar, but `param x = value` is `var x = value` in Bicep, so
    the assignments are parsed as variables by the same grammar.
    """
    text = path.read_text()
    using = re.search(r"^using\s+'([^']+)'\s*$", text, re.MULTILINE)
    assert using, f"{path.name} has no using line"
    body = text[: using.start()] + text[using.end():]
    body = re.sub(r"^param\s+", "var ", body, flags=re.MULTILINE)
    doc = mc._parser().parse(text=body)
    return using.group(1), doc.get("variables") or {}


def _bicepparam_values(path: Path) -> dict[str, Any]:
    """Literal values of a .bicepparam file; readEnvironmentVariable gives an example value."""
    _, assignments = _bicepparam_doc(path)

    def value(v: Any) -> Any:
        env = function(v, "readEnvironmentVariable")
        if env is not None:
            return "ops@example.com"
        if isinstance(v, dict) and not mc._is_expression(v):
            return {k: value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [value(x) for x in v]
        return v

    return {name: value(a["value"]) for name, a in assignments.items()}


def test_there_is_a_dev_and_a_prod_parameter_file() -> None:
    assert [p.name for p in PARAM_FILES] == ["dev.bicepparam", "prod.bicepparam"]


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_parameter_file_sets_only_known_parameters_within_their_limits(path: Path) -> None:
    using, _ = _bicepparam_doc(path)
    assert (path.parent / using).resolve() == MAIN
    main = parsed(MAIN)["parameters"]
    values = _bicepparam_values(path)
    assert set(values) <= set(main)
    required = {name for name, p in main.items() if p["default"] is None}
    assert required <= set(values), f"{path.name} misses {required - set(values)}"
    for name, value in values.items():
        rules = decorators(main[name])
        if "allowed" in rules:
            assert value in rules["allowed"], name
        if "min_value" in rules:
            assert value >= rules["min_value"], name
        if "max_value" in rules:
            assert value <= rules["max_value"], name
        if "max_length" in rules:
            assert len(value) <= rules["max_length"], name


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_parameter_file_schedule_is_one_the_scale_timer_accepts(path: Path) -> None:
    values = _param_values(_bicepparam_values(path))
    zone_redundant = bool(values["zoneRedundant"])
    if zone_redundant:
        assert values["alwaysReadyInstanceCount"] >= 3
    # The region's burst limit, as the app will hold the schedule to it (SCALE_MAX_BURST_LIMIT).
    limit = values["maxBurstLimit"]
    assert values["maximumElasticWorkerCount"] <= limit
    schedule = _effective_schedule(values)
    parsed_schedule = parse_schedule(json.dumps(schedule), zone_redundant=zone_redundant,
                                     max_burst_limit=limit)
    bursts = [parsed_schedule.default.max_burst] + [w.levels.max_burst for w in
                                                    parsed_schedule.windows]
    assert all(b is None or b <= values["maximumElasticWorkerCount"] for b in bursts)


def test_dev_is_cheap_and_prod_is_zone_redundant() -> None:
    dev = _bicepparam_values(BICEP / "dev.bicepparam")
    prod = _bicepparam_values(BICEP / "prod.bicepparam")
    assert (dev["planSku"], dev["apimSkuName"], dev["redisSkuName"]) == (
        "EP1", "Developer", "Balanced_B0")
    assert dev["redisHighAvailability"] is False and dev["storageSkuName"] == "Standard_LRS"
    assert prod["zoneRedundant"] is True and prod["alwaysReadyInstanceCount"] >= 3
    assert prod["redisHighAvailability"] is True and prod["storageSkuName"] == "Standard_ZRS"


def test_azd_parameters_file_maps_only_known_parameters() -> None:
    doc = json.loads((BICEP / "main.parameters.json").read_text())
    main = parsed(MAIN)["parameters"]
    assert set(doc["parameters"]) <= set(main)
    assert doc["parameters"]["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert doc["parameters"]["location"]["value"] == "${AZURE_LOCATION}"
    required = {name for name, p in main.items() if p["default"] is None}
    assert required <= set(doc["parameters"])


def test_azure_yaml_deploys_the_python_function_from_the_bicep_folder() -> None:
    doc = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert doc["infra"]["provider"] == "bicep"
    assert (ROOT / doc["infra"]["path"] / f"{doc['infra']['module']}.bicep") == MAIN
    (service,) = doc["services"].values()
    assert (service["host"], service["language"]) == ("function", "python")
    assert (ROOT / service["project"] / "function_app.py").is_file()


def test_ci_workflow_is_valid_yaml_that_builds_and_previews() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    doc = yaml.safe_load((ROOT / ".github" / "workflows" / "bicep.yml").read_text())
    triggers = doc.get("on", doc.get(True))  # PyYAML reads a bare `on` key as True
    assert "pull_request" in triggers
    runs = "\n".join(step.get("run", "") for job in doc["jobs"].values()
                     for step in job["steps"])
    assert "az bicep build " in runs
    assert "az bicep build-params" in runs
    assert "az deployment group what-if" in runs
    for job in doc["jobs"].values():
        assert job["runs-on"] and job["steps"]


# --- 4. checkov ----------------------------------------------------------------------------------


def _checkov_bin() -> str:
    configured = os.environ.get("CHECKOV_BIN")
    candidates = [configured] if configured else [str(ROOT / ".venv-checkov" / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and (Path(candidate).is_file() or shutil.which(candidate)):
            return candidate
    pytest.fail(
        "checkov not found: create it with `python3 -m venv .venv-checkov && "
        ".venv-checkov/bin/pip install checkov` or set CHECKOV_BIN"
    )


@cache
def _checkov_report() -> dict[str, Any]:
    result = subprocess.run(
        [_checkov_bin(), "--directory", str(BICEP), "--framework", "bicep", "--output", "json",
         "--skip-download"],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["check_type"] == "bicep"
    return report  # type: ignore[no-any-return]


_SKIP = re.compile(r"//\s*checkov:skip=(CKV2?_[A-Z]+_\d+)(:?)(.*)$")
_PARAM = re.compile(r"^param\s+(\w+)\s")


def _param_skips() -> set[tuple[str, str, str]]:
    """(check, file, parameter) for each skip comment among a parameter's decorators.

    checkov honours skip comments inside resources only; a parameter check it reports as
    failed counts as skipped here when the parameter carries such a comment.
    """
    found: set[tuple[str, str, str]] = set()
    for path in BICEP_FILES:
        pending: list[str] = []
        for line in path.read_text().splitlines():
            text = line.strip()
            match, param = _SKIP.search(text), _PARAM.match(text)
            if match:
                pending.append(match.group(1))
            elif param:
                found.update((check, path.name, param.group(1)) for check in pending)
                pending = []
            elif not text.startswith(("@", "//")):
                pending = []
    return found


def _skipped_param_failure(check: Mapping[str, Any]) -> bool:
    param = str(check["resource"]).rsplit(".", 1)[-1]
    return (check["check_id"], Path(check["file_path"]).name, param) in _param_skips()


def test_checkov_finds_no_failed_checks_in_the_bicep() -> None:
    report = _checkov_report()
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['file_path']} {c['resource']}"
              for c in report["results"]["failed_checks"] if not _skipped_param_failure(c)]
    assert failed == []
    assert summary["parsing_errors"] == 0, "checkov could not parse some .bicep files"
    assert summary["passed"] >= 20


def test_every_checkov_skip_is_justified_inline_and_still_needed() -> None:
    inline: set[tuple[str, str]] = set()
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            match = _SKIP.search(line)
            if match:
                check, colon, reason = match.groups()
                assert colon and len(reason.strip()) >= 30, f"{path.name}: {check} needs a reason"
                inline.add((check, path.name))
    results = _checkov_report()["results"]
    used = {(c["check_id"], Path(c["file_path"]).name) for c in results["skipped_checks"]}
    used |= {(c["check_id"], Path(c["file_path"]).name) for c in results["failed_checks"]
             if _skipped_param_failure(c)}
    assert inline == used


# --- 5. policy XML -------------------------------------------------------------------------------


def _policy() -> ET.Element:
    return ET.fromstring(POLICY.read_text())


@pytest.mark.parametrize("path", sorted(BICEP.rglob("*.xml")), ids=lambda p: p.name)
def test_policy_xml_is_well_formed(path: Path) -> None:
    root = ET.fromstring(path.read_text())
    assert root.tag == "policies"
    assert [child.tag for child in root] == ["inbound", "backend", "outbound", "on-error"]


def test_policy_rate_limits_each_subscription_per_second() -> None:
    (limit,) = _policy().findall("./inbound/rate-limit-by-key")
    assert limit.get("calls") == "__RATE_LIMIT_CALLS__"
    assert limit.get("renewal-period") == "1"
    assert limit.get("counter-key") == "@(context.Subscription.Id)"
    assert limit.get("retry-after-header-name") == "Retry-After"


def test_policy_limits_concurrent_backend_calls() -> None:
    (limit,) = _policy().findall("./backend/limit-concurrency")
    assert limit.get("max-count") == "__MAX_CONCURRENCY__"
    assert [child.tag for child in limit] == ["forward-request"]


def test_policy_forward_timeout_sits_between_the_app_deadline_and_genesys_budget() -> None:
    forwards = _policy().findall(".//forward-request")
    assert len(forwards) == 1
    timeout_ms = int(forwards[0].get("timeout-ms", "0"))
    assert 2500 < timeout_ms < 3000
    assert forwards[0].get("timeout") is None


def _throttle_answer(when: ET.Element) -> tuple[dict[str, str], dict[str, Any]]:
    """The Retry-After and Content-Type values and the JSON body a 429 branch answers."""
    assert when.find("./return-response/set-status").get("code") == "429"
    headers = {h.get("name"): h.find("value").text
               for h in when.findall("./return-response/set-header")}
    return headers, json.loads(when.find("./return-response/set-body").text)


def test_policy_answers_a_rate_limited_call_429_with_its_retry_after_and_a_json_body() -> None:
    (when,) = [w for w in _policy().findall("./on-error/choose/when")
               if "RateLimitExceeded" in w.get("condition")]
    headers, body = _throttle_answer(when)
    assert "retryAfterSeconds" in headers["Retry-After"]
    assert headers["Content-Type"] == "application/json"
    assert body["error"] == "too_many_requests" and body["field"] is None


def test_policy_answers_a_call_over_the_concurrency_cap_429_and_json_on_either_path() -> None:
    # Microsoft documents only the status of a limit-concurrency rejection, not whether it
    # reaches on-error (https://learn.microsoft.com/azure/api-management/limit-concurrency-policy),
    # so the policy rewrites it both as an error and as a response passing through outbound.
    (as_error,) = [w for w in _policy().findall("./on-error/choose/when")
                   if "limit-concurrency" in w.get("condition")]
    (as_response,) = _policy().findall("./outbound/choose/when")
    assert "StatusCode == 429" in as_response.get("condition")
    for when in (as_error, as_response):
        headers, body = _throttle_answer(when)
        assert int(headers["Retry-After"]) >= 1
        assert headers["Content-Type"] == "application/json"
        assert body["error"] == "too_many_requests" and body["field"] is None


def test_the_app_never_answers_429_so_the_outbound_rewrite_only_touches_the_gateways() -> None:
    import ast

    tree = ast.parse((ROOT / "shared" / "dip" / "contract.py").read_text(encoding="utf-8"))
    statuses = {node.args[0].value for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "ContractError" and isinstance(node.args[0], ast.Constant)}
    assert statuses and 429 not in statuses


def test_policy_limits_the_request_body_to_8_kib_with_a_413() -> None:
    (validate,) = _policy().findall("./inbound/validate-content")
    assert validate.get("max-size") == "8192"
    assert validate.get("size-exceeded-action") == "prevent"
    statuses = {when.find("./return-response/set-status").get("code"): when
                for when in _policy().findall("./on-error/choose/when")}
    body = json.loads(statuses["413"].find("./return-response/set-body").text)
    assert body["error"] == "body_too_large"
    from shared.dip.contract import MAX_BODY_BYTES

    assert MAX_BODY_BYTES == 8192


def test_policy_routes_to_the_backend_that_holds_the_function_key() -> None:
    (backend,) = _policy().findall("./inbound/set-backend-service")
    assert backend.get("backend-id") == "__BACKEND_ID__"


def test_every_gateway_error_body_has_the_apps_error_shape() -> None:
    bodies = _policy().findall(".//return-response/set-body")
    assert len(bodies) >= 5
    for body in bodies:
        assert set(json.loads(body.text)) == {"error", "message", "field"}


def test_tuning_defaults_in_main_bicep_match_the_code_defaults() -> None:
    """main.bicep restates shared/settings.py's defaults; a literal that drifts fails here."""
    from shared.settings import SETTINGS

    text = (ROOT / "bicep" / "main.bicep").read_text(encoding="utf-8")
    block = re.search(r"var tuningDefaults = \{(.*?)\n\}", text, re.DOTALL)
    assert block is not None
    literals = dict(re.findall(r"^\s+([A-Z_]+): '([^']*)'", block.group(1), re.MULTILINE))
    defaults = {spec.name: spec.default for spec in SETTINGS}
    assert literals, "no literal tuning values found"
    for name, value in literals.items():
        assert defaults[name] == value, f"{name}: main.bicep {value}, code {defaults[name]}"
