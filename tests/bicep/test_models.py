"""Every resource body matches the azure-mgmt-* SDK model of its type.

tests/support/bicep_model_check.py stands in for the Bicep CLI's type check; the tests here
also show it catching a misspelt or misplaced property, wrong case, a read-only property, a
wrong shape, mistakes inside loops and conditions, and the template-only body of a function
key, and refusing a type it has no model for.
"""

from __future__ import annotations

import pytest

from tests.support import bicep_model_check as mc
from tests.support.bicep import BICEP_FILES, parsed


def test_every_resource_matches_its_azure_sdk_model() -> None:
    findings = [str(f) for path in BICEP_FILES for f in mc.check_file(path, parsed(path))]
    assert findings == []


def test_every_declared_resource_type_has_an_sdk_model() -> None:
    checked = {
        res.type.lower()
        for path in BICEP_FILES
        for res in mc.iter_resources(path, parsed(path))
        if not res.existing and mc.is_arm(res.type)
    }
    assert len(checked) >= 20
    assert checked <= set(mc.RESOURCE_MODELS)


def _findings(bicep: str) -> list[tuple[str, str]]:
    doc = mc._parser().parse(text=bicep)
    (res,) = doc["resources"].values()
    return mc.check_resource(res["type"], mc._unwrap_resource_body(res["config"]))


def test_model_check_reports_a_misspelt_property() -> None:
    problems = _findings(
        "resource site 'Microsoft.Web/sites@2024-11-01' = {\n"
        "  name: 'x'\n  location: 'westeurope'\n"
        "  properties: {\n    httpsOnly: true\n    siteConfig: {\n"
        "      minimumElasticInstancesCount: 3\n    }\n  }\n}\n"
    )
    assert problems == [
        (
            "properties.siteConfig.minimumElasticInstancesCount",
            "unknown property for SiteConfig (did you mean 'minimumElasticInstanceCount'?)",
        )
    ]


def test_model_check_reports_a_property_at_the_wrong_level() -> None:
    # maximumElasticWorkerCount belongs to properties, not to sku.
    problems = _findings(
        "resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {\n"
        "  name: 'p'\n  location: 'westeurope'\n"
        "  sku: {\n    name: 'EP1'\n    maximumElasticWorkerCount: 20\n  }\n}\n"
    )
    assert [p for p, _ in problems] == ["sku.maximumElasticWorkerCount"]


def test_model_check_reports_wrong_case_read_only_and_wrong_shape() -> None:
    problems = dict(
        _findings(
            "resource redis 'Microsoft.Cache/redisEnterprise@2025-07-01' = {\n"
            "  name: 'r'\n  location: 'westeurope'\n  sku: {\n    name: 'Balanced_B0'\n  }\n"
            "  properties: {\n    MinimumTlsVersion: '1.2'\n    hostName: 'x'\n"
            "    highAvailability: {\n      enabled: true\n    }\n  }\n}\n"
        )
    )
    assert "case-sensitive" in problems["properties.MinimumTlsVersion"]
    assert "read-only" in problems["properties.hostName"]
    assert "an object is given" in problems["properties.highAvailability"]


def test_model_check_looks_inside_loops_and_conditions() -> None:
    problems = _findings(
        "resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for p in ps: {\n"
        "  name: guid(p)\n"
        "  properties: cond ? {\n    principalId: p\n    roleDefinitionId: 'r'\n  } : {\n"
        "    principalID: p\n    roleDefinitionId: 'r'\n  }\n}]\n"
    )
    paths = [p for p, _ in problems]
    assert "properties.principalID" in paths
    assert "properties.principalId" in paths  # missing from the false branch


def test_model_check_refuses_a_type_it_has_no_model_for() -> None:
    with pytest.raises(KeyError, match="no SDK model"):
        _findings("resource x 'Microsoft.Foo/bars@2020-01-01' = {\n  name: 'x'\n}\n")


def test_both_generations_of_sdk_models_are_enumerated() -> None:
    # azure-mgmt-web 11 (TypeSpec rest_field models): real nesting under properties.
    site = mc.shape_of(mc._model(mc._WEB, "Site"))
    site_config = site.fields["properties"].shape.fields["siteConfig"].shape  # type: ignore[attr-defined]
    assert {
        "minimumElasticInstanceCount",
        "preWarmedInstanceCount",
        "functionAppScaleLimit",
    } <= set(site_config.fields)
    # azure-mgmt-apimanagement (msrest _attribute_map): flattened "properties.x" keys.
    apim = mc.shape_of(mc._model(mc._APIM, "ApiManagementServiceResource"))
    apim_props = apim.fields["properties"].shape.fields  # type: ignore[attr-defined]
    assert apim_props["publisherEmail"].required


def test_model_check_holds_a_function_key_to_its_template_body() -> None:
    # name and value belong under properties in a template (functions-infrastructure-as-code,
    # Function access keys), not at the top as in the SDK's KeyInfo.
    problems = _findings(
        "resource key 'Microsoft.Web/sites/host/functionKeys@2024-11-01' = {\n"
        "  name: 'x/default/apim'\n  value: 'v'\n}\n"
    )
    assert sorted(p for p, _ in problems) == ["properties", "value"]
    assert (
        _findings(
            "resource key 'Microsoft.Web/sites/host/functionKeys@2024-11-01' = {\n"
            "  name: 'x/default/apim'\n  properties: {\n    name: 'apim'\n    value: 'v'\n"
            "  }\n}\n"
        )
        == []
    )


def test_model_check_reports_a_misspelt_subnet_property() -> None:
    problems = _findings(
        "resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {\n"
        "  name: 'v'\n  location: 'westeurope'\n  properties: {\n    subnets: [\n"
        "      {\n        name: 's'\n        properties: {\n"
        "          serviceEndpoint: []\n        }\n      }\n    ]\n  }\n}\n"
    )
    assert [p for p, _ in problems] == ["properties.subnets[0].properties.serviceEndpoint"]
