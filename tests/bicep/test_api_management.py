"""The API Management service, API, policy wiring, backend and Genesys product.

The tier is a parameter without Consumption; the API is imported from the repository's
openapi.json; the policy is loaded from its XML file with every placeholder filled; rate and
concurrency limits have their documented defaults; the backend holds no credential, and the
policy's token is for the same app registration the function app checks; Genesys gets a
product and a subscription to it.
"""

from __future__ import annotations

import json
import re

from tests.support.bicep import (
    MAIN,
    MODULES,
    POLICY,
    ROOT,
    decorators,
    default_of,
    dotted,
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


def test_the_backend_holds_no_credential_and_the_token_audience_is_the_apps_registration() -> None:
    api_module = module("apim-api")
    assert resources_of(api_module, "Microsoft.ApiManagement/service/namedValues") == []
    (backend,) = resources_of(api_module, "Microsoft.ApiManagement/service/backends")
    assert "credentials" not in backend["properties"]
    assert backend["properties"]["url"].endswith("/api")
    (policy,) = resources_of(api_module, "Microsoft.ApiManagement/service/apis/policies")
    assert '"__BACKEND_AUDIENCE__"' in json.dumps(policy["properties"]["value"])
    assert '"backendAudience"' in json.dumps(policy["properties"]["value"])
    # main.bicep gives the policy's audience and the app's authentication the same client ID.
    main = parsed(MAIN)
    api_call = module_call(main, "modules/apim-api.bicep")["params"]
    app_call = module_call(main, "modules/function-app.bicep")["params"]
    assert api_call["backendAudience"] == app_call["authClientId"] == "appClientId"


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
