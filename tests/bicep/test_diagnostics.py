"""The audit trail: diagnostic settings send each audited resource's logs to the workspace.

Key Vault sends its audit events, API Management its gateway logs (to the resource-specific
table), the customer table service and the host blob and file services their reads, writes and
deletes, and every function app main.bicep names its FunctionAppLogs, all to the Log Analytics
workspace of the monitoring module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.support.bicep import (
    MAIN,
    Template,
    dotted,
    module,
    module_call,
    parsed,
    resolve,
)

WORKSPACE = (
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/log"
)
STORAGE_LOGS = ["StorageRead", "StorageWrite", "StorageDelete"]
# The resource type each setting is scoped to, and the logs it sends.
AUDITED: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "Microsoft.Web/sites": ("sites", [{"category": "FunctionAppLogs", "enabled": True}]),
    "Microsoft.ApiManagement/service": (
        "apiManagement",
        [{"category": "GatewayLogs", "enabled": True}],
    ),
    "Microsoft.KeyVault/vaults": ("vault", [{"categoryGroup": "audit", "enabled": True}]),
    "Microsoft.Storage/storageAccounts/tableServices": (
        "dataStorageAccount_tableService",
        [{"category": c, "enabled": True} for c in STORAGE_LOGS],
    ),
    "Microsoft.Storage/storageAccounts/blobServices": (
        "hostStorageAccounts_blobService",
        [{"category": c, "enabled": True} for c in STORAGE_LOGS],
    ),
    "Microsoft.Storage/storageAccounts/fileServices": (
        "hostStorageAccounts_fileService",
        [{"category": c, "enabled": True} for c in STORAGE_LOGS],
    ),
}


def _settings(function_apps: list[str]) -> list[dict[str, Any]]:
    """Every diagnostic setting the module deploys, with the type and name of its scope."""
    doc = module("diagnostics")
    values = {
        "workspaceResourceId": WORKSPACE,
        "functionAppNames": function_apps,
        "apiManagementName": "apim",
        "keyVaultName": "kv",
        "dataStorageAccountName": "stdata",
        "hostStorageAccountNames": ["sthost", "sthostop"],
    }
    env = Template(doc, values)
    out = []
    for res in doc["resources"].values():
        if res["type"] != "Microsoft.Insights/diagnosticSettings":
            continue
        config = res["config"]
        scopes: list[tuple[Any, Mapping[str, Any]]]
        if "loop_type" in config:
            detail = config["loop_type"]["detail"]
            items = resolve(detail["array_name"], env)
            scopes = [
                (
                    config["config"],
                    Template(doc, {**values, detail["item_name"]: item, detail["index_name"]: i}),
                )
                for i, item in enumerate(items)
            ]
        else:
            scopes = [(config, env)]
        for body, names in scopes:
            out.append(_setting(doc, body, names))
    return out


def _setting(doc: Mapping[str, Any], body: Mapping[str, Any], names: Any) -> dict[str, Any]:
    """One setting: its properties, and the type and resource name of what it is scoped to
    (an existing resource of the module, or one item of an existing loop)."""
    scope = body["scope"]
    if isinstance(scope, str):
        symbol, index = scope, None
    else:
        operands = scope["operator"]["operands"]
        symbol, index = operands["operand_1"], resolve(operands["operand_2"], names)
    target = doc["resources"][symbol]
    assert target["existing"], symbol
    if index is None:
        name = resolve(target["config"]["name"], names)
    else:
        name = resolve(target["config"], names)[index]["name"]
    return {
        "properties": resolve(body["properties"], names),
        "setting": resolve(body["name"], names),
        "scope_type": target["type"],
        "scope": symbol,
        "name": name,
    }


def test_each_audited_resource_sends_its_logs_to_the_workspace() -> None:
    settings = _settings(["func-lookup", "func-operator"])
    assert {s["scope_type"] for s in settings} == set(AUDITED)
    for setting in settings:
        scope, logs = AUDITED[setting["scope_type"]]
        assert setting["scope"] == scope
        assert setting["setting"] == "audit-to-log-analytics"
        assert setting["properties"]["workspaceId"] == WORKSPACE
        assert setting["properties"]["logs"] == logs, setting["scope"]
        # Logs only: metrics reach Azure Monitor without a setting.
        assert "metrics" not in setting["properties"]


def test_gateway_logs_go_to_the_resource_specific_table() -> None:
    (gateway,) = [
        s for s in _settings(["f"]) if s["scope_type"] == "Microsoft.ApiManagement/service"
    ]
    assert gateway["properties"]["logAnalyticsDestinationType"] == "Dedicated"


@pytest.mark.parametrize("apps", [["func-lookup"], ["func-lookup", "func-operator"]])
def test_every_function_app_named_gets_its_own_setting(apps: list[str]) -> None:
    sites = [s for s in _settings(apps) if s["scope_type"] == "Microsoft.Web/sites"]
    assert [s["name"] for s in sites] == apps


def test_the_storage_settings_sit_on_the_services_of_the_right_accounts() -> None:
    doc = module("diagnostics")
    config = doc["resources"]["dataStorageAccount_tableService"]["config"]
    assert (config["parent"], config["name"]) == ("dataStorageAccount", "default")
    assert doc["resources"]["dataStorageAccount"]["config"]["name"] == "dataStorageAccountName"
    # One blob and one file service per host account, each a child of its own account.
    accounts = doc["resources"]["hostStorageAccounts"]["config"]
    assert accounts["loop_type"]["detail"]["array_name"] == "hostStorageAccountNames"
    for symbol in ("hostStorageAccounts_blobService", "hostStorageAccounts_fileService"):
        loop = doc["resources"][symbol]["config"]
        assert loop["loop_type"]["detail"]["array_name"] == "hostStorageAccountNames"
        body = loop["config"]
        parent = body["parent"]["operator"]["operands"]
        assert parent["operand_1"] == "hostStorageAccounts"
        assert parent["operand_2"] == loop["loop_type"]["detail"]["index_name"]
        assert body["name"] == "default"


def test_main_audits_both_function_apps_and_every_resource_into_its_workspace() -> None:
    call = module_call(parsed(MAIN), "modules/diagnostics.bicep")["params"]
    assert [dotted(a) for a in call["functionAppNames"]] == [
        "functionApp.outputs.name",
        "operatorApp.outputs.name",
    ]
    # Each app's own host account: the lookup app's and the operator app's.
    assert [dotted(a) for a in call["hostStorageAccountNames"]] == [
        "hostStorage.outputs.name",
        "operatorHostStorage.outputs.name",
    ]
    named = {"functionAppNames", "hostStorageAccountNames"}
    assert {k: dotted(v) for k, v in call.items() if k not in named} == {
        "workspaceResourceId": "monitoring.outputs.workspaceResourceId",
        "apiManagementName": "apim.outputs.name",
        "keyVaultName": "keyVault.outputs.name",
        "dataStorageAccountName": "dataStorage.outputs.name",
    }


def test_each_host_account_sends_its_blob_and_file_logs() -> None:
    settings = _settings(["func-lookup", "func-operator"])
    for kind in ("blobServices", "fileServices"):
        scoped = [s for s in settings if s["scope_type"].endswith(kind)]
        assert len(scoped) == 2, kind
