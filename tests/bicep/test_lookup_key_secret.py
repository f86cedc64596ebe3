"""The lookup key secret: in Key Vault, reached through a Key Vault reference app setting.

Bicep creates the vault (Azure RBAC, soft delete, purge protection) and writes the secret from
an @secure() parameter only when one is given, so a redeploy keeps it; azd generates the value
once. LOOKUP_KEY_SECRET references the secret Bicep writes, pinned to its current version;
LOOKUP_KEY_SECRET_PREVIOUS exists only during a rotation, pinned to the previous version. The
references are resolved by a user-assigned identity that holds Key Vault Secrets User on that
one secret and nothing else, granted before the site exists. No output carries the secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import bicep_model_check as mc
from tests.support.bicep import (
    BICEP,
    BICEP_FILES,
    DEPLOYMENT_OUTPUTS,
    MAIN,
    PARAM_FILES,
    DeploymentFailure,
    Template,
    app_settings_for,
    bicepparam_doc,
    decorators,
    deployed_app_settings,
    dotted,
    function,
    module,
    module_call,
    parsed,
    resolve,
    resource,
    role_assignments,
    walk,
)

KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
CURRENT_URI = DEPLOYMENT_OUTPUTS["keyVault.outputs.secretUriWithVersion"]


def _key_vault_call() -> dict[str, Any]:
    return module_call(parsed(MAIN), "modules/key-vault.bicep")


def _site() -> dict[str, Any]:
    return resource(module("function-app"), "site")


def test_lookup_key_secret_is_a_key_vault_reference_to_the_secret_bicep_writes() -> None:
    deployed = deployed_app_settings({})
    assert deployed["LOOKUP_KEY_SECRET"] == f"@Microsoft.KeyVault(SecretUri={CURRENT_URI})"
    # That URI is the key-vault module's current version of its one secret: the version this
    # deployment wrote, or the one already in the vault when none was given.
    call = module_call(parsed(MAIN), "modules/function-app.bicep")["params"]
    assert dotted(call["lookupKeySecretUri"]) == "keyVault.outputs.secretUriWithVersion"
    vault = module("key-vault")
    output = vault["outputs"]["secretUriWithVersion"]["value"]["operator"]
    assert output["type"] == "conditional"
    assert output["operands"]["condition"] == "writesSecret"
    assert "vault_secret" in json.dumps(output["operands"]["true_value"])
    assert "vault_secretCurrent" in json.dumps(output["operands"]["false_value"])
    for symbol in ("vault_secret", "vault_secretCurrent"):
        secret = vault["resources"][symbol]
        assert secret["type"] == "Microsoft.KeyVault/vaults/secrets"
        body = mc._unwrap_resource_body(secret["config"])
        assert (body["parent"], body["name"]) == ("vault", "secretName")
    assert vault["resources"]["vault_secretCurrent"]["existing"] is True
    # The app gets the secret, resolved, under the name it reads.
    assert app_settings_for({})["LOOKUP_KEY_SECRET"] != deployed["LOOKUP_KEY_SECRET"]


def test_the_reference_identity_holds_secrets_user_on_the_one_secret_and_nothing_more() -> None:
    vault = module("key-vault")
    (grant,) = role_assignments(vault)
    assert grant["role"] == KEY_VAULT_SECRETS_USER
    assert grant["scope"] == "vault_secretCurrent"  # the secret, not the vault
    assert dotted(grant["principal"]) == "referenceIdentity.properties.principalId"
    # The site resolves its references with that identity, and holds it.
    site = _site()
    assert site["properties"]["keyVaultReferenceIdentity"] == "keyVaultReferenceIdentityResourceId"
    assert site["identity"]["type"] == "SystemAssigned, UserAssigned"
    assert list(site["identity"]["userAssignedIdentities"]) == [
        "'${keyVaultReferenceIdentityResourceId}'"
    ]
    call = module_call(parsed(MAIN), "modules/function-app.bicep")["params"]
    assert (
        dotted(call["keyVaultReferenceIdentityResourceId"])
        == "keyVault.outputs.referenceIdentityResourceId"
    )
    assert dotted(vault["outputs"]["referenceIdentityResourceId"]["value"]) == (
        "referenceIdentity.id"
    )
    # Access is by Azure RBAC alone: no access policy can grant more.
    props = resource(vault, "vault")["properties"]
    assert props["enableRbacAuthorization"] is True
    assert "accessPolicies" not in props
    # No other role assignment anywhere is on the vault, its secret, or for that identity.
    for path in BICEP_FILES:
        if path.name == "key-vault.bicep":
            continue
        for other in role_assignments(parsed(path)):
            text = json.dumps(other).lower()
            assert "vault" not in text and "referenceidentity" not in text, path.name


def test_the_grant_is_in_place_before_the_site_exists() -> None:
    # The site waits for the whole key-vault module, role assignment included: main.bicep
    # names it in dependsOn, and the site's identity parameters are its outputs.
    main = parsed(MAIN)
    (symbol,) = [
        s for s, m in main["modules"].items() if m["detail"]["path"] == "modules/key-vault.bicep"
    ]
    call = module_call(main, "modules/function-app.bicep")
    assert symbol in call["dependsOn"]
    # The grant waits for the secret it is scoped to, when this deployment writes it.
    grant = resource(module("key-vault"), "vault_secretCurrent_secretsUser")
    assert grant["dependsOn"] == ["vault_secret"]
    assert grant["properties"]["principalType"] == "ServicePrincipal"
    # Nothing in the key-vault module waits on API Management or the site, so on a first
    # deployment the grant is made long before the site, which waits on API Management.
    assert not {"apim", "functionApp"} & set(json.dumps(_key_vault_call()["params"]).split('"'))


def test_the_secret_parameter_is_secure_and_goes_to_the_vault_alone() -> None:
    main = parsed(MAIN)
    assert decorators(main["parameters"]["lookupKeySecret"])["secure"] is True
    assert decorators(module("key-vault")["parameters"]["secretValue"])["secure"] is True
    assert _key_vault_call()["params"]["secretValue"] == "lookupKeySecret"
    # No other module call or resource is given it.
    users = [
        symbol
        for symbol, call in main["modules"].items()
        if "lookupKeySecret" in [v for v in walk(call) if isinstance(v, str)]
    ]
    assert users == ["keyVault"]


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(BICEP)))
def test_no_output_carries_the_secret(path: Path) -> None:
    doc = parsed(path)
    secure = {name for name, p in doc["parameters"].items() if "secure" in decorators(p)}
    for name, output in doc["outputs"].items():
        text = json.dumps(output["value"])
        assert not any(f'"{param}"' in text or "${" + param + "}" in text for param in secure), name
        # A secret's value is never read back: only its URI and version.
        assert "properties.value" not in ".".join(
            d for v in walk(output["value"]) if (d := dotted(v)) is not None
        ), name


def test_azd_generates_the_secret_once_and_the_parameter_files_keep_it_otherwise() -> None:
    metadata = decorators(parsed(MAIN)["parameters"]["lookupKeySecret"])["metadata"]
    assert metadata["azd"]["type"] == "generate"
    assert metadata["azd"]["config"]["length"] >= 32
    # azd generates only a required parameter that has no value: main.parameters.json maps it
    # to NEW_LOOKUP_KEY_SECRET, which is empty unless a rotation sets it: a name of its own,
    # never the app setting's, so a shell holding the loader's LOOKUP_KEY_SECRET does not
    # rotate the secret by accident.
    assert parsed(MAIN)["parameters"]["lookupKeySecret"]["default"] is None
    azd = json.loads((BICEP / "main.parameters.json").read_text())["parameters"]
    assert azd["lookupKeySecret"] == {"value": "${NEW_LOOKUP_KEY_SECRET}"}
    for path in PARAM_FILES:
        _, assignments = bicepparam_doc(path)
        env = function(assignments["lookupKeySecret"]["value"], "readEnvironmentVariable")
        assert env is not None, path.name
        assert list(env.values()) == ["NEW_LOOKUP_KEY_SECRET", ""], path.name


def test_a_redeploy_without_a_value_keeps_the_secret_and_a_short_one_fails_early() -> None:
    vault = module("key-vault")
    condition = vault["resources"]["vault_secret"]["config"]["condition"]
    assert resolve(condition, Template(vault, {"secretValue": ""})) is False
    assert resolve(condition, Template(vault, {"secretValue": "s" * 64})) is True
    value = resource(vault, "vault_secret")["properties"]["value"]
    assert resolve(value, Template(vault, {"secretValue": "s" * 64})) == "s" * 64
    with pytest.raises(DeploymentFailure, match="at least 32 characters"):
        resolve(value, Template(vault, {"secretValue": "s" * 31}))


def test_the_vault_keeps_deleted_secrets_and_serves_nothing_else() -> None:
    props = resource(module("key-vault"), "vault")["properties"]
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert (
        props["enabledForDeployment"],
        props["enabledForDiskEncryption"],
        props["enabledForTemplateDeployment"],
    ) == (False, False, False)
    assert props["networkAcls"]["bypass"] == "None"


def test_the_previous_secret_is_deployed_only_during_a_rotation() -> None:
    assert "LOOKUP_KEY_SECRET_PREVIOUS" not in deployed_app_settings({})
    old = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
    deployed = deployed_app_settings({"lookupKeySecretPreviousVersion": old})
    vault_uri = DEPLOYMENT_OUTPUTS["keyVault.outputs.vaultUri"]
    assert deployed["LOOKUP_KEY_SECRET_PREVIOUS"] == (
        f"@Microsoft.KeyVault(SecretUri={vault_uri}secrets/lookup-key-secret/{old})"
    )
    # The current secret stays pinned to the current version, so both settings reach the app
    # in the same app-settings update.
    assert deployed["LOOKUP_KEY_SECRET"] == f"@Microsoft.KeyVault(SecretUri={CURRENT_URI})"
    resolved = app_settings_for({"lookupKeySecretPreviousVersion": old})
    assert resolved["LOOKUP_KEY_SECRET_PREVIOUS"] != resolved["LOOKUP_KEY_SECRET"]
