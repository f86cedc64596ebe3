"""How API Management reaches the lookup app, tier by tier.

Each tier offered takes the path Microsoft documents for it: the classic tiers from static
public addresses, Standard v2 through a delegated, guarded subnet with service endpoints; the
lookup app admits that path and nothing else (operators use the operator app). A gateway or an
app without exactly one path fails the deployment early, nothing admits the ApiManagement
service tag, cipher settings go only to tiers that accept them, and every tier offered is known
to the API version and the SDK model. Either way the path is the same with private networking
on: the app's inbound side stays public and restricted, its outbound side is private
(tests/bicep/test_private_data_plane.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import bicep_model_check as mc
from tests.support.bicep import (
    BICEP_FILES,
    COMMAND_LINE_VALUES,
    MAIN,
    MODULES,
    DeploymentFailure,
    Template,
    decorators,
    dotted,
    function,
    module,
    module_call,
    module_condition,
    parsed,
    resolve,
    resource,
    resources_of,
    unquoted,
)

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


def _apim_tiers() -> list[str]:
    return decorators(parsed(MAIN)["parameters"]["apimSkuName"])["allowed"]


def _deployment_for_tier(tier: str, private_networking: bool = False) -> dict[str, Any]:
    """What main.bicep and its modules build for one API Management tier."""
    main = parsed(MAIN)
    values = {
        "apimSkuName": tier,
        "environmentName": "prod",
        "publisherEmail": "ops@example.com",
        # Operators' ranges open the operator app, never the lookup app.
        "operatorIpRanges": [OPERATOR_RANGE],
        "privateNetworking": private_networking,
        **COMMAND_LINE_VALUES,
    }
    env = Template(main, values)
    network_call = module_call(main, "modules/network.bicep")["params"]
    out: dict[str, Any] = {
        "network": resolve(module_condition(main, "modules/network.bicep"), env),
        "apim_subnet_in_network": resolve(network_call["apimSubnetEnabled"], env),
        "subnet": env["apimSubnetResourceId"],
    }
    # The gateway.
    apim = module("apim")
    call = module_call(main, "modules/apim.bicep")["params"]
    apim_env = Template(
        apim,
        {
            **{k: resolve(v, env) for k, v in call.items()},
            "apiManagement.properties.publicIPAddresses": [GATEWAY_IP],
        },
    )
    (service,) = resources_of(apim, "Microsoft.ApiManagement/service")
    out["gateway"] = resolve(service["properties"], apim_env)
    env = Template(
        main,
        {
            **values,
            # With private networking, the network module's outputs the app call reads.
            "network.outputs.appSubnetResourceId": "/subnets/app-integration",
            "network.outputs.privateEndpointSubnetResourceId": "/subnets/private-endpoints",
            "network.outputs.privateDnsZoneResourceIds": {},
            "apim.outputs.publicIpAddresses": resolve(
                apim["outputs"]["publicIpAddresses"]["value"], apim_env
            ),
            "apim.outputs.systemAssignedMIPrincipalId": "apim-principal",
            "entraApp.outputs.clientId": "app-client-id",
        },
    )
    # The function app's inbound rules.
    app = module("function-app")
    call = module_call(main, "modules/function-app.bicep")["params"]
    app_env = Template(app, {k: resolve(v, env) for k, v in call.items()})
    (site,) = resources_of(app, "Microsoft.Web/sites")
    config = site["properties"]["siteConfig"]
    out["app_rules"] = resolve(config["ipSecurityRestrictions"], app_env)
    out["app_default"] = resolve(config["ipSecurityRestrictionsDefaultAction"], app_env)
    return out


def test_every_tier_offered_has_a_documented_path_to_the_app() -> None:
    assert _apim_tiers() == list(DOCUMENTED_APIM_PATHS)
    assert decorators(module("apim")["parameters"]["skuName"])["allowed"] == _apim_tiers()
    table = parsed(MAIN)["variables"]["apimNetworkPathOfTier"]["value"]
    assert unquoted(table) == DOCUMENTED_APIM_PATHS


@pytest.mark.parametrize("private_networking", [False, True], ids=["public", "private"])
@pytest.mark.parametrize("tier", list(DOCUMENTED_APIM_PATHS))
def test_each_tier_reaches_the_app_by_its_documented_path(
    tier: str, private_networking: bool
) -> None:
    built = _deployment_for_tier(tier, private_networking)
    gateway = built["gateway"]
    if DOCUMENTED_APIM_PATHS[tier] == "staticPublicIp":
        # A network exists only for the private data plane, and has no gateway subnet.
        assert built["network"] is private_networking
        assert built["apim_subnet_in_network"] is False and built["subnet"] == ""
        assert gateway["virtualNetworkType"] == "None"
        assert "virtualNetworkConfiguration" not in gateway
        assert built["app_rules"] == [
            {
                "name": "apim-0",
                "description": "API Management gateway",
                "ipAddress": f"{GATEWAY_IP}/32",
                "action": "Allow",
                "priority": 100,
            },
        ]
    else:
        subnet = built["subnet"]
        assert built["network"] is True and built["apim_subnet_in_network"] is True
        assert subnet.endswith("/virtualNetworks/vnet-dipguard-prod/subnets/apim-outbound")
        assert gateway["virtualNetworkType"] == "External"
        assert gateway["virtualNetworkConfiguration"] == {"subnetResourceId": subnet}
        assert built["app_rules"] == [
            {
                "name": "apim-subnet",
                "description": "API Management gateway (outbound virtual network integration)",
                "vnetSubnetResourceId": subnet,
                "action": "Allow",
                "priority": 100,
            },
        ]
    # Nothing else: everything unmatched is denied.
    assert built["app_default"] == "Deny"


def test_nothing_admits_the_api_management_service_tag() -> None:
    # It covers API Management's control plane, not the v2 gateways' calls to backends, and
    # every API Management customer shares it.
    for path in BICEP_FILES:
        text = json.dumps(parsed(path))
        assert "ServiceTag" not in text and "'ApiManagement'" not in text, path.name


def _gateway_properties(tier: str, subnet: str) -> Any:
    apim = module("apim")
    (service,) = resources_of(apim, "Microsoft.ApiManagement/service")
    env = Template(apim, {"skuName": tier, "outboundSubnetResourceId": subnet})
    return resolve(service["properties"], env)


@pytest.mark.parametrize(
    ("tier", "subnet"), [("StandardV2", ""), ("Developer", "/subnets/x"), ("Premium", "/subnets/x")]
)
def test_a_gateway_without_its_tiers_path_fails_the_deployment_early(
    tier: str, subnet: str
) -> None:
    with pytest.raises(DeploymentFailure, match="outboundSubnetResourceId"):
        _gateway_properties(tier, subnet)


@pytest.mark.parametrize(("ips", "subnet"), [([], ""), ([GATEWAY_IP], "/subnets/x")])
def test_an_app_with_no_or_two_gateway_paths_fails_the_deployment_early(
    ips: list[str], subnet: str
) -> None:
    app = module("function-app")
    (site,) = resources_of(app, "Microsoft.Web/sites")
    env = Template(app, {"apimPublicIpAddresses": ips, "apimSubnetResourceId": subnet})
    with pytest.raises(DeploymentFailure, match="exactly one"):
        resolve(site["properties"]["siteConfig"]["ipSecurityRestrictions"], env)


def test_the_integration_subnet_is_delegated_guarded_and_has_the_service_endpoints() -> None:
    network = module("network")
    (vnet,) = resources_of(network, "Microsoft.Network/virtualNetworks")
    env = Template(network, {"name": "vnet", "networkSecurityGroupName": "nsg"})
    (subnet,) = resolve(vnet["properties"]["subnets"], env)
    props = network["variables"]["apimSubnet"]["value"]["properties"]
    assert subnet["name"] == "apim-outbound" and subnet["properties"]["addressPrefix"] == (
        "10.90.0.0/24"
    )
    # integrate-vnet-outbound: delegated to Microsoft.Web/serverFarms, with an NSG.
    assert [d["properties"]["serviceName"] for d in props["delegations"]] == [
        "Microsoft.Web/serverFarms"
    ]
    assert dotted(props["networkSecurityGroup"]["id"]) == "networkSecurityGroup.id"
    nsg = resource(network, "networkSecurityGroup")
    assert resources_of(network, "Microsoft.Network/networkSecurityGroups")[0] == nsg
    # A service endpoint, so the app's access restriction can name it.
    assert [e["service"] for e in props["serviceEndpoints"]] == ["Microsoft.Web"]
    # main.bicep computes the subnet's ID from the same names it gives the module.
    main = parsed(MAIN)
    call = module_call(main, "modules/network.bicep")["params"]
    assert (call["name"], call["subnetName"]) == ("apimVnetName", "apimSubnetName")
    subnet_id = function(
        main["variables"]["apimSubnetResourceId"]["value"]["operator"]["operands"]["true_value"],
        "resource_id",
    )
    assert subnet_id is not None
    assert (subnet_id["resource_name_1"], subnet_id["resource_name_2"]) == (
        "apimVnetName",
        "apimSubnetName",
    )
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

    (service,) = [
        r
        for r in mc.iter_resources(MODULES / "apim.bicep", module("apim"))
        if r.type == "Microsoft.ApiManagement/service"
    ]
    assert service.api_version == "2024-05-01"
    known = {member.value for member in SkuType}
    assert set(_apim_tiers()) <= known
    assert "PremiumV2" not in _apim_tiers() and "BasicV2" not in _apim_tiers()
