"""The Entra side of Genesys Cloud's OAuth 2.0 client credentials: the lookup API's
registration with an app role, Genesys's client registration and its role assignment, and
main.bicep handing their IDs to the lookup API's token check.
"""

from __future__ import annotations

from tests.support.bicep import (
    MAIN,
    Template,
    dotted,
    function,
    module,
    module_call,
    module_condition,
    parsed,
    resolve,
    resource,
    resources_of,
)


def test_the_lookup_api_registration_has_an_application_role_and_v2_tokens() -> None:
    entra = module("entra-lookup-api")
    assert "microsoftGraphV1" in entra["extensions"]
    api = resource(entra, "lookupApiApp")
    assert api["api"]["requestedAccessTokenVersion"] == 2
    assert api["signInAudience"] == "AzureADMyOrg"
    (role,) = api["appRoles"]
    assert role["allowedMemberTypes"] == ["Application"]
    assert role["value"] == "appRoleValue" and role["id"] == "appRoleId"
    assert role["isEnabled"] is True
    assert entra["parameters"]["appRoleValue"]["default"] == "Dip.Lookup"
    # A stable GUID, the same on every deployment.
    assert function(entra["variables"]["appRoleId"]["value"], "guid") is not None


def test_only_principals_assigned_the_role_get_a_token_and_genesys_is_assigned_it() -> None:
    entra = module("entra-lookup-api")
    principal = resource(entra, "apiServicePrincipal")
    assert principal["appRoleAssignmentRequired"] is True
    assert resources_of(entra, "Microsoft.Graph/appRoleAssignedTo") == []
    outputs = {name: o["value"] for name, o in entra["outputs"].items()}
    assert dotted(outputs["apiServicePrincipalId"]) == "apiServicePrincipal.id"
    assert outputs["appRoleId"] == "appRoleId"
    assert outputs["genesysPrincipalId"] == "genesysPrincipalId"
    # main.bicep assigns the role to Genesys's principal once API Management and Redis exist.
    main = parsed(MAIN)
    call = main["modules"]["genesysRoleAssignment"]["config"]
    # Only for the registration this deployment creates; a brought one is assigned already.
    given = {"lookupApiClientId": "00000000-0000-0000-0000-0000000000bb"}
    assert resolve(call["condition"], Template(main, {})) is True
    assert resolve(call["condition"], Template(main, given)) is False
    params = call["config"]["params"]
    assert (
        dotted(params["resourceServicePrincipalId"])
        == "entraLookupApi.outputs.apiServicePrincipalId"
    )
    assert dotted(params["appRoleId"]) == "entraLookupApi.outputs.appRoleId"
    assert [dotted(p) for p in params["principalIds"]] == [
        "entraLookupApi.outputs.genesysPrincipalId"
    ]
    assert sorted(call["config"]["dependsOn"]) == ["apim", "redis"]
    assignments = module("entra-role-assignments")
    (assigned,) = resources_of(assignments, "Microsoft.Graph/appRoleAssignedTo")
    assert assigned["resourceId"] == "resourceServicePrincipalId"
    assert assigned["appRoleId"] == "appRoleId"
    assert assigned["principalId"] == "principalId"


def test_the_genesys_client_is_created_only_when_none_is_given_and_no_secret_is_declared() -> None:
    entra = module("entra-lookup-api")
    for symbol in ("genesysClient", "genesysClientServicePrincipal"):
        config = entra["resources"][symbol]["config"]
        assert config["condition"] == "createGenesysClient", symbol
    existing = entra["resources"]["existingGenesysClientServicePrincipal"]
    assert existing["existing"] is True
    assert resource(entra, "existingGenesysClientServicePrincipal") == {
        "appId": "genesysClientAppId"
    }
    # Secrets are made and rotated with az ad app credential: a declared list would replace
    # them on every deployment.
    for app in resources_of(entra, "Microsoft.Graph/applications"):
        assert "passwordCredentials" not in app and "keyCredentials" not in app


def test_main_hands_the_registrations_to_the_lookup_apis_token_check() -> None:
    main = parsed(MAIN)
    assert module_condition(main, "modules/entra-lookup-api.bicep") is not None
    params = module_call(main, "modules/apim-api.bicep")["params"]
    assert params["lookupApiAudience"] == "lookupApiAudience"
    assert params["genesysClientAppId"] == "genesysClientId"
    assert dotted(params["tenantId"]) == "tenant().tenantId" or "tenant" in str(params["tenantId"])
    for output in ("ENTRA_TOKEN_URL", "ENTRA_TENANT_ID", "LOOKUP_API_SCOPE", "GENESYS_CLIENT_ID"):
        assert output in main["outputs"], output
    assert "oauth2/v2.0/token" in str(main["outputs"]["ENTRA_TOKEN_URL"]["value"])
    assert str(main["outputs"]["LOOKUP_API_SCOPE"]["value"]).endswith("/.default")


def test_a_brought_lookup_api_registration_without_its_genesys_client_fails_early() -> None:
    main = parsed(MAIN)
    text = str(main["variables"]["genesysClientId"]["value"])
    assert "genesysClientAppId is required when lookupApiClientId is given" in text
