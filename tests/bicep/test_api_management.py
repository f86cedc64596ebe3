"""The API Management service, API, policy wiring, backend and Genesys product.

The tier is a parameter without Consumption; the API is imported from the repository's
openapi.json; the policy is loaded from its XML file with every placeholder filled; rate and
concurrency limits have their documented defaults; the backend holds no credential, and the
policy's token is for the same app registration the function app checks; callers need no
subscription key (there is no product or subscription), the gateway reads no key from the
query string, and the ip-filter of Genesys's ranges is built only when ranges are given.
"""

from __future__ import annotations

import ipaddress
import json
import re
import xml.etree.ElementTree as ET

from tests.support.bicep import (
    MAIN,
    MODULES,
    POLICY,
    ROOT,
    decorators,
    default_of,
    function,
    module,
    module_call,
    parsed,
    resources_of,
    unquoted,
)


def test_api_management_tier_is_a_parameter_without_consumption() -> None:
    for doc, param in ((module("apim"), "skuName"), (parsed(MAIN), "apimSkuName")):
        allowed = decorators(doc["parameters"][param])["allowed"]
        assert "Consumption" not in allowed
        assert "Developer" in allowed and "StandardV2" in allowed
    (service,) = resources_of(module("apim"), "Microsoft.ApiManagement/service")
    assert service["identity"]["type"] == "SystemAssigned"
    tls = unquoted(module("apim")["variables"]["securityProperties"]["value"])
    prefix = "Microsoft.WindowsAzure.ApiManagement.Gateway.Security."
    for protocol in (
        "Protocols.Tls10",
        "Protocols.Tls11",
        "Backend.Protocols.Tls10",
        "Backend.Protocols.Tls11",
    ):
        assert tls[prefix + protocol] == "False"


def test_the_api_is_imported_from_the_repository_openapi_document() -> None:
    api_module = module("apim-api")
    (api,) = resources_of(api_module, "Microsoft.ApiManagement/service/apis")
    props = api["properties"]
    assert props["format"] == "openapi+json"
    load = function(props["value"], "load_text_content")
    assert load is not None
    assert (MODULES / load["file_path"]).resolve() == ROOT / "openapi.json"
    assert props["protocols"] == ["https"]


def test_no_subscription_key_is_required_and_none_is_read_from_a_query_parameter_callers_use() -> (
    None
):
    api_module = module("apim-api")
    (api,) = resources_of(api_module, "Microsoft.ApiManagement/service/apis")
    props = api["properties"]
    assert props["subscriptionRequired"] is False
    names = props["subscriptionKeyParameterNames"]
    assert names["header"] == "Ocp-Apim-Subscription-Key"
    assert names["query"] not in {"subscription-key", "access_token", "code", "key"}
    for rtype in ("products", "products/apis", "subscriptions"):
        assert resources_of(api_module, f"Microsoft.ApiManagement/service/{rtype}") == []
    assert "genesysSubscriptionId" not in api_module["outputs"]
    assert "APIM_SUBSCRIPTION_ID" not in parsed(MAIN)["outputs"]


def test_the_policy_is_loaded_from_the_xml_file_with_its_placeholders_filled() -> None:
    api_module = module("apim-api")
    load = function(api_module["variables"]["policyXml"]["value"], "load_text_content")
    assert load is not None and (MODULES / load["file_path"]).resolve() == POLICY
    (policy,) = resources_of(api_module, "Microsoft.ApiManagement/service/apis/policies")
    assert policy["properties"]["format"] == "xml"
    assert policy["properties"]["value"] == "policyDeployed"
    text = json.dumps(
        [api_module["variables"][name] for name in ("policyWithCaller", "policyDeployed")]
    )
    replaced = set(re.findall(r"__[A-Z_]+__", text))
    assert replaced == set(re.findall(r"__[A-Z_]+__", POLICY.read_text()))
    for param in (
        "rateLimitCallsPerSecond",
        "rateLimitPerIpCallsPerSecond",
        "maxConcurrentCalls",
        "tenantId",
        "genesysClientAppId",
        "lookupApiAudience",
        "lookupAppRole",
        "ipFilterXml",
    ):
        assert f'"{param}"' in text, param


def test_rate_and_concurrency_limits_default_to_1000_per_second_and_200() -> None:
    for doc in (module("apim-api"), parsed(MAIN)):
        assert default_of(doc, "rateLimitCallsPerSecond") == 1000
        assert default_of(doc, "rateLimitPerIpCallsPerSecond") == 1000
        assert default_of(doc, "maxConcurrentCalls") == 200
        assert default_of(doc, "genesysIpRanges") == []
    params = module_call(parsed(MAIN), "modules/apim-api.bicep")["params"]
    assert params["rateLimitCallsPerSecond"] == "rateLimitCallsPerSecond"
    assert params["maxConcurrentCalls"] == "maxConcurrentCalls"
    assert params["rateLimitPerIpCallsPerSecond"] == "rateLimitPerIpCallsPerSecond"
    assert params["genesysIpRanges"] == "genesysIpRanges"


def test_the_backend_holds_no_credential_and_the_token_audience_is_the_apps_registration() -> None:
    api_module = module("apim-api")
    assert resources_of(api_module, "Microsoft.ApiManagement/service/namedValues") == []
    (backend,) = resources_of(api_module, "Microsoft.ApiManagement/service/backends")
    assert "credentials" not in backend["properties"]
    assert backend["properties"]["url"].endswith("/api")
    deployed = json.dumps(api_module["variables"]["policyDeployed"])
    assert '"__BACKEND_AUDIENCE__"' in deployed and '"backendAudience"' in deployed
    # main.bicep gives the policy's audience and the app's authentication the same client ID.
    main = parsed(MAIN)
    api_call = module_call(main, "modules/apim-api.bicep")["params"]
    app_call = module_call(main, "modules/function-app.bicep")["params"]
    assert api_call["backendAudience"] == app_call["authClientId"] == "appClientId"


def _ip_filter_xml(ranges: list[str]) -> str:
    """apim-api.bicep's ipFilterXml for these ranges, with parseCidr as ARM computes it."""
    variables = module("apim-api")["variables"]
    choice = variables["ipFilterXml"]["value"]["operator"]["operands"]
    assert function(choice["condition"], "empty") is not None
    if not ranges:
        return str(choice["true_value"])
    detail = variables["ipFilterRanges"]["value"]["loop_type"]["detail"]
    assert detail["array_name"] == "genesysIpRanges"
    item = detail["item_name"]
    template = str(variables["ipFilterRanges"]["value"]["config"])
    pieces = []
    for cidr in ranges:
        network = ipaddress.ip_network(cidr, strict=False)
        text = template.replace(f"${{parseCidr({item}).network}}", str(network.network_address))
        pieces.append(
            text.replace(f"${{parseCidr({item}).broadcast}}", str(network.broadcast_address))
        )
    return str(choice["false_value"]).replace("${join(ipFilterRanges, '')}", "".join(pieces))


def test_ip_filter_is_deployed_only_when_genesys_ranges_are_given() -> None:
    def inbound_with(ranges: list[str]) -> ET.Element:
        text = POLICY.read_text().replace("__GENESYS_IP_FILTER__", _ip_filter_xml(ranges))
        inbound = ET.fromstring(text).find("./inbound")
        assert inbound is not None
        return inbound

    assert inbound_with([]).findall("ip-filter") == []
    inbound = inbound_with(["52.0.0.0/28", "3.4.5.6/32"])
    (ip_filter,) = inbound.findall("ip-filter")
    assert ip_filter.get("action") == "allow"
    spans = [(r.get("from"), r.get("to")) for r in ip_filter.findall("address-range")]
    assert spans == [("52.0.0.0", "52.0.0.15"), ("3.4.5.6", "3.4.5.6")]
    # First in inbound after base: an address outside the ranges spends no limit.
    assert [child.tag for child in inbound][:2] == ["base", "ip-filter"]
