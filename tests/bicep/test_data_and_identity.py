"""Storage, Redis, the identities' role grants, and how API Management reaches the app.

Storage and Redis are TLS-only with keys off where the app does not need them, and the tables
the app reads are created where it reads them. Redis evicts only keys with a TTL, and its SKU
is one Azure Managed Redis offers, described with how to size it for the read model. Each
identity gets the roles it needs and nothing broad, and whatever needs a role waits for its
grant. API Management reaches the app with a token from its own identity, which App Service
Authentication alone admits: no key is written to the app or kept anywhere, and no step of the
first deployment waits on the Functions runtime or on a role assignment taking effect.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.redisenterprise.models import EvictionPolicy, SkuName

from tests.support.bicep import (
    BICEP,
    BICEP_FILES,
    MAIN,
    MONITORING_METRICS_PUBLISHER,
    PARAM_FILES,
    STORAGE_BLOB_DATA_OWNER,
    STORAGE_QUEUE_DATA_CONTRIBUTOR,
    STORAGE_TABLE_DATA_CONTRIBUTOR,
    WEB_PLAN_CONTRIBUTOR,
    WEBSITE_CONTRIBUTOR,
    Template,
    bicepparam_values,
    decorators,
    default_of,
    dotted,
    function,
    module,
    module_call,
    parsed,
    resolve,
    resources_of,
    role_assignments,
    walk,
)
from tests.support.bicep_model_check import _unwrap_resource_body as mc_unwrap

STORAGE_TABLE_DATA_READER = "76199698-9eea-4c19-bc75-cec21354c6b6"


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
    calls = {
        m["config"]["name"]: m["config"]["params"]
        for m in main["modules"].values()
        if m["detail"]["path"] == "modules/storage.bicep"
    }
    assert calls["dipguard-data-storage"]["allowSharedKeyAccess"] is False
    # The host account keeps shared keys for the Azure Files content share only (see
    # function-app.bicep); nothing else in the app uses a key.
    assert calls["dipguard-host-storage"]["allowSharedKeyAccess"] is True


def test_the_tables_the_app_reads_are_created_in_the_account_it_reads() -> None:
    main = parsed(MAIN)
    calls = {
        m["config"]["name"]: m["config"]["params"]
        for m in main["modules"].values()
        if m["detail"]["path"] == "modules/storage.bicep"
    }
    assert calls["dipguard-data-storage"]["tableNames"] == ["customerTableName", "surgeTableName"]
    assert default_of(main, "customerTableName") == "customers"
    assert default_of(main, "surgeTableName") == "surges"
    app_params = module_call(main, "modules/function-app.bicep")["params"]
    assert app_params["customerTableName"] == "customerTableName"
    assert app_params["surgeTableName"] == "surgeTableName"
    assert dotted(app_params["customerTableServiceUri"]) == "dataStorage.outputs.tableEndpoint"
    (tables,) = resources_of(
        module("storage"), "Microsoft.Storage/storageAccounts/tableServices/tables"
    )
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
        "EnterpriseCluster",
        "OSSCluster",
    ]
    assert db["evictionPolicy"] != "NoEviction"
    # The URL the app gets: TLS, port, database 0, and no credentials in it.
    url = redis["outputs"]["url"]["value"]
    assert url.startswith("rediss://") and url.endswith("/0") and "@" not in url
    access = module("app-access")
    (assignment,) = resources_of(
        access, "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments"
    )
    assert assignment["properties"] == {
        "accessPolicyName": "default",
        "user": {"objectId": "principalId"},
    }
    # One assignment for each app's identity (tests/bicep/test_identities.py).
    principals = {
        dotted(m["config"]["params"]["principalId"])
        for m in parsed(MAIN)["modules"].values()
        if m["detail"]["path"] == "modules/app-access.bicep"
    }
    assert principals == {
        "functionApp.outputs.systemAssignedMIPrincipalId",
        "operatorApp.outputs.systemAssignedMIPrincipalId",
    }


def test_redis_evicts_only_keys_with_a_ttl() -> None:
    # The valve's log, the read model's Bloom filters, its marker and the warm's lease have no
    # TTL. Under a volatile-* policy Redis never evicts such a key, so memory pressure takes
    # cached answers (a database read each) and never the read budget or the proof of absence.
    (database,) = resources_of(module("redis"), "Microsoft.Cache/redisEnterprise/databases")
    policy = database["properties"]["evictionPolicy"]
    assert policy == "VolatileLRU"
    assert policy in {e.value for e in EvictionPolicy}  # spelt as the API spells it


def _sku_names() -> set[str]:
    return {sku.value for sku in SkuName}


@pytest.mark.parametrize("path", [MAIN, BICEP / "modules" / "redis.bicep"], ids=lambda p: p.name)
def test_the_redis_sku_defaults_to_one_azure_managed_redis_offers(path: Path) -> None:
    name = "redisSkuName" if path == MAIN else "skuName"
    assert default_of(parsed(path), name) in _sku_names()


def test_each_environment_deploys_a_redis_sku_azure_managed_redis_offers() -> None:
    chosen = [bicepparam_values(path)["redisSkuName"] for path in PARAM_FILES]
    azd = json.loads((BICEP / "main.parameters.json").read_text())["parameters"]
    chosen.append(azd["redisSkuName"]["value"])
    assert set(chosen) <= _sku_names()


def test_the_redis_sku_says_how_to_size_it_for_the_read_model() -> None:
    description = decorators(parsed(MAIN)["parameters"]["redisSkuName"])["description"]
    assert description.startswith("Optional. ")
    assert "per lookup key" in description and "per customer" in description
    named = set(
        re.findall(r"\b(?:Balanced|MemoryOptimized|ComputeOptimized)_[A-Z]\d+\b", description)
    )
    assert {"Balanced_B0", "Balanced_B1", "Balanced_B3", "Balanced_B5"} <= named
    assert named <= _sku_names()
    # Each SKU is named with its memory: "Balanced_B5 6 GB".
    sized = dict(re.findall(r"\b(\w+_[A-Z]\d+) (\d+(?:\.\d+)?) GB", description))
    assert set(sized) == named
    # The module points at it rather than repeating the figures.
    redis_description = decorators(module("redis")["parameters"]["skuName"])["description"]
    assert "redisSkuName" in redis_description and "bytes" not in redis_description


def test_the_operator_identity_changes_the_lookup_site_and_the_plan_and_the_lookup_cannot() -> None:
    operator = module("operator-app")
    grants = {(g["role"], g["scope"]) for g in role_assignments(operator)}
    assert grants == {(WEBSITE_CONTRIBUTOR, "lookupSite"), (WEB_PLAN_CONTRIBUTOR, "plan")}
    assert all(
        dotted(g["principal"]) == "site.identity.principalId" for g in role_assignments(operator)
    )
    # Those scopes are the lookup app's site and its plan, as main.bicep names them.
    resources = operator["resources"]
    assert resources["lookupSite"]["existing"] and resources["plan"]["existing"]
    assert resources["lookupSite"]["config"]["name"] == "lookupSiteName"
    assert resources["plan"]["config"]["name"] == "planName"
    call = module_call(parsed(MAIN), "modules/operator-app.bicep")["params"]
    assert dotted(call["lookupSiteName"]) == "functionApp.outputs.name"
    assert dotted(call["planName"]) == "functionApp.outputs.planName"
    # The lookup app grants itself nothing.
    assert role_assignments(module("function-app")) == []


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
        "hostStorageAccount": {
            STORAGE_BLOB_DATA_OWNER,
            STORAGE_QUEUE_DATA_CONTRIBUTOR,
            STORAGE_TABLE_DATA_CONTRIBUTOR,
        },
        "customerTable": {STORAGE_TABLE_DATA_READER},
        "surgeTable": {STORAGE_TABLE_DATA_CONTRIBUTOR},
        "appInsights": {MONITORING_METRICS_PUBLISHER},
    }
    # The table roles are scoped to tables of the customer account, by name.
    for symbol, name in (("customerTable", "customerTableName"), ("surgeTable", "surgeTableName")):
        table = access["resources"][symbol]
        assert table["type"] == "Microsoft.Storage/storageAccounts/tableServices/tables"
        assert table["existing"] is True
        assert mc_unwrap(table["config"])["name"] == name
    # The surge table's role only for an identity given the surge table: the operator's.
    (surge_grant,) = [
        r["config"]
        for r in access["resources"].values()
        if r["type"] == "Microsoft.Authorization/roleAssignments"
        and mc_unwrap(r["config"])["scope"] == "surgeTable"
    ]
    assert resolve(surge_grant["condition"], {"surgeTableName": ""}) is False
    assert resolve(surge_grant["condition"], {"surgeTableName": "surges"}) is True


def test_app_service_authentication_admits_only_api_managements_identity() -> None:
    app = module("function-app")
    (auth,) = (
        r for r in resources_of(app, "Microsoft.Web/sites/config") if r["name"] == "authsettingsV2"
    )
    props = auth["properties"]
    assert props["platform"]["enabled"] is True
    glob = props["globalValidation"]
    assert (glob["requireAuthentication"], glob["unauthenticatedClientAction"]) == (
        True,
        "Return401",
    )
    # Only the health probe, which keeps the runtime's function key, is left out; the dip and
    # the runtime's /admin API stay behind the token check, and the surge switch is not here.
    assert glob["excludedPaths"] == ["/api/health"]
    assert not any(p.startswith(("/api/lookup", "/admin")) for p in glob["excludedPaths"])
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "authClientId"
    assert aad["registration"]["openIdIssuer"].endswith("/v2.0")
    assert aad["validation"]["allowedAudiences"] == ["authClientId"]
    policy = aad["validation"]["defaultAuthorizationPolicy"]
    assert policy == {"allowedPrincipals": {"identities": "authAllowedPrincipalIds"}}
    assert props["httpSettings"]["requireHttps"] is True
    # The warmup request Elastic Premium sends passes Easy Auth only over HTTPS.
    (site,) = resources_of(app, "Microsoft.Web/sites")
    assert site["properties"]["httpsOnly"] is True
    # main.bicep admits API Management's system-assigned identity and nothing else.
    call = module_call(parsed(MAIN), "modules/function-app.bicep")["params"]
    (principal,) = call["authAllowedPrincipalIds"]
    assert dotted(principal) == "apim.outputs.systemAssignedMIPrincipalId"
    assert decorators(app["parameters"]["authAllowedPrincipalIds"])["min_length"] == 1


def test_the_lookup_and_surge_functions_leave_their_doors_to_app_service_authentication() -> None:
    # The runtime would want a key for a FUNCTION-level route; in Azure the token check in
    # front of it is the door, so the lookup and the surge switch are anonymous to the
    # runtime (the surge switch checks the operator's role itself), health keeps its key, and
    # nothing needs the master key.
    text = (BICEP.parent / "app" / "functions.py").read_text()
    assert 'route="lookup", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS' in text
    assert 'route="health", methods=["GET"], auth_level=func.AuthLevel.FUNCTION' in text
    assert re.search(r'route="surge/\{id\?\}",[^)]*auth_level=func\.AuthLevel\.ANONYMOUS', text)
    assert "AuthLevel.ADMIN" not in text


def test_the_app_registration_issues_v2_tokens_and_a_given_one_is_used_instead() -> None:
    entra = module("entra-app")
    assert "microsoftGraphV1" in entra["extensions"]
    (application,) = resources_of(entra, "Microsoft.Graph/applications")
    assert application["signInAudience"] == "AzureADMyOrg"
    assert application["api"]["requestedAccessTokenVersion"] == 2
    assert application["uniqueName"] == "uniqueName"
    (principal,) = resources_of(entra, "Microsoft.Graph/servicePrincipals")
    assert dotted(principal["appId"]) == "application.appId"
    config = json.loads((BICEP / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )
    main = parsed(MAIN)
    client_id = main["variables"]["appClientId"]["value"]
    created = {"entraApp.outputs.clientId": "created-id"}
    assert resolve(client_id, Template(main, created)) == "created-id"
    given = {**created, "entraAppClientId": "given-id"}
    assert resolve(client_id, Template(main, given)) == "given-id"
    (lookup_call,) = [m["config"] for s, m in main["modules"].items() if s == "entraApp"]
    assert resolve(lookup_call["condition"], Template(main, given)) is False


def test_no_first_deployment_step_waits_on_the_runtime_or_a_role_grant() -> None:
    # Host keys (sites/host/*) and listKeys go through ARM to the Functions runtime, which
    # answers ServiceUnavailable while a new app starts (Azure/azure-functions-host#5722);
    # a Key Vault read right after its role assignment meets RBAC propagation. Neither is
    # in the deployment: nothing reads a secret value while deploying (no Key Vault-backed
    # named value, no getSecret), and the app's Key Vault reference is resolved by an
    # identity whose grant precedes the site (tests/bicep/test_lookup_key_secret.py).
    for path in BICEP_FILES:
        doc = parsed(path)
        for res in doc["resources"].values():
            kind = res["type"].lower()
            assert not kind.startswith("microsoft.web/sites/host"), path.name
            assert kind != "microsoft.apimanagement/service/namedvalues", path.name
        assert "getsecret" not in json.dumps(doc).lower(), path.name
        for value in walk(doc):
            listed = function(value, "list_func")
            if listed is not None:
                assert "host" not in json.dumps(listed).lower(), path.name
    # Nothing in main.bicep waits on a role assignment module, since nothing needs one to
    # have taken effect: the app's data roles are used at run time, when it first reads.
    # The one exception: the operator's access waits for the lookup's, because Azure
    # Managed Redis fails two access policy assignments written to a database at once.
    for symbol, call in parsed(MAIN)["modules"].items():
        if symbol == "operatorAccess":
            assert call["config"]["dependsOn"] == ["appAccess"]
            continue
        assert '"appAccess"' not in json.dumps(call), symbol
        assert '"operatorAccess"' not in json.dumps(call), symbol


def test_the_redis_skus_named_for_each_size_are_what_the_memory_benchmark_picks() -> None:
    # The description quotes "about 300 bytes per lookup key" from python -m bench.memory;
    # its SKU per size must be the one bench.memory's sizing rule picks at that rate.
    from bench.memory import sizing

    description = decorators(parsed(MAIN)["parameters"]["redisSkuName"])["description"]
    per_key = int(re.search(r"about (\d+) bytes per lookup key", description)[1])  # type: ignore[index]
    named = dict(re.findall(r"(\d+[kM])(?: customers)? (\w+_[A-Z]\d+)", description))
    picked = {f"{row['customers'] // 1000}k": row["sku"] for row in sizing(per_key)}
    picked = {k.replace("1000k", "1M").replace("5000k", "5M"): v for k, v in picked.items()}
    assert named == picked


def _operator_easy_auth() -> dict[str, Any]:
    (auth,) = (
        r
        for r in resources_of(module("operator-app"), "Microsoft.Web/sites/config")
        if r["name"] == "authsettingsV2"
    )
    return auth["properties"]


def test_the_operator_app_admits_only_signed_in_tokens_for_the_operators_registration() -> None:
    props = _operator_easy_auth()
    assert props["platform"]["enabled"] is True
    assert props["globalValidation"] == {
        "requireAuthentication": True,
        "unauthenticatedClientAction": "Return401",
        "excludedPaths": ["/api/health"],
    }
    assert props["httpSettings"]["requireHttps"] is True
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "authClientId"
    assert aad["registration"]["openIdIssuer"].endswith("/v2.0")
    assert aad["validation"]["allowedAudiences"] == ["authClientId"]
    # The operators' registration, not the lookup's: a token API Management gets for the
    # lookup app does not open the operator app.
    main = parsed(MAIN)
    call = module_call(main, "modules/operator-app.bicep")["params"]
    assert call["authClientId"] == "operatorAppClientId"
    chosen = main["variables"]["operatorAppClientId"]["value"]
    created = {
        "operatorEntraApp.outputs.clientId": "operators-id",
        "entraApp.outputs.clientId": "x",
    }
    assert resolve(chosen, Template(main, created)) == "operators-id"
    given = {**created, "operatorEntraAppClientId": "given-id"}
    assert resolve(chosen, Template(main, given)) == "given-id"
    condition = main["modules"]["operatorEntraApp"]["config"]["condition"]
    assert resolve(condition, Template(main, given)) is False
    assert resolve(condition, Template(main, created)) is True


def test_the_operators_registration_defines_the_surge_role_and_requires_it() -> None:
    from shared.scale.principal import SURGE_ROLE

    main = parsed(MAIN)
    values = {"surgeOperatorObjectIds": ["11111111-2222-3333-4444-555555555555"]}
    env = Template(main, values)
    registration = main["modules"]["operatorEntraApp"]["config"]["config"]["params"]
    (role,) = resolve(registration["appRoles"], env)
    assert role["value"] == SURGE_ROLE == "Surge.Operate"
    assert role["allowedMemberTypes"] == ["User", "Application"]
    assert registration["appRoleAssignmentRequired"] is True
    assert registration["azureCliSignIn"] is True
    # The operators get the role in a step of its own, after the slowest resources.
    assignments = main["modules"]["surgeOperatorRoleAssignments"]["config"]
    given = {"operatorEntraAppClientId": "00000000-0000-0000-0000-0000000000aa"}
    assert resolve(assignments["condition"], Template(main, values)) is True
    assert resolve(assignments["condition"], Template(main, {**values, **given})) is False
    assert resolve(assignments["condition"], Template(main, {})) is False, "no operators"
    call = assignments["config"]
    assert resolve(call["params"]["principalIds"], Template(main, values)) == [
        "11111111-2222-3333-4444-555555555555"
    ]
    assert dotted(call["params"]["resourceServicePrincipalId"]) == (
        "operatorEntraApp.outputs.servicePrincipalId"
    )
    # The role's id, derived as the module derives it: by the registration and the value.
    assert call["params"]["appRoleId"] == "surgeOperateRoleId"
    main_id = function(main["variables"]["surgeOperateRoleId"]["value"], "guid")
    assert main_id is not None
    assert [dotted(v) for v in main_id.values()] == [
        "operatorRegistrationName",
        "appRole",
        "surgeOperateRole",
    ]
    assert registration["uniqueName"] == "operatorRegistrationName"
    assert sorted(call["dependsOn"]) == ["apim", "redis"]
    # The lookup app's registration defines no role and requires none: API Management's
    # identity gets its token without an assignment.
    lookup = main["modules"]["entraApp"]["config"]["config"]["params"]
    assert not {"appRoles", "appRoleAssignmentRequired"} & set(lookup)
    entra = module("entra-app")
    assert default_of(entra, "appRoleAssignmentRequired") is False
    assert default_of(entra, "appRoles") == []
    # The module defines each role enabled, with an id derived from its value, requires an
    # assignment on the service principal when told, and assigns by the same id.
    (application,) = resources_of(entra, "Microsoft.Graph/applications")
    assert application["appRoles"] == "appRoleDefinitions"
    definition = entra["variables"]["appRoleDefinitions"]["value"]["config"]
    assert definition["isEnabled"] is True and dotted(definition["value"]) == "role.value"
    role_id = function(definition["id"], "guid")
    (principal,) = resources_of(entra, "Microsoft.Graph/servicePrincipals")
    assert principal["appRoleAssignmentRequired"] == "appRoleAssignmentRequired"
    assert resources_of(entra, "Microsoft.Graph/appRoleAssignedTo") == []
    assert role_id is not None
    assert [dotted(v) for v in role_id.values()] == ["uniqueName", "appRole", "role.value"]
