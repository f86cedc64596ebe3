"""Every resource body fits Azure's published Bicep types (Azure/bicep-types-az), and every
Microsoft Graph resource those of the Graph extension version it uses
(microsoftgraph/msgraph-bicep-types).

tests/support/bicep_types.py stands in for the type checks of `bicep build`; the stored types
under tests/bicep/types/ come from scripts/refresh-bicep-types. The tests here run the check
on the templates, on copies with a mistake put in, and on small handmade types.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import bicep_model_check as mc
from tests.support.bicep import BICEP
from tests.support.bicep_types import (
    TYPES_DIR,
    Analyzer,
    Report,
    TypeStore,
    check_files,
    used_resource_types,
)

REFRESH = (
    "scripts/refresh-bicep-types --git-dir <clone of Azure/bicep-types-az> --rev <commit>"
    " --graph-git-dir <clone of microsoftgraph/msgraph-bicep-types> --graph-rev <commit>"
)


@pytest.fixture(scope="module")
def report() -> Report:
    return check_files()


def _copy_templates(tmp_path: Path) -> Path:
    root = tmp_path / "bicep"
    shutil.copytree(BICEP, root)
    return root


def _check_copy(root: Path) -> Report:
    return Analyzer(root=root).check(sorted(root.rglob("*.bicep")))


def _edit(path: Path, old: str | re.Pattern[str], new: str) -> None:
    text = path.read_text()
    if isinstance(old, re.Pattern):
        edited, count = old.subn(new, text)
    else:
        edited, count = text.replace(old, new), text.count(old)
    assert count == 1, f"expected one {old!r} in {path.name}"
    path.write_text(edited)


def _max_value_of(param: str) -> re.Pattern[str]:
    """The @maxValue(...) decorator of one parameter (other decorators may follow it)."""
    return re.compile(r"@maxValue\(\d+\)(?P<rest>(?:\n@[^\n]*)*\nparam " + param + r" )")


# --- the templates ------------------------------------------------------------------------------


def test_every_resource_body_fits_azures_published_types(report: Report) -> None:
    findings = [str(f) for f in report.findings]
    assert findings == [], "\n".join(findings)


def test_stored_types_cover_exactly_the_resource_types_the_templates_use() -> None:
    used = {f"{rtype}@{version}".lower() for rtype, version in used_resource_types()}
    stored = TypeStore.load().covered()
    assert used - stored == set(), f"types missing from tests/bicep/types: run {REFRESH}"
    assert stored - used == set(), f"types no template uses any more: run {REFRESH}"


def test_a_new_resource_type_without_stored_types_is_a_finding(tmp_path: Path) -> None:
    root = _copy_templates(tmp_path)
    with (root / "modules" / "network.bicep").open("a") as f:
        f.write(
            "\nresource extraGateway 'Microsoft.Network/natGateways@2024-05-01' = {\n"
            "  name: 'ng'\n  location: location\n  properties: {}\n}\n"
        )
    used = {f"{t}@{v}".lower() for t, v in used_resource_types(root.rglob("*.bicep"))}
    assert "microsoft.network/natgateways@2024-05-01" in used - TypeStore.load().covered()
    findings = [str(f) for f in _check_copy(root).findings]
    assert (
        "modules/network.bicep: resource extraGateway: : Microsoft.Network/natGateways"
        "@2024-05-01 is not in tests/bicep/types: run scripts/refresh-bicep-types"
    ) in findings


def test_a_parameter_bound_wider_than_the_published_one_is_a_finding(tmp_path: Path) -> None:
    root = _copy_templates(tmp_path)
    _edit(root / "modules" / "function-app.bicep", _max_value_of("preWarmedInstanceCount"),
          r"@maxValue(20)\g<rest>")  # fmt: skip
    findings = [str(f) for f in _check_copy(root).findings]
    assert (
        "modules/function-app.bicep: resource site: properties.siteConfig.preWarmedInstanceCount: "
        "param preWarmedInstanceCount allows up to 20 (@maxValue(20)), above the maximum 10 of "
        "Microsoft.Web/sites@2024-11-01"
    ) in findings


def test_a_caller_bound_wider_than_where_the_module_sends_it_is_a_finding(tmp_path: Path) -> None:
    # main.bicep's own @maxValue(20), with the module's declaration as wide: the value still
    # arrives at siteConfig.preWarmedInstanceCount, whose published maximum is 10.
    root = _copy_templates(tmp_path)
    for path in (root / "main.bicep", root / "modules" / "function-app.bicep"):
        _edit(path, _max_value_of("preWarmedInstanceCount"), r"@maxValue(20)\g<rest>")
    findings = [str(f) for f in _check_copy(root).findings if f.file == "main.bicep"]
    assert (
        "main.bicep: module functionApp: params.preWarmedInstanceCount: "
        "param preWarmedInstanceCount allows up to 20 (@maxValue(20)), above the maximum 10 of "
        "Microsoft.Web/sites@2024-11-01 (via modules/function-app.bicep "
        "site.properties.siteConfig.preWarmedInstanceCount)"
    ) in findings


def test_a_caller_bound_wider_than_the_module_parameter_is_a_finding(tmp_path: Path) -> None:
    root = _copy_templates(tmp_path)
    _edit(root / "main.bicep", _max_value_of("preWarmedInstanceCount"), r"@maxValue(20)\g<rest>")
    module_max = re.search(
        _max_value_of("preWarmedInstanceCount").pattern.replace(r"\d+", r"(\d+)"),
        (root / "modules" / "function-app.bicep").read_text(),
    )
    assert module_max is not None and int(module_max.group(1)) < 20
    findings = [str(f) for f in _check_copy(root).findings if f.file == "main.bicep"]
    assert (
        "main.bicep: module functionApp: params.preWarmedInstanceCount: "
        "param preWarmedInstanceCount allows up to 20 (@maxValue(20)), above the maximum "
        f"{module_max.group(1)} of modules/function-app.bicep param preWarmedInstanceCount"
    ) in findings


def test_a_misspelt_property_is_a_finding_naming_it(tmp_path: Path, report: Report) -> None:
    root = _copy_templates(tmp_path)
    app = root / "modules" / "function-app.bicep"
    _edit(app, "    httpsOnly: true\n", "    httpsOnyl: true\n")
    _edit(app, "      http20Enabled: true\n", "      HTTP20Enabled: true\n")
    before = {str(f) for f in report.findings}
    findings = [str(f) for f in _check_copy(root).findings if str(f) not in before]
    assert findings == [
        "modules/function-app.bicep: resource site: properties.httpsOnyl: "
        "unknown property of SiteProperties (did you mean 'httpsOnly'?)",
        "modules/function-app.bicep: resource site: properties.siteConfig.HTTP20Enabled: "
        "property 'HTTP20Enabled' of SiteConfig is spelt 'http20Enabled'",
    ]


def test_microsoft_graph_resources_are_checked_against_the_extensions_published_types(
    tmp_path: Path, report: Report
) -> None:
    graph = [c for c in report.checked if c.what.lower().startswith("microsoft.graph/")]
    assert {c.what for c in graph} == {
        "Microsoft.Graph/applications@v1.0",
        "Microsoft.Graph/servicePrincipals@v1.0",
        "Microsoft.Graph/appRoleAssignedTo@v1.0",
    }
    assert {c.status for c in graph} <= {"checked", "existing"}
    root = _copy_templates(tmp_path)
    _edit(
        root / "modules" / "entra-app.bicep",
        "  appRoleAssignmentRequired: appRole",
        "  appRoleAssignmentRequried: appRole",
    )
    _edit(
        root / "modules" / "entra-role-assignments.bicep",
        "    appRoleId: appRoleId\n",
        "    appRoleId: 'not-a-guid'\n",
    )
    before = {str(f) for f in report.findings}
    findings = [str(f) for f in _check_copy(root).findings if str(f) not in before]
    assert findings[0].startswith(
        "modules/entra-app.bicep: resource servicePrincipal: appRoleAssignmentRequried: "
        "unknown property of Microsoft.Graph/servicePrincipals"
    ), findings
    assert "did you mean 'appRoleAssignmentRequired'" in findings[0]
    # The published pattern and length of an app role's id.
    assert [f.split(": ", 3)[2:] for f in findings[1:]] == [
        [
            "appRoleId",
            "'not-a-guid' is shorter than 36 characters (Microsoft.Graph/appRoleAssignedTo@v1.0)",
        ],
        [
            "appRoleId",
            "'not-a-guid' does not match the pattern "
            "'^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$' "
            "(Microsoft.Graph/appRoleAssignedTo@v1.0)",
        ],
    ]


def test_stored_graph_types_name_the_extension_version_bicepconfig_uses() -> None:
    graph = json.loads((TYPES_DIR / "source.json").read_text())["graph"]
    config = json.loads((BICEP / "bicepconfig.json").read_text())
    assert graph["extension"] in config["extensions"].values()
    assert graph["repository"] == "https://github.com/microsoftgraph/msgraph-bicep-types"
    assert re.fullmatch(r"[0-9a-f]{40}", graph["commit"])
    api, version = graph["extension"].rsplit("/", 1)[1].split(":")
    assert graph["types"] == f"generated/microsoftgraph/microsoft.graph/{api}/{version}/types.json"


def test_the_report_lists_skipped_values_and_types_without_published_definitions(
    report: Report,
) -> None:
    text = report.text()
    store = TypeStore.load()
    used = {f"{t}@{v}".lower() for t, v in used_resource_types()}
    for name, reason in store.unpublished.items():
        if name.lower() in used:
            assert f"  {name}: {reason}" in text
    assert report.skipped, "nothing computed was skipped: the expression walk is not reached"
    for checked, skip in report.skipped:
        assert f"  {checked.file} {checked.symbol} {skip.path or '(body)'}: {skip.reason}" in text
    # Every declared resource type is in the table of what was checked.
    for checked in report.checked:
        if checked.status == "checked" and not checked.what.startswith("module "):
            assert f"  {checked.what}: " in text


def test_the_report_names_an_unpublished_type_and_a_skipped_value(tmp_path: Path) -> None:
    store = TypeStore(
        {
            "resources": {"Test.Rp/things@2024-01-01": {"$ref": "t.json#/9"}},
            "unpublished": {"Test.Rp/things/keys@2024-01-01": "BCP081: none published"},
        },
        {"t.json": TABLE},
    )
    path = tmp_path / "one.bicep"
    path.write_text(
        "param n int\n"
        "resource t 'Test.Rp/things@2024-01-01' = {\n  name: 'x'\n"
        "  properties: {\n    count: n\n    state: toLower('ENABLED')\n  }\n}\n"
        "resource k 'Test.Rp/things/keys@2024-01-01' = {\n  parent: t\n  name: 'k'\n}\n"
    )
    text = Analyzer(store, root=tmp_path).check([path]).text()
    assert "  Test.Rp/things/keys@2024-01-01: BCP081: none published\n" in text
    assert "    declared in: one.bicep k\n" in text
    assert (
        "  one.bicep t properties.count: param n has no @minValue; "
        "Test.Rp/things@2024-01-01 allows minimum 0\n"
    ) in text
    assert (
        "  one.bicep t properties.state: to_lower() result: a string, its value computed\n" in text
    )


# --- the stored data ----------------------------------------------------------------------------


def _refs(value: Any) -> Iterator[int]:
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str) and value["$ref"].startswith("#/"):
            yield int(value["$ref"][2:])
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def test_stored_types_hold_only_entries_reachable_from_the_indexed_resources() -> None:
    index = json.loads((TYPES_DIR / "index.json").read_text())
    roots: dict[str, list[int]] = {}
    for ref in index["resources"].values():
        relpath, n = ref["$ref"].split("#/")
        roots.setdefault(relpath, []).append(int(n))
    stored = {p.relative_to(TYPES_DIR).as_posix() for p in TYPES_DIR.rglob("types.json")}
    assert stored == set(roots)
    for relpath, starts in roots.items():
        table = json.loads((TYPES_DIR / relpath).read_text())
        assert all(table[n]["$type"] == "ResourceType" for n in starts)
        seen: set[int] = set()
        todo = list(starts)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(_refs(table[n]))
        assert seen == set(range(len(table))), f"{relpath} holds unreachable entries"


def test_stored_types_name_their_source_commit() -> None:
    source = json.loads((TYPES_DIR / "source.json").read_text())
    assert source["repository"] == "https://github.com/Azure/bicep-types-az"
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])


# --- the checker on handmade types ---------------------------------------------------------------

# A small types.json in the bicep-types serialization: one resource type whose properties
# exercise each kind of check.
TABLE: list[dict[str, Any]] = [
    {"$type": "StringType"},
    {"$type": "StringLiteralType", "value": "Enabled"},
    {"$type": "StringLiteralType", "value": "Disabled"},
    {"$type": "UnionType", "elements": [{"$ref": "#/1"}, {"$ref": "#/2"}]},
    {"$type": "IntegerType", "minValue": 0, "maxValue": 10},
    {"$type": "BooleanType"},
    {
        "$type": "ObjectType",
        "name": "ThingProperties",
        "properties": {
            "state": {"type": {"$ref": "#/3"}, "flags": 0},
            "count": {"type": {"$ref": "#/4"}, "flags": 0},
            "enabled": {"type": {"$ref": "#/5"}, "flags": 0},
            "hostName": {"type": {"$ref": "#/0"}, "flags": 2},
            "ports": {"type": {"$ref": "#/8"}, "flags": 0},
            "setting": {"type": {"$ref": "#/10"}, "flags": 0},
            "code": {"type": {"$ref": "#/15"}, "flags": 0},
        },
    },
    {
        "$type": "ObjectType",
        "name": "Test.Rp/things",
        "properties": {
            "name": {"type": {"$ref": "#/0"}, "flags": 9},
            "id": {"type": {"$ref": "#/0"}, "flags": 10},
            "properties": {"type": {"$ref": "#/6"}, "flags": 0},
        },
    },
    {"$type": "ArrayType", "itemType": {"$ref": "#/4"}, "maxLength": 2},
    {
        "$type": "ResourceType",
        "name": "Test.Rp/things@2024-01-01",
        "body": {"$ref": "#/7"},
        "readableScopes": 8,
        "writableScopes": 8,
    },
    {
        "$type": "DiscriminatedObjectType",
        "name": "Setting",
        "discriminator": "kind",
        "baseProperties": {"label": {"type": {"$ref": "#/0"}, "flags": 0}},
        "elements": {"Timer": {"$ref": "#/11"}, "Queue": {"$ref": "#/12"}},
    },
    {
        "$type": "ObjectType",
        "name": "TimerSetting",
        "properties": {
            "kind": {"type": {"$ref": "#/13"}, "flags": 1},
            "schedule": {"type": {"$ref": "#/0"}, "flags": 1},
        },
    },
    {
        "$type": "ObjectType",
        "name": "QueueSetting",
        "properties": {
            "kind": {"type": {"$ref": "#/14"}, "flags": 1},
            "queueName": {"type": {"$ref": "#/0"}, "flags": 0},
        },
    },
    {"$type": "StringLiteralType", "value": "Timer"},
    {"$type": "StringLiteralType", "value": "Queue"},
    {"$type": "StringType", "minLength": 2, "maxLength": 4, "pattern": "^[A-Z]+$"},
]


def _problems(properties: str, declarations: str = "", name: str = "'x'") -> list[tuple[str, str]]:
    store = TypeStore(
        {"resources": {"Test.Rp/things@2024-01-01": {"$ref": "t.json#/9"}}}, {"t.json": TABLE}
    )
    text = (
        f"{declarations}\n"
        f"resource t 'Test.Rp/things@2024-01-01' = {{\n  name: {name}\n"
        f"  properties: {{\n{properties}\n  }}\n}}\n"
    )
    doc = mc._parser().parse(text=text)
    result = Analyzer(store).file(Path("snippet.bicep"), doc)
    (checked,) = [c for c in result.resources if c.symbol == "t"]
    return checked.outcome.problems


def test_checker_accepts_a_body_that_fits() -> None:
    assert (
        _problems(
            "    state: 'Enabled'\n    count: 10\n    enabled: true\n"
            "    ports: [\n      1\n      2\n    ]\n    code: 'AB'\n"
            "    setting: {\n      kind: 'Timer'\n      schedule: 'x'\n"
            "      label: 'y'\n    }"
        )
        == []
    )


def test_checker_reports_a_value_outside_an_enum() -> None:
    assert _problems("    state: 'Paused'") == [
        ("properties.state", "'Paused' is not one of 'Enabled', 'Disabled'")
    ]
    assert _problems("    state: 'enabled'") == [
        ("properties.state", "'enabled' is spelt 'Enabled' in the published type")
    ]


def test_checker_reports_an_int_out_of_range() -> None:
    assert _problems("    count: 11") == [
        ("properties.count", "11 is above the maximum 10 of Test.Rp/things@2024-01-01")
    ]
    assert _problems("    count: -1") == [
        ("properties.count", "-1 is below the minimum 0 of Test.Rp/things@2024-01-01")
    ]


def test_checker_reports_a_parameter_whose_bounds_exceed_the_property() -> None:
    wide = "@minValue(0)\n@maxValue(20)\nparam n int = 1\n"
    assert _problems("    count: n", wide) == [
        (
            "properties.count",
            "param n allows up to 20 (@maxValue(20)), above the maximum 10 of "
            "Test.Rp/things@2024-01-01",
        )
    ]
    assert _problems("    count: n", "@minValue(0)\n@maxValue(10)\nparam n int = 1\n") == []
    # A condition that rules out a value narrows the parameter: 11 never reaches the property.
    assert _problems(
        "    count: (n == 0) ? 5 : n", "@minValue(0)\n@maxValue(11)\nparam n int\n"
    ) == [
        (
            "properties.count",
            "param n (the condition around it rules out 0) allows up to 11, above the maximum 10 "
            "of Test.Rp/things@2024-01-01",
        )
    ]
    assert (
        _problems("    count: (n == 11) ? 5 : n", "@minValue(0)\n@maxValue(11)\nparam n int\n")
        == []
    )


def test_checker_reports_an_allowed_value_outside_an_enum() -> None:
    allowed = "@allowed([\n  'Enabled'\n  'Paused'\n])\nparam s string\n"
    assert _problems("    state: s", allowed) == [
        (
            "properties.state",
            "'Paused' is not one of 'Enabled', 'Disabled' (via @allowed of param s)",
        )
    ]


def test_checker_reports_a_read_only_property_that_is_set() -> None:
    assert _problems("    hostName: 'h'") == [
        ("properties.hostName", "read-only property of ThingProperties: it cannot be set")
    ]


def test_checker_reports_an_unknown_key_with_the_closest_name() -> None:
    assert _problems("    enabeld: true") == [
        ("properties.enabeld", "unknown property of ThingProperties (did you mean 'enabled'?)")
    ]


def test_checker_reports_a_value_of_the_wrong_type() -> None:
    assert _problems("    count: '3'\n    enabled: 1\n    state: true\n    ports: 4") == [
        ("properties.count", "'3' is given, but an int is expected"),
        ("properties.enabled", "1 (int) is given, but a bool is expected"),
        ("properties.state", "true (bool) is given, but 'Enabled' or 'Disabled' is expected"),
        ("properties.ports", "4 (int) is given, but an array is expected"),
    ]
    assert _problems("    count: 's${'x'}'") == [
        ("properties.count", "'s${'x'}' is given, but an int is expected")
    ]


def test_checker_reports_array_items_and_length() -> None:
    assert _problems("    ports: [\n      1\n      12\n      3\n    ]") == [
        ("properties.ports", "3 items, more than the maximum 2 (Test.Rp/things@2024-01-01)"),
        ("properties.ports[1]", "12 is above the maximum 10 of Test.Rp/things@2024-01-01"),
    ]


def test_checker_reports_string_length_and_pattern() -> None:
    assert _problems("    code: 'abcde'") == [
        ("properties.code", "'abcde' is longer than 4 characters (Test.Rp/things@2024-01-01)"),
        (
            "properties.code",
            "'abcde' does not match the pattern '^[A-Z]+$' (Test.Rp/things@2024-01-01)",
        ),
    ]


def test_checker_picks_the_variant_of_a_discriminated_object() -> None:
    assert _problems("    setting: {\n      kind: 'Queue'\n      schedule: 'x'\n    }") == [
        (
            "properties.setting.schedule",
            "unknown property of QueueSetting",
        )
    ]
    assert _problems("    setting: {\n      kind: 'Timer'\n    }") == [
        ("properties.setting.schedule", "required property of TimerSetting is missing")
    ]
    assert _problems("    setting: {\n      kind: 'Cron'\n    }") == [
        ("properties.setting.kind", "'Cron' is not one of 'Timer', 'Queue'")
    ]


def test_checker_looks_into_conditions_variables_and_loops() -> None:
    declarations = "param on bool\nvar states = [\n  'On'\n]\n"
    assert _problems(
        "    state: on ? 'Enabled' : 'Off'\n    ports: [for s in states: 40]", declarations
    ) == [
        ("properties.state", "'Off' is not one of 'Enabled', 'Disabled'"),
        ("properties.ports[*]", "40 is above the maximum 10 of Test.Rp/things@2024-01-01"),
    ]


def test_checker_reports_a_runtime_value_in_a_deploy_time_constant() -> None:
    declarations = "resource other 'Test.Rp/things@2024-01-01' existing = {\n  name: 'o'\n}\n"
    assert _problems("    enabled: true", declarations, name="other.properties.hostName") == [
        (
            "name",
            "deploy-time constant, but other.properties.hostName is known only during the "
            "deployment (BCP120)",
        )
    ]
    assert _problems("    enabled: true", declarations, name="other.name") == []
