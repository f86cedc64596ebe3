"""The private data plane: production is private, dev is not.

With prod.bicepparam, both host storage accounts (blob, file, queue, table), customer storage
(table), Redis and Key Vault refuse public networks and each is reached through a private
endpoint whose DNS zone group registers it in the zone of its sub-resource; both function apps
(lookup and operator) send all their traffic through one integration subnet; Kudu admits the
deployer ranges only, and production without one stops before it deploys. With dev.bicepparam
none of that is deployed. Each test works the deployment out from the templates, module by
module, with the values main.bicep passes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from tests.support.bicep import (
    BICEP,
    MAIN,
    DeploymentFailure,
    Template,
    bicepparam_values,
    decorators,
    deployment_values,
    dotted,
    module,
    module_call,
    module_condition,
    parsed,
    resolve,
    resource,
    resources_of,
)

# Production as README's deploy command deploys it: prod.bicepparam and a deployer range.
PROD = deployment_values(BICEP / "prod.bicepparam")
DEV = bicepparam_values(BICEP / "dev.bicepparam")
DEPLOYER_RANGE = "203.0.113.7/32"

# The zone of each private link sub-resource (Azure Private Endpoint DNS configuration; Azure
# Managed Redis with Azure Private Link, ms.date 11/15/2024, for redisEnterprise).
ZONES = {
    "table": "privatelink.table.core.windows.net",
    "blob": "privatelink.blob.core.windows.net",
    "file": "privatelink.file.core.windows.net",
    "queue": "privatelink.queue.core.windows.net",
    "vault": "privatelink.vaultcore.azure.net",
    "redisEnterprise": "privatelink.redis.azure.net",
}
# main.bicep's module symbol -> the module and the private link sub-resources it must connect.
STORES = {
    # The host writes its diagnostic events to a table in its own account.
    "hostStorage": ("storage", ["blob", "file", "queue", "table"]),
    "operatorHostStorage": ("storage", ["blob", "file", "queue", "table"]),
    "dataStorage": ("storage", ["table"]),
    "redis": ("redis", ["redisEnterprise"]),
    "keyVault": ("key-vault", ["vault"]),
}
# The resource each store module closes, and where its network settings live.
STORE_RESOURCE = {
    "storage": "storageAccount",
    "redis": "redisCluster",
    "key-vault": "vault",
}
VNET_ID = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet"


class Paths(Template):
    """A template's names, plus property paths into their object values (a.b.c), which the
    shared evaluator leaves unresolved; variables resolve with paths too."""

    def _walk(self, name: str) -> tuple[bool, Any]:
        head, *rest = name.split(".")
        if not rest or not super().__contains__(head):
            return False, None
        value = super().__getitem__(head)
        for part in rest:
            if not isinstance(value, dict) or part not in value:
                return False, None
            value = value[part]
        return True, value

    def __getitem__(self, name: str) -> Any:
        if super().__contains__(name):
            return super().__getitem__(name)
        found, value = self._walk(name)
        if not found:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (super().__contains__(name) or self._walk(name)[0])


def _values(params: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {"environmentName": "prod", "publisherEmail": "ops@example.com", **params, **extra}


def _network(values: Mapping[str, Any]) -> dict[str, Any]:
    """What the network module deploys and outputs for main.bicep's call."""
    main = parsed(MAIN)
    env = Paths(main, values)
    doc = module("network")
    call = module_call(main, "modules/network.bicep")["params"]
    net = Paths(
        doc, {**{k: resolve(v, env) for k, v in call.items()}, "virtualNetwork.id": VNET_ID}
    )
    out = {name: resolve(o["value"], net) for name, o in doc["outputs"].items()}
    vnet = resource(doc, "virtualNetwork")
    zones = doc["resources"]["privateDnsZones"]["config"]
    links = doc["resources"]["privateDnsZones_virtualNetworkLinks"]["config"]
    return {
        "deployed": resolve(module_condition(main, "modules/network.bicep"), env),
        "outputs": out,
        "subnets": resolve(vnet["properties"]["subnets"], net),
        "address_space": resolve(vnet["properties"]["addressSpace"]["addressPrefixes"], net),
        "zones": resolve(zones, net),
        "links": resolve(links, net),
        "endpoint_rules": resolve(
            resource(doc, "privateEndpointNetworkSecurityGroup")["properties"]["securityRules"],
            net,
        ),
    }


def _main_env(values: Mapping[str, Any]) -> Paths:
    """main.bicep's names with the network module's outputs (when it is deployed) and the
    other module outputs the store and app calls read."""
    network = _network(values)
    outputs = {f"network.outputs.{k}": v for k, v in network["outputs"].items()}
    return Paths(
        parsed(MAIN),
        {
            **values,
            **outputs,
            "apim.outputs.publicIpAddresses": [],
            "apim.outputs.systemAssignedMIPrincipalId": "apim-principal",
            "entraApp.outputs.clientId": "app-client-id",
        },
    )


def _call(symbol: str, env: Mapping[str, Any]) -> dict[str, Any]:
    config = parsed(MAIN)["modules"][symbol]["config"]
    body = config.get("config", config) if "condition" in config else config
    return {k: resolve(v, env) for k, v in body["params"].items()}


def _store(symbol: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A store module as main.bicep calls it: its network properties and its endpoints."""
    name, _ = STORES[symbol]
    doc = module(name)
    env = Paths(doc, _call(symbol, _main_env(values)))
    props = resolve(resource(doc, STORE_RESOURCE[name])["properties"], env)
    endpoints: list[dict[str, Any]] = []
    for mod in doc["modules"].values():
        assert mod["detail"]["path"] == "private-endpoint.bicep"
        config = mod["config"]
        if "loop_type" in config:
            endpoints.extend(c["params"] for c in resolve(config, env))
        elif resolve(config["condition"], env):
            endpoints.append(resolve(config["config"]["params"], env))
    return {"properties": props, "endpoints": endpoints}


# main.bicep's module symbol of each function app -> its module. Both sit on one plan and
# take the same network values.
APPS = {"functionApp": "function-app", "operatorApp": "operator-app"}


def _site(values: Mapping[str, Any], app: str = "functionApp") -> dict[str, Any]:
    """A function app's network properties as main.bicep deploys it."""
    doc = module(APPS[app])
    app_env = Template(doc, _call(app, _main_env(values)))
    (site,) = resources_of(doc, "Microsoft.Web/sites")
    return {
        k: resolve(v, app_env)
        for k, v in site["properties"].items()
        if k in {"virtualNetworkSubnetId", "outboundVnetRouting", "publicNetworkAccess"}
    } | {
        k: resolve(v, app_env)
        for k, v in site["properties"]["siteConfig"].items()
        if k.startswith("scm") or k == "vnetRouteAllEnabled"
    }


# --- the switch ----------------------------------------------------------------------------------


def test_production_turns_private_networking_on_and_dev_leaves_it_off() -> None:
    assert PROD["privateNetworking"] is True
    assert DEV["privateNetworking"] is False
    # A deployment that names no parameter file (azd's main.parameters.json) is dev-like.
    assert parsed(MAIN)["parameters"]["privateNetworking"]["default"] is False


# --- production ----------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", list(STORES))
def test_production_closes_each_data_store_and_the_vault_to_public_networks(symbol: str) -> None:
    props = _store(symbol, _values(PROD))["properties"]
    assert props["publicNetworkAccess"] == "Disabled"
    if "networkAcls" in props:
        assert props["networkAcls"]["defaultAction"] == "Deny"


@pytest.mark.parametrize("symbol", list(STORES))
def test_production_reaches_each_store_through_a_private_endpoint_in_its_zone(
    symbol: str,
) -> None:
    network = _network(_values(PROD))["outputs"]
    endpoints = _store(symbol, _values(PROD))["endpoints"]
    _, groups = STORES[symbol]
    assert [e["groupId"] for e in endpoints] == groups
    for endpoint in endpoints:
        assert endpoint["subnetResourceId"] == network["privateEndpointSubnetResourceId"]
        assert endpoint["privateDnsZoneResourceId"].endswith(
            f"/privateDnsZones/{ZONES[endpoint['groupId']]}"
        )
        assert dotted(endpoint["privateLinkServiceId"]) is None  # resolved only at deployment


def test_each_private_endpoint_connects_its_group_and_registers_in_its_zone() -> None:
    doc = module("private-endpoint")
    values = {
        "name": "pe-x",
        "subnetResourceId": "/subnets/private-endpoints",
        "privateLinkServiceId": "/vaults/kv",
        "groupId": "vault",
        "privateDnsZoneResourceId": f"/privateDnsZones/{ZONES['vault']}",
    }
    env = Template(doc, values)
    endpoint = resolve(resource(doc, "privateEndpoint")["properties"], env)
    assert endpoint["subnet"] == {"id": "/subnets/private-endpoints"}
    (connection,) = endpoint["privateLinkServiceConnections"]
    assert connection["properties"] == {"privateLinkServiceId": "/vaults/kv", "groupIds": ["vault"]}
    group = resource(doc, "privateEndpoint_privateDnsZoneGroup")
    assert (group["parent"], group["name"]) == ("privateEndpoint", "default")
    (config,) = resolve(group["properties"], env)["privateDnsZoneConfigs"]
    assert config["properties"] == {"privateDnsZoneId": f"/privateDnsZones/{ZONES['vault']}"}
    # Every sub-resource the deployment connects is a group the module accepts.
    assert sorted(decorators(doc["parameters"]["groupId"])["allowed"]) == sorted(ZONES)


def test_production_network_has_the_app_and_endpoint_subnets_and_linked_zones() -> None:
    network = _network(_values(PROD))
    assert network["deployed"] is True
    subnets = {s["name"]: s["properties"] for s in network["subnets"]}
    assert set(subnets) == {"apim-outbound", "app-integration", "private-endpoints"}
    app = subnets["app-integration"]
    assert [d["properties"]["serviceName"] for d in app["delegations"]] == [
        "Microsoft.Web/serverFarms"
    ]
    # The endpoints' subnet enforces its network security group on endpoint traffic.
    assert (
        subnets["private-endpoints"]["privateEndpointNetworkPolicies"]
        == "NetworkSecurityGroupEnabled"
    )
    assert all("networkSecurityGroup" in s for s in subnets.values())
    assert network["address_space"] == [s["addressPrefix"] for s in subnets.values()]
    assert sorted(z["name"] for z in network["zones"]) == sorted(ZONES.values())
    assert len(network["links"]) == len(ZONES)
    assert all(link["properties"]["virtualNetwork"] == {"id": VNET_ID} for link in network["links"])
    assert all(link["properties"]["registrationEnabled"] is False for link in network["links"])
    zone_ids = network["outputs"]["privateDnsZoneResourceIds"]
    assert {k: v.rsplit("/", 1)[-1] for k, v in zone_ids.items()} == ZONES


@pytest.mark.parametrize("tier", ["Developer", "Premium"])
def test_a_classic_tier_gets_a_private_network_without_a_gateway_subnet(tier: str) -> None:
    # Classic gateways call from static public addresses, so the network holds only the app
    # and endpoint subnets.
    network = _network(_values(PROD, apimSkuName=tier))
    assert network["deployed"] is True
    assert [s["name"] for s in network["subnets"]] == ["app-integration", "private-endpoints"]
    assert network["address_space"] == ["10.90.1.0/24", "10.90.2.0/26"]
    assert network["outputs"]["subnetResourceId"] == ""


@pytest.mark.parametrize("app", list(APPS))
def test_production_apps_send_all_their_traffic_through_the_integration_subnet(app: str) -> None:
    site = _site(_values(PROD), app)
    app_subnet = _network(_values(PROD))["outputs"]["appSubnetResourceId"]
    assert app_subnet.endswith("/subnets/app-integration")
    assert site["virtualNetworkSubnetId"] == app_subnet
    assert site["outboundVnetRouting"] == {
        "allTraffic": True,
        "applicationTraffic": True,
        "contentShareTraffic": True,
    }
    assert site["vnetRouteAllEnabled"] is True


def _content_over_vnet(values: Mapping[str, Any], app: str) -> Any:
    doc = module(APPS[app])
    env = Template(doc, _call(app, _main_env(values)))
    return resolve(doc["variables"]["platformSettings"]["value"]["WEBSITE_CONTENTOVERVNET"], env)


@pytest.mark.parametrize("app", list(APPS))
def test_production_apps_reach_their_content_share_over_the_network(app: str) -> None:
    assert _content_over_vnet(_values(PROD), app) == "1"
    assert _content_over_vnet(_values(DEV, environmentName="dev"), app) == "0"


@pytest.mark.parametrize("app", list(APPS))
@pytest.mark.parametrize("ranges", [[DEPLOYER_RANGE], [DEPLOYER_RANGE, "198.51.100.0/24"]])
def test_production_kudu_admits_only_the_deployer_ranges(ranges: list[str], app: str) -> None:
    site = _site(_values(PROD, deployerIpRanges=ranges), app)
    assert site["scmIpSecurityRestrictionsUseMain"] is False
    assert site["scmIpSecurityRestrictionsDefaultAction"] == "Deny"
    assert [(r["ipAddress"], r["action"]) for r in site["scmIpSecurityRestrictions"]] == [
        (r, "Allow") for r in ranges
    ]


# --- dev -----------------------------------------------------------------------------------------


def test_dev_deploys_no_network_and_keeps_the_public_endpoints() -> None:
    values = _values(DEV, environmentName="dev")
    assert _network(values)["deployed"] is False
    for symbol in STORES:
        store = _store(symbol, values)
        assert store["properties"]["publicNetworkAccess"] == "Enabled", symbol
        assert store["endpoints"] == [], symbol
    for app in APPS:
        site = _site(values, app)
        assert site["virtualNetworkSubnetId"] is None, app
        assert set(site["outboundVnetRouting"].values()) == {False}, app
        assert site["scmIpSecurityRestrictionsDefaultAction"] == "Allow", app


@pytest.mark.parametrize("app", list(APPS))
def test_dev_with_deployer_ranges_restricts_kudu_too(app: str) -> None:
    site = _site(_values(DEV, environmentName="dev", deployerIpRanges=[DEPLOYER_RANGE]), app)
    assert site["scmIpSecurityRestrictionsDefaultAction"] == "Deny"
    assert [r["ipAddress"] for r in site["scmIpSecurityRestrictions"]] == [DEPLOYER_RANGE]


# --- fail early ----------------------------------------------------------------------------------


@pytest.mark.parametrize("app", list(APPS))
@pytest.mark.parametrize("opened", [["0.0.0.0/0"], [DEPLOYER_RANGE, "::/0"], [""]])
@pytest.mark.parametrize("params", ["prod", "dev"])
def test_a_deployer_range_that_admits_everyone_fails_early(
    app: str, opened: list[str], params: str
) -> None:
    values = _values(PROD if params == "prod" else DEV, deployerIpRanges=opened)
    with pytest.raises(DeploymentFailure, match="would admit everyone to Kudu"):
        _site(values, app)


@pytest.mark.parametrize("app", list(APPS))
def test_production_without_a_deployer_range_fails_early_naming_it(app: str) -> None:
    # prod.bicepparam alone: Kudu would admit nobody, and no code could reach either app.
    prod_file = bicepparam_values(BICEP / "prod.bicepparam")
    assert prod_file["deployerIpRanges"] == []
    with pytest.raises(DeploymentFailure, match="deployerIpRanges is required"):
        _site(_values(prod_file), app)


def test_a_storage_subnet_without_services_fails_the_deployment_early() -> None:
    doc = module("storage")
    env = Template(doc, {"name": "st", "privateEndpointSubnetResourceId": "/subnets/pe"})
    (endpoints,) = doc["modules"].values()
    with pytest.raises(DeploymentFailure, match="privateEndpointServices"):
        resolve(endpoints["config"], env)


def test_the_private_endpoints_answer_the_apps_integration_subnet_alone() -> None:
    # API Management's outbound subnet sits in the same network: its traffic, and anything
    # else in the network, is denied at the endpoints; the apps' subnet reaches their ports.
    network = _network(_values(PROD))
    subnets = {s["name"]: s["properties"] for s in network["subnets"]}
    rules = {r["name"]: r["properties"] for r in network["endpoint_rules"]}
    allow, deny = rules["allow-app-integration"], rules["deny-rest-of-network"]
    assert allow["access"] == "Allow" and allow["direction"] == "Inbound"
    assert allow["sourceAddressPrefix"] == subnets["app-integration"]["addressPrefix"]
    assert allow["destinationAddressPrefix"] == subnets["private-endpoints"]["addressPrefix"]
    assert set(allow["destinationPortRanges"]) == {"443", "445", "10000", "8500-8599"}
    assert deny["access"] == "Deny" and deny["sourceAddressPrefix"] == "VirtualNetwork"
    assert allow["priority"] < deny["priority"] < 65000  # before the default AllowVnetInBound
    apim = subnets["apim-outbound"]["addressPrefix"]
    assert apim != allow["sourceAddressPrefix"]
    nsg_id = subnets["private-endpoints"]["networkSecurityGroup"]["id"]
    assert "endpoints" in json.dumps(nsg_id)
