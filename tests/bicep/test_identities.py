"""Who may do what, as deployed with the production parameters.

The two function apps have an identity each. The lookup app's reads the customer table and
uses Redis, and holds nothing on the control plane; the operator app's holds Website
Contributor on the lookup site and Web Plan Contributor on the plan (the scale timer and the
surge switch), and writes the surge table. Table data roles are scoped to a table, never to
the customer account. Both resolve their Key Vault references with the shared user-assigned
identity, which reads the one secret.

The grants are worked out from the templates: main.bicep's parameters (prod.bicepparam over
the defaults), each module call's arguments, each role assignment's `if`, its role and the
resource its scope names (followed through `existing` declarations and their parents).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import bicep_model_check as mc
from tests.support.bicep import (
    BICEP,
    BICEP_FILES,
    MAIN,
    MONITORING_METRICS_PUBLISHER,
    STORAGE_BLOB_DATA_OWNER,
    STORAGE_QUEUE_DATA_CONTRIBUTOR,
    STORAGE_TABLE_DATA_CONTRIBUTOR,
    WEB_PLAN_CONTRIBUTOR,
    WEBSITE_CONTRIBUTOR,
    Template,
    deployment_values,
    dotted,
    function,
    module,
    parsed,
    resolve,
    resources_of,
)

STORAGE_TABLE_DATA_READER = "76199698-9eea-4c19-bc75-cec21354c6b6"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
# Roles that act on the control plane of whatever they are scoped to.
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35c-4fb5-a5c3-7773c20a72d9"
CONTROL_PLANE_ROLES = {OWNER, CONTRIBUTOR, USER_ACCESS_ADMINISTRATOR, WEBSITE_CONTRIBUTOR}
CONTROL_PLANE_ROLES |= {WEB_PLAN_CONTRIBUTOR}

LOOKUP = "lookup identity"
OPERATOR = "operator identity"
# Module outputs only known at deployment: the names the scopes resolve to.
OUTPUTS = {
    "functionApp.outputs.name": "func-lookup",
    "functionApp.outputs.planName": "plan-dipguard-prod",
    "functionApp.outputs.systemAssignedMIPrincipalId": LOOKUP,
    "operatorApp.outputs.systemAssignedMIPrincipalId": OPERATOR,
    "hostStorage.outputs.name": "sthost",
    "operatorHostStorage.outputs.name": "sthostop",
    "dataStorage.outputs.name": "stdata",
    "monitoring.outputs.name": "appi",
    "redis.outputs.name": "redis",
    "redis.outputs.databaseName": "default",
    "network.outputs.appSubnetResourceId": "/subscriptions/sub/resourceGroups/rg/providers"
    "/Microsoft.Network/virtualNetworks/vnet/subnets/apps",
    "network.outputs.privateEndpointSubnetResourceId": "/subscriptions/sub/resourceGroups/rg"
    "/providers/Microsoft.Network/virtualNetworks/vnet/subnets/endpoints",
    "network.outputs.privateDnsZoneResourceIds": {},
}
# The identity each module's principal expression stands for.
SITE_IDENTITY = {"function-app": LOOKUP, "operator-app": OPERATOR}


@dataclass(frozen=True)
class Grant:
    principal: str
    role: str
    scope: str  # "<resource type>:<name>/<child name>..." of the resource the scope names


def _prod_values() -> dict[str, Any]:
    values = deployment_values(BICEP / "prod.bicepparam")
    return {**values, **OUTPUTS}


def _scope(doc: Mapping[str, Any], symbol: str, env: Template) -> str:
    """The resource a role assignment's scope names: its full type and its names, parents first."""
    res = doc["resources"][symbol]
    config = mc._unwrap_resource_body(res["config"])
    names = [str(resolve(config["name"], env))]
    parent = config.get("parent")
    while parent is not None:
        parent_config = mc._unwrap_resource_body(doc["resources"][parent]["config"])
        names.insert(0, str(resolve(parent_config["name"], env)))
        parent = parent_config.get("parent")
    return f"{res['type']}:{'/'.join(names)}"


def _module_grants(path: str, env: Template, principal_of: Mapping[str, str]) -> list[Grant]:
    """The role assignments one module makes, for the parameters in ``env``."""
    doc = parsed(BICEP / path)
    grants = []
    for res in doc["resources"].values():
        if res["type"].lower() != "microsoft.authorization/roleassignments" or res["existing"]:
            continue
        config = res["config"]
        if set(config) == {"condition", "config"}:
            if resolve(config["condition"], env) is False:
                continue
            config = config["config"]
        if mc._is_loop(config):
            detail = config["loop_type"]["detail"]
            items = resolve(detail["array_name"], env)
            assert isinstance(items, list)
            bodies = [(config["config"], {detail["item_name"]: item}) for item in items]
        else:
            bodies = [(config, {})]
        for body, names in bodies:
            local = Template(doc, {**_values_of(env), **names})
            role_args = function(body["properties"]["roleDefinitionId"], "subscription_resource_id")
            assert role_args is not None
            role = resolve(role_args["resource_name_1"], local)
            principal = dotted(body["properties"]["principalId"])
            assert principal is not None and principal in principal_of, (
                f"{path}: unknown principal {principal}"
            )
            grants.append(Grant(principal_of[principal], role, _scope(doc, body["scope"], local)))
    return grants


def _values_of(env: Template) -> dict[str, Any]:
    return {name: env[name] for name in env._values}


def _module_env(call: Mapping[str, Any], path: str, main_env: Template) -> Template:
    """A module's parameters as main.bicep passes them; one only known at deployment is left
    to the module's default."""
    args = {name: resolve(value, main_env) for name, value in call["params"].items()}
    return Template(parsed(BICEP / path), {k: v for k, v in args.items() if v is not None})


def deployed_grants(values: Mapping[str, Any]) -> list[Grant]:
    """Every role assignment main.bicep deploys with ``values``, by identity."""
    main = parsed(MAIN)
    main_env = Template(main, values)
    grants = []
    for symbol, call in main["modules"].items():
        path = call["detail"]["path"]
        body = mc._unwrap_resource_body(call["config"])
        if path == "modules/app-access.bicep":
            env = _module_env(body, path, main_env)
            principal = env["principalId"]
            grants += _module_grants(path, env, {"principalId": principal})
        elif path in ("modules/function-app.bicep", "modules/operator-app.bicep"):
            env = _module_env(body, path, main_env)
            identity = SITE_IDENTITY[path.removeprefix("modules/").removesuffix(".bicep")]
            grants += _module_grants(path, env, {"site.identity.principalId": identity})
        elif path == "modules/key-vault.bicep":
            env = _module_env(body, path, main_env)
            grants += _module_grants(
                path, env, {"referenceIdentity.properties.principalId": "reference identity"}
            )
        else:
            assert not resources_of(
                parsed(BICEP / path), "Microsoft.Authorization/roleAssignments"
            ), f"{symbol} grants roles this test does not follow"
    return grants


@pytest.fixture(scope="module")
def prod_grants() -> list[Grant]:
    return deployed_grants(_prod_values())


def _of(grants: list[Grant], principal: str) -> set[tuple[str, str]]:
    return {(g.role, g.scope) for g in grants if g.principal == principal}


HOST = "Microsoft.Storage/storageAccounts:sthost"
OPERATOR_HOST = "Microsoft.Storage/storageAccounts:sthostop"
CUSTOMERS = "Microsoft.Storage/storageAccounts/tableServices/tables:stdata/default/customers"
SURGES = "Microsoft.Storage/storageAccounts/tableServices/tables:stdata/default/surges"
APP_INSIGHTS = "Microsoft.Insights/components:appi"


def host_grants(account: str) -> set[tuple[str, str]]:
    """What the Functions host needs on its own host account."""
    return {
        (STORAGE_BLOB_DATA_OWNER, account),
        (STORAGE_QUEUE_DATA_CONTRIBUTOR, account),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, account),
    }


# Each app holds data roles on its own host account only: the lookup app none on the
# operator app's, where its code and host keys are.
HOST_GRANTS = host_grants(HOST)


def test_for_production_the_lookup_identity_reads_customers_and_holds_no_control_plane_role(
    prod_grants: list[Grant],
) -> None:
    lookup = _of(prod_grants, LOOKUP)
    assert not {role for role, _ in lookup} & CONTROL_PLANE_ROLES
    assert lookup == HOST_GRANTS | {
        (STORAGE_TABLE_DATA_READER, CUSTOMERS),
        (MONITORING_METRICS_PUBLISHER, APP_INSIGHTS),
    }


def test_for_production_the_operator_holds_its_arm_roles_on_the_lookup_site_and_the_plan_only(
    prod_grants: list[Grant],
) -> None:
    operator = _of(prod_grants, OPERATOR)
    control = {(role, scope) for role, scope in operator if role in CONTROL_PLANE_ROLES}
    assert control == {
        (WEBSITE_CONTRIBUTOR, "Microsoft.Web/sites:func-lookup"),
        (WEB_PLAN_CONTRIBUTOR, "Microsoft.Web/serverfarms:plan-dipguard-prod"),
    }
    assert operator - control == host_grants(OPERATOR_HOST) | {
        (STORAGE_TABLE_DATA_READER, CUSTOMERS),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, SURGES),
        (MONITORING_METRICS_PUBLISHER, APP_INSIGHTS),
    }


def test_table_data_roles_are_scoped_to_one_table_never_the_customer_account(
    prod_grants: list[Grant],
) -> None:
    table_roles = {STORAGE_TABLE_DATA_READER, STORAGE_TABLE_DATA_CONTRIBUTOR}
    on_data = [g for g in prod_grants if ":stdata" in g.scope]
    assert on_data, "no grant on the customer account's tables"
    for grant in on_data:
        assert grant.role in table_roles
        assert grant.scope.startswith("Microsoft.Storage/storageAccounts/tableServices/tables:")
    # Only the operator writes, and only the surge table.
    writers = {(g.principal, g.scope) for g in on_data if g.role == STORAGE_TABLE_DATA_CONTRIBUTOR}
    assert writers == {(OPERATOR, SURGES)}


def test_the_key_vault_reference_identity_reads_the_one_secret_and_both_apps_use_it(
    prod_grants: list[Grant],
) -> None:
    (grant,) = _of(prod_grants, "reference identity")
    assert grant[0] == KEY_VAULT_SECRETS_USER
    assert grant[1].startswith("Microsoft.KeyVault/vaults/secrets:")
    assert grant[1].endswith("/lookup-key-secret")
    main = parsed(MAIN)
    for path in ("modules/function-app.bicep", "modules/operator-app.bicep"):
        (call,) = [
            mc._unwrap_resource_body(m["config"])
            for m in main["modules"].values()
            if m["detail"]["path"] == path
        ]
        reference = call["params"]["keyVaultReferenceIdentityResourceId"]
        assert dotted(reference) == "keyVault.outputs.referenceIdentityResourceId", path
        (site,) = resources_of(parsed(BICEP / path), "Microsoft.Web/sites")
        assert site["properties"]["keyVaultReferenceIdentity"] == (
            "keyVaultReferenceIdentityResourceId"
        )
        assert site["identity"]["type"] == "SystemAssigned, UserAssigned"


def test_each_identity_has_its_own_redis_access_one_after_the_other() -> None:
    main = parsed(MAIN)
    env = Template(main, _prod_values())
    access = module("app-access")
    (assignment,) = resources_of(
        access, "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments"
    )
    assert assignment["properties"] == {
        "accessPolicyName": "default",
        "user": {"objectId": "principalId"},
    }
    calls = {
        symbol: mc._unwrap_resource_body(m["config"])
        for symbol, m in main["modules"].items()
        if m["detail"]["path"] == "modules/app-access.bicep"
    }
    resolved = {s: {k: resolve(v, env) for k, v in c["params"].items()} for s, c in calls.items()}
    assert {p["principalId"] for p in resolved.values()} == {LOOKUP, OPERATOR}
    names = {p["principalId"]: p["redisAccessPolicyAssignmentName"] for p in resolved.values()}
    # The lookup identity keeps the assignment name it had before the split, so a redeploy
    # updates that assignment rather than adding a second one for it.
    assert names == {LOOKUP: "functionapp", OPERATOR: "operatorapp"}
    # Azure Managed Redis fails assignments written to one database at the same time.
    (second,) = [c for c in calls.values() if "dependsOn" in c]
    assert second["dependsOn"] == ["appAccess"]


def test_no_template_grants_a_control_plane_role_but_the_operator_app() -> None:
    for path in BICEP_FILES:
        doc = parsed(path)
        text = json.dumps(doc)
        for role in CONTROL_PLANE_ROLES:
            if path.name == "operator-app.bicep" and role in {
                WEBSITE_CONTRIBUTOR,
                WEB_PLAN_CONTRIBUTOR,
            }:
                continue
            assert role not in text, f"{path.name} names control-plane role {role}"
