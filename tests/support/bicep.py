"""What the offline tests of bicep/ share: paths, pycep helpers, an evaluator, .bicepparam readers.

The Bicep CLI cannot run here, so tests/bicep/ reads the templates as pycep-parser parses them.
This module holds what more than one of those test modules needs:

* the paths of the deployment (main.bicep, its modules, parameter files, the policy XML) and
  the built-in role definition IDs it must grant;
* helpers over pycep's JSON: a parsed file, the bodies of its resources and module calls,
  decorators, dotted property paths, function calls, object-literal keys;
* a small evaluator of template expressions (``Template``, ``resolve``), enough to work out
  what a template deploys for given parameters, the app settings among them
  (``app_settings_for``), and to see a fail-early check stop a deployment
  (``DeploymentFailure``);
* readers of the .bicepparam files, and the API Management policy XML.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import ChainMap
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from tests.support import bicep_model_check as mc

ROOT = Path(__file__).resolve().parents[2]
BICEP = ROOT / "bicep"
MAIN = BICEP / "main.bicep"
MODULES = BICEP / "modules"
POLICY = BICEP / "policies" / "lookup-api.xml"
BICEP_FILES = sorted(BICEP.rglob("*.bicep"))
PARAM_FILES = sorted(BICEP.glob("*.bicepparam"))

# Built-in role definition IDs the deployment must grant.
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"
WEB_PLAN_CONTRIBUTOR = "2cc479cb-7b4d-49a8-b449-8c00fd0f0a4b"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"


# --- helpers over pycep's JSON -------------------------------------------------------------------


@cache
def parsed(path: Path) -> dict[str, Any]:
    doc = mc.parse_bicep(path)
    # pycep leaves out sections a file does not have.
    for section in ("metadata", "parameters", "variables", "resources", "modules", "outputs"):
        doc.setdefault(section, {})
    return doc


def module(name: str) -> dict[str, Any]:
    return parsed(MODULES / f"{name}.bicep")


def resources_of(doc: Mapping[str, Any], rtype: str) -> list[dict[str, Any]]:
    """Bodies (conditions and loops stripped) of the declared resources of one type."""
    return [
        mc._unwrap_resource_body(res["config"])
        for res in doc["resources"].values()
        if res["type"].lower() == rtype.lower() and not res["existing"]
    ]


def resource(doc: Mapping[str, Any], symbol: str) -> dict[str, Any]:
    return mc._unwrap_resource_body(doc["resources"][symbol]["config"])


def decorators(param: Mapping[str, Any]) -> dict[str, Any]:
    # @secure() takes no argument: present means True.
    return {d["type"]: d.get("argument", True) for d in param["decorators"]}


def dotted(value: Any) -> str | None:
    """'a.b.c' for an identifier or a chain of property accessors; None otherwise."""
    if isinstance(value, str):
        return value
    if mc._is_expression(value) and "operator" in value:
        op = value["operator"]
        if op["type"] == "property_accessor":
            left, right = dotted(op["operands"]["operand_1"]), dotted(op["operands"]["operand_2"])
            if left is not None and right is not None:
                return f"{left}.{right}"
    return None


def function(value: Any, name: str) -> dict[str, Any] | None:
    """The parameters of a call to ``name`` (pycep's snake_case type), else None."""
    if mc._is_expression(value) and "function" in value and value["function"]["type"] == name:
        return value["function"]["parameters"]
    return None


def walk(value: Any) -> Iterator[Any]:
    """Every value nested anywhere inside ``value``, itself included."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def literal_keys(value: Any, variables: Mapping[str, Any]) -> set[str]:
    """Keys of an object literal, following variables and union(...) arguments."""
    if isinstance(value, str) and value in variables:
        return literal_keys(variables[value]["value"], variables)
    union = function(value, "union")
    if union is not None:
        return set().union(*(literal_keys(arg, variables) for arg in union.values()))
    if isinstance(value, dict) and not mc._is_expression(value) and not mc._is_loop(value):
        return {mc.unquote(key) for key in value}
    return set()


def unquoted(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {mc.unquote(key): value for key, value in obj.items()}


def module_call(doc: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The body of the one call of a module, its `if (...)` condition stripped."""
    calls = [
        mc._unwrap_resource_body(m["config"])
        for m in doc["modules"].values()
        if m["detail"]["path"] == path
    ]
    assert len(calls) == 1, f"expected one call of {path}"
    return calls[0]


def module_condition(doc: Mapping[str, Any], path: str) -> Any:
    """The `if (...)` condition of the one call of a module, or None."""
    (config,) = [m["config"] for m in doc["modules"].values() if m["detail"]["path"] == path]
    return config["condition"] if set(config) == {"condition", "config"} else None


def default_of(doc: Mapping[str, Any], param: str) -> Any:
    return doc["parameters"][param]["default"]


def role_assignments(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(role GUID or variable, scope symbol, principal) for each role assignment."""
    out = []
    variables = doc.get("variables") or {}
    for body in resources_of(doc, "Microsoft.Authorization/roleAssignments"):
        props = body["properties"]
        role_args = function(props["roleDefinitionId"], "subscription_resource_id") or {}
        role = next((v for k, v in role_args.items() if k.startswith("resource_name")), None)
        if isinstance(role, str) and role in variables:
            role = variables[role]["value"]
        out.append({"role": role, "scope": body.get("scope"), "principal": props["principalId"]})
    return out


# --- what a template deploys, for given parameters ----------------------------------------------


class DeploymentFailure(Exception):
    """int() of a non-number: ARM stops the deployment with this text as the error."""


class Template(Mapping[str, Any]):
    """A Bicep file's parameters (defaults, then the values given) and its variables.

    Variables are resolved when first used, as ARM evaluates them, so a fail-early check
    (int() of a message) raises DeploymentFailure only where the deployment would stop.
    """

    def __init__(self, doc: Mapping[str, Any], values: Mapping[str, Any]) -> None:
        self._values = {name: p["default"] for name, p in doc["parameters"].items()}
        self._values.update(values)
        self._variables = doc["variables"]
        self._resolved: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        if name not in self._resolved:
            self._resolved[name] = resolve(self._variables[name]["value"], self)
        return self._resolved[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._variables

    def __iter__(self) -> Iterator[str]:
        return iter({**self._variables, **self._values})

    def __len__(self) -> int:
        return len({**self._variables, **self._values})


def _interpolate(text: str, params: Mapping[str, Any]) -> str | None:
    """'${name}' pieces filled in; None when one is not a known identifier."""
    names = re.findall(r"\$\{([^}]*)\}", text)
    if not all(name in params and params[name] is not None for name in names):
        return None
    return re.sub(r"\$\{([^}]*)\}", lambda m: str(params[m.group(1)]), text)


def _resolve_loop(loop: Mapping[str, Any], params: Mapping[str, Any]) -> list[Any] | None:
    detail = loop["loop_type"]["detail"]
    items = resolve(detail["array_name"], params)
    if not isinstance(items, list):
        return None
    out = []
    for index, item in enumerate(items):
        names = {detail["item_name"]: item}
        if detail.get("index_name"):
            names[detail["index_name"]] = index
        # The loop's names first, then the file's, looked up only when used.
        out.append(resolve(loop["config"], ChainMap(names, params)))  # type: ignore[arg-type]
    return out


def resolve(value: Any, params: Mapping[str, Any]) -> Any:
    """A literal, or a parameter's value; None for anything computed at deployment.

    A property path such as ``apim.outputs.publicIpAddresses`` resolves when ``params``
    holds it: that is how a test states what Azure would report.
    """
    if isinstance(value, str) and value in params:
        return params[value]
    path = None if isinstance(value, str) else dotted(value)
    if path is not None and path in params:
        return params[path]
    if isinstance(value, str) and "${" not in value:
        return value
    if isinstance(value, str):
        return _interpolate(value, params)
    if mc._is_loop(value):
        return _resolve_loop(value, params)
    int_of = function(value, "int")
    if int_of is not None:
        inner = resolve(int_of["value_to_convert"], params)
        if isinstance(inner, str) and not inner.strip().lstrip("-").isdigit():
            raise DeploymentFailure(inner)
        return None if inner is None else int(inner)
    empty_of = function(value, "empty")
    if empty_of is not None:
        inner = resolve(empty_of["item_to_test"], params)
        return None if inner is None else len(inner) == 0
    contains_of = function(value, "contains")
    if contains_of is not None:
        container = resolve(contains_of["container"], params)
        item = resolve(contains_of["item_to_find"], params)
        return None if container is None or item is None else item in container
    concat_of = function(value, "concat")
    if concat_of is not None:
        parts = [resolve(arg, params) for arg in concat_of.values()]
        if any(not isinstance(part, list) for part in parts):
            return None
        return [item for part in parts for item in part]
    resource_id = function(value, "resource_id")
    if resource_id is not None:
        # pycep lists resource_name_2 as None when only one name is given.
        names = [
            resolve(v, params)
            for k, v in resource_id.items()
            if k.startswith("resource_name") and v is not None
        ]
        if any(n is None for n in names):
            return None
        # ARM interleaves the type's segments with the names: .../virtualNetworks/v/subnets/s
        namespace, *types = str(resource_id["resource_type"]).split("/")
        pairs = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
        return f"/subscriptions/sub/resourceGroups/rg/providers/{namespace}/{pairs}"
    length_of = function(value, "length")
    if length_of is not None:
        inner = resolve(length_of["arg_1"], params)
        return None if inner is None else len(inner)
    max_of = function(value, "max")
    if max_of is not None:
        args = [resolve(a, params) for a in max_of.values()]
        return None if any(a is None for a in args) else max(args)
    string_of = function(value, "string")
    if string_of is not None:
        inner = resolve(string_of["value_to_convert"], params)
        if isinstance(inner, bool):
            return "True" if inner else "False"  # ARM's string(true)
        if isinstance(inner, (dict, list)):
            return json.dumps(inner)
        return None if inner is None else str(inner)
    if isinstance(value, (bool, int)):
        return value
    operator = value.get("operator") if isinstance(value, dict) else None
    if isinstance(operator, dict):
        return _resolve_operator(operator["type"], operator["operands"], params)
    if isinstance(value, dict) and not mc._is_expression(value):
        return {k: resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, params) for v in value]
    return None


def _resolve_operator(kind: str, operands: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """The few operators the app settings use; None for the rest."""
    if kind == "not":
        inner = resolve(operands["bool_value"], params)
        return None if inner is None else not inner
    first = resolve(operands.get("operand_1"), params)
    second = resolve(operands.get("operand_2"), params)
    if kind == "conditional":
        condition = resolve(operands["condition"], params)
        if condition is None:
            return None
        return resolve(operands["true_value" if condition else "false_value"], params)
    if kind == "equals":
        return None if first is None or second is None else first == second
    if kind in {
        "and",
        "or",
        "less_than",
        "greater_than",
        "greater_than_or_equals",
        "add",
    }:
        if first is None or second is None:
            return None
        return {
            "and": lambda: first and second,
            "or": lambda: first or second,
            "less_than": lambda: first < second,
            "greater_than": lambda: first > second,
            "greater_than_or_equals": lambda: first >= second,
            "add": lambda: first + second,
        }[kind]()
    if kind == "divide":
        # ARM divides integers and drops the remainder.
        return None if first is None or second is None else first // second
    if kind == "index_accessor":
        return first.get(second) if isinstance(first, dict) else None
    return None


def param_values(overrides: Mapping[str, Any]) -> dict[str, Any]:
    main = parsed(MAIN)
    values = {name: p["default"] for name, p in main["parameters"].items()}
    values.update(overrides)
    return values


def effective_schedule(values: Mapping[str, Any]) -> dict[str, Any]:
    """main.bicep's effectiveScaleSchedule: the scaleSchedule given, else one flat level."""
    chosen = parsed(MAIN)["variables"]["effectiveScaleSchedule"]["value"]["operator"]
    assert chosen["type"] == "conditional"
    assert function(chosen["operands"]["condition"], "empty") == {"item_to_test": "scaleSchedule"}
    if values["scaleSchedule"]:
        return dict(values["scaleSchedule"])
    return resolve(chosen["operands"]["true_value"], values)


# Module outputs only known at deployment, shaped as Azure reports them.
DEPLOYMENT_OUTPUTS = {
    "keyVault.outputs.vaultUri": "https://kv-lk-example.vault.azure.net/",
    "keyVault.outputs.secretName": "lookup-key-secret",
    "keyVault.outputs.secretUriWithVersion": (
        "https://kv-lk-example.vault.azure.net/secrets/lookup-key-secret/"
        "0b1f2e3d4c5b6a79881726354a5b6c7d"
    ),
    "network.outputs.appSubnetResourceId": (
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/"
        "vnet-example/subnets/app-integration"
    ),
    "network.outputs.privateEndpointSubnetResourceId": (
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/"
        "vnet-example/subnets/private-endpoints"
    ),
    "network.outputs.privateDnsZoneResourceIds": {},
}
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(SecretUri=(?P<uri>[^)]+)\)$")


def resolved_secret(uri: str) -> str:
    """What App Service hands the app for a resolved Key Vault reference: a stand-in secret
    (64 characters, as azd generates it) that differs by secret version."""
    return (uri.rsplit("/", 1)[-1] * 4)[:64]


def deployed_app_settings(overrides: Mapping[str, Any]) -> dict[str, str]:
    """App settings as deployed (Key Vault references unresolved), for main.bicep's defaults
    plus ``overrides``."""
    main = parsed(MAIN)
    values = param_values(overrides)
    # main.bicep's parameters and its variables, each resolved when the module call uses it,
    # so a fail-early check (warmDbQpsChecked) raises DeploymentFailure as ARM would stop.
    variables = Template(main, {**DEPLOYMENT_OUTPUTS, **overrides})
    schedule = effective_schedule(values)
    module_params = {}
    for name, arg in module_call(main, "modules/function-app.bicep")["params"].items():
        module_params[name] = resolve(arg, variables)
    union_args = function(
        module_call(main, "modules/function-app.bicep")["params"]["appSettings"], "union"
    )
    assert union_args is not None
    tuning = resolve(main["variables"]["tuningDefaults"]["value"], variables)
    tuning.update(values["appTuning"])
    app = module("function-app")
    app_values = {name: p["default"] for name, p in app["parameters"].items()}
    app_values.update({k: v for k, v in module_params.items() if v is not None})
    settings = resolve(app["variables"]["platformSettings"]["value"], app_values)
    settings.update(resolve(app["variables"]["rotationSettings"]["value"], app_values))
    settings.update(tuning)
    # Values only known at deployment, shaped as Azure would produce them.
    settings["REDIS_URL"] = "rediss://redis-dipguard.westeurope.redis.azure.net:10000/0"
    settings["CustomerStorage__tableServiceUri"] = "https://stdata.table.core.windows.net/"
    settings["ARM_ENDPOINT"] = "https://management.azure.com"
    settings["SCALE_SCHEDULE"] = json.dumps(schedule)
    return {k: str(v) for k, v in settings.items() if v is not None}


def app_settings_for(overrides: Mapping[str, Any]) -> dict[str, str]:
    """App settings as the app reads them, for main.bicep's defaults plus ``overrides``:
    each Key Vault reference resolved, as App Service resolves it."""
    settings = deployed_app_settings(overrides)
    for name, value in settings.items():
        reference = KEY_VAULT_REFERENCE.match(value)
        if reference is not None:
            settings[name] = resolved_secret(reference.group("uri"))
    return settings


# --- parameter files and the policy XML ---------------------------------------------------------


def bicepparam_doc(path: Path) -> tuple[str, dict[str, Any]]:
    """(the `using` target, the parsed assignments) of a .bicepparam file.

    pycep has no .bicepparam grammar, but `param x = value` is `var x = value` in Bicep, so
    the assignments are parsed as variables by the same grammar.
    """
    text = path.read_text()
    using = re.search(r"^using\s+'([^']+)'\s*$", text, re.MULTILINE)
    assert using, f"{path.name} has no using line"
    body = text[: using.start()] + text[using.end() :]
    body = re.sub(r"^param\s+", "var ", body, flags=re.MULTILINE)
    doc = mc._parser().parse(text=body)
    return using.group(1), doc.get("variables") or {}


def bicepparam_values(path: Path) -> dict[str, Any]:
    """Literal values of a .bicepparam file; readEnvironmentVariable gives an example value."""
    _, assignments = bicepparam_doc(path)

    def value(v: Any) -> Any:
        env = function(v, "readEnvironmentVariable")
        if env is not None:
            return "ops@example.com"
        if isinstance(v, dict) and not mc._is_expression(v):
            return {k: value(x) for k, x in v.items()}
        if isinstance(v, list):
            return [value(x) for x in v]
        return v

    return {name: value(a["value"]) for name, a in assignments.items()}


# What README's deploy command passes beside a .bicepparam file: the range Kudu admits, which
# main.bicep requires with private networking.
COMMAND_LINE_VALUES: dict[str, Any] = {"deployerIpRanges": ["203.0.113.7/32"]}


def deployment_values(path: Path) -> dict[str, Any]:
    """A .bicepparam file's values with what README's deploy command adds to them."""
    return {**bicepparam_values(path), **COMMAND_LINE_VALUES}


def policy() -> ET.Element:
    """The API Management policy the API is deployed with (POLICY), parsed."""
    return ET.fromstring(POLICY.read_text())
