"""Storage, Redis, the identities' role grants, and the function key.

Storage and Redis are TLS-only with keys off where the app does not need them, and the tables
the app reads are created where it reads them. Redis evicts only keys with a TTL, and its SKU
is one Azure Managed Redis offers, described with how to size it for the read model. Each
identity gets the roles it needs and nothing broad, and whatever needs a role waits for its
grant. The function key is generated at deployment (or kept when given), written by the
deployment, never read back from the app, and readable by API Management alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from azure.mgmt.redisenterprise.models import EvictionPolicy, SkuName

from tests.support.bicep import (
    BICEP,
    BICEP_FILES,
    KEY_VAULT_SECRETS_USER,
    MAIN,
    MONITORING_METRICS_PUBLISHER,
    PARAM_FILES,
    STORAGE_BLOB_DATA_OWNER,
    STORAGE_QUEUE_DATA_CONTRIBUTOR,
    STORAGE_TABLE_DATA_CONTRIBUTOR,
    WEB_PLAN_CONTRIBUTOR,
    WEBSITE_CONTRIBUTOR,
    Template,
    bicepparam_doc,
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
    params = module_call(parsed(MAIN), "modules/app-access.bicep")["params"]
    assert dotted(params["principalId"]) == "functionApp.outputs.systemAssignedMIPrincipalId"


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


def test_the_scale_schedule_identity_can_change_the_site_and_the_plan() -> None:
    app = module("function-app")
    grants = {(g["role"], g["scope"]) for g in role_assignments(app)}
    assert (WEBSITE_CONTRIBUTOR, "site") in grants
    assert (WEB_PLAN_CONTRIBUTOR, "plan") in grants
    assert all(dotted(g["principal"]) == "site.identity.principalId" for g in role_assignments(app))


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
        "allowedSubnetResourceIds"
    )
    params = module_call(parsed(MAIN), "modules/key-vault.bicep")["params"]
    (principal,) = params["secretsUserPrincipalIds"]
    assert dotted(principal) == "apim.outputs.systemAssignedMIPrincipalId"


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
    given, generated = (
        main["parameters"][n] for n in ("functionKeyValue", "generatedFunctionKeyValue")
    )
    # @secure(): the values never reach deployment history.
    assert decorators(given)["secure"] is True and decorators(generated)["secure"] is True
    assert given["default"] == ""
    # newGuid() twice, hyphens dropped: 64 hex digits, 244 random bits, new each deployment.
    assert generated["default"].count("newGuid()") == 2 and "replace(" in generated["default"]
    key_value = module_call(main, "modules/function-key.bicep")["params"]["keyValue"]
    env = Template(main, {"generatedFunctionKeyValue": "g" * 64})
    assert resolve(key_value, env) == "g" * 64  # nothing given: a new key
    env = Template(main, {"generatedFunctionKeyValue": "g" * 64, "functionKeyValue": "k" * 40})
    assert resolve(key_value, env) == "k" * 40  # the current key given: kept


def test_each_way_of_deploying_can_pass_the_current_key() -> None:
    # Unset, the variable gives '' and so a new key; set, it keeps the one it holds.
    for path in PARAM_FILES:
        _, assignments = bicepparam_doc(path)
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
