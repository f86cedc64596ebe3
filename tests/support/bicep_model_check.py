"""Check Bicep resource bodies against the azure-mgmt-* SDK models, offline.

The Bicep CLI cannot run here, so this stands in for its type check: each resource body,
as parsed by pycep-parser, is walked key by key and compared with the REST field names of
the SDK model that describes that resource type's PUT body. A misspelt or misplaced
property, a read-only property, a literal of the wrong shape, or a missing required
property is reported with its path.

Two generations of generated models are supported:

* msrest-style models (``_attribute_map`` with flattened keys such as
  ``properties.publisherEmail``), used by apimanagement, authorization, monitor,
  applicationinsights and redisenterprise;
* TypeSpec-style models (``rest_field`` descriptors that carry the REST name and a
  visibility list), used by web, storage, loganalytics, keyvault and network.

One resource type is written differently in a template than in its SDK call:
Microsoft.Web/sites/host/functionKeys takes ``{"properties": {"name", "value"}}`` in a
template (Azure Functions' "Function access keys" template example), while the SDK's
KeyInfo is ``{"name", "value"}``; ``UnderProperties`` maps it.

Values the checker cannot see through (parameters, variables, most function calls) are
accepted as they are; only the parts written as literals are checked. Conditional
expressions, ``union``/``concat`` and ``for`` loops are looked into.
"""

from __future__ import annotations

import difflib
import enum
import functools
import importlib
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycep import BicepParser

__all__ = [
    "NO_BODY",
    "RESOURCE_MODELS",
    "Finding",
    "UnderProperties",
    "check_file",
    "check_resource",
    "iter_resources",
    "parse_bicep",
    "shape_for",
    "shape_of",
    "unquote",
]


# --- shapes -------------------------------------------------------------------------------


class Shape:
    """What a JSON value may look like."""


@dataclass(eq=False)
class ScalarShape(Shape):
    type_name: str


@dataclass(eq=False)
class AnyShape(Shape):
    pass


@dataclass(eq=False)
class ListShape(Shape):
    item: Shape


@dataclass(eq=False)
class DictShape(Shape):
    """A free-form map (tags, app-settings dictionaries): any key, one value shape."""

    value: Shape


@dataclass(eq=False)
class Field:
    shape: Shape
    readonly: bool = False
    required: bool = False


@dataclass(eq=False)
class ObjectShape(Shape):
    name: str
    fields: dict[str, Field] = field(default_factory=dict)


ANY = AnyShape()


def _scalar(name: str) -> ScalarShape:
    return ScalarShape(name)


# --- msrest-style models -------------------------------------------------------------------


def _is_msrest(cls: type) -> bool:
    return isinstance(getattr(cls, "_attribute_map", None), dict)


def _split_key(key: str) -> list[str]:
    """Split a flattened msrest key on unescaped dots: 'a.b\\.c' -> ['a', 'b.c']."""
    parts: list[str] = []
    current = ""
    i = 0
    while i < len(key):
        ch = key[i]
        if ch == "\\" and i + 1 < len(key) and key[i + 1] == ".":
            current += "."
            i += 2
            continue
        if ch == ".":
            parts.append(current)
            current = ""
        else:
            current += ch
        i += 1
    parts.append(current)
    return parts


def _msrest_type(type_str: str, models: types.ModuleType) -> Shape:
    if type_str.startswith("[") and type_str.endswith("]"):
        return ListShape(_msrest_type(type_str[1:-1], models))
    if type_str.startswith("{") and type_str.endswith("}"):
        return DictShape(_msrest_type(type_str[1:-1], models))
    if type_str in {"object"}:
        return ANY
    model = getattr(models, type_str, None)
    if isinstance(model, type) and _is_msrest(model):
        return shape_of(model)
    return _scalar(type_str)


def _msrest_subclasses(cls: type, models: types.ModuleType) -> list[type]:
    """The model and every polymorphic subtype named in its _subtype_map."""
    found = [cls]
    subtype_map: Mapping[str, Mapping[str, str]] = getattr(cls, "_subtype_map", None) or {}
    for mapping in subtype_map.values():
        for sub_name in mapping.values():
            sub = getattr(models, sub_name, None)
            if isinstance(sub, type) and sub not in found:
                found.extend(s for s in _msrest_subclasses(sub, models) if s not in found)
    return found


def _fill_msrest(shape: ObjectShape, cls: type) -> None:
    models = sys.modules[cls.__module__]
    for klass in _msrest_subclasses(cls, models):
        validation: Mapping[str, Mapping[str, Any]] = getattr(klass, "_validation", {}) or {}
        for attr, spec in klass._attribute_map.items():  # type: ignore[attr-defined]
            key = spec["key"]
            if key == "":  # additional_properties catch-all
                continue
            path = _split_key(key)
            rules = validation.get(attr, {})
            node = shape
            for part in path[:-1]:
                existing = node.fields.get(part)
                if existing is None or not isinstance(existing.shape, ObjectShape):
                    existing = Field(ObjectShape(f"{node.name}.{part}"))
                    node.fields[part] = existing
                node = existing.shape  # type: ignore[assignment]
            leaf = path[-1]
            if leaf in node.fields and klass is not cls:
                continue  # the base model's definition wins
            node.fields[leaf] = Field(
                _msrest_type(spec["type"], models),
                readonly=bool(rules.get("readonly")),
                required=bool(rules.get("required")) and not rules.get("constant"),
            )


# --- TypeSpec-style models -----------------------------------------------------------------


def _is_typespec(cls: type) -> bool:
    return any(
        hasattr(value, "_rest_name_input")
        for klass in cls.__mro__
        for value in vars(klass).values()
    )


def _typespec_fields(cls: type) -> Iterator[tuple[str, Any]]:
    seen: set[str] = set()
    for klass in cls.__mro__:
        for attr, value in vars(klass).items():
            if attr.startswith("_") or attr in seen or not hasattr(value, "_rest_name_input"):
                continue
            seen.add(attr)
            yield attr, value


def _typespec_hints(cls: type) -> dict[str, Any]:
    module = sys.modules[cls.__module__]
    namespace = dict(vars(module))
    # Annotations are written as "_models.Foo"; the package re-exports every model.
    namespace["_models"] = importlib.import_module(cls.__module__.rsplit(".", 1)[0])
    return typing.get_type_hints(cls, globalns=namespace)


def _typespec_type(annotation: Any) -> tuple[Shape, bool]:
    """Shape for an annotation, and whether None was allowed (the field is optional)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        optional = type(None) in args
        rest = [a for a in args if a is not type(None)]
        shapes = [_typespec_type(a)[0] for a in rest]
        objects = [s for s in shapes if not isinstance(s, ScalarShape)]
        if len(objects) == 1:
            return objects[0], optional
        if objects:
            return ANY, optional
        names = "|".join(s.type_name for s in shapes if isinstance(s, ScalarShape))
        return _scalar(names), optional
    if origin is list:
        return ListShape(_typespec_type(args[0])[0]), False
    if origin is dict:
        return DictShape(_typespec_type(args[1])[0]), False
    if origin is typing.Literal:
        return _scalar("literal"), False
    if annotation is Any:
        return ANY, False
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _scalar(annotation.__name__), False
        if _is_typespec(annotation) and annotation.__module__.endswith("_models"):
            return shape_of(annotation), False
        return _scalar(annotation.__name__), False
    return ANY, False


def _fill_typespec(shape: ObjectShape, cls: type) -> None:
    hints = _typespec_hints(cls)
    for attr, rest in _typespec_fields(cls):
        rest_name = rest._rest_name_input or attr
        visibility = rest._visibility or []
        sub_shape, optional = _typespec_type(hints.get(attr, Any))
        readonly = bool(visibility) and set(visibility) <= {"read"}
        shape.fields[rest_name] = Field(
            sub_shape, readonly=readonly, required=not optional and not readonly
        )


# --- public: shapes and resource models ------------------------------------------------------


_SHAPES: dict[type, ObjectShape] = {}


def shape_of(cls: type) -> ObjectShape:
    """The JSON shape of a model class. Cached; registered before it is filled, so a model
    that refers to itself (directly or through others) gets the same object back."""
    cached = _SHAPES.get(cls)
    if cached is not None:
        return cached
    shape = ObjectShape(cls.__name__)
    _SHAPES[cls] = shape
    if _is_msrest(cls):
        _fill_msrest(shape, cls)
    elif _is_typespec(cls):
        _fill_typespec(shape, cls)
    else:
        del _SHAPES[cls]
        raise TypeError(f"{cls!r} is not a generated Azure SDK model")
    return shape


def _model(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name)


_WEB = "azure.mgmt.web.models"
_STORAGE = "azure.mgmt.storage.models"
_REDIS = "azure.mgmt.redisenterprise.models"
_APIM = "azure.mgmt.apimanagement.models"
_AUTH = "azure.mgmt.authorization.v2022_04_01.models"
_INSIGHTS = "azure.mgmt.applicationinsights.v2020_02_02.models"
_MONITOR = "azure.mgmt.monitor.models"
_LOGS = "azure.mgmt.loganalytics.models"
_KEYVAULT = "azure.mgmt.keyvault.models"
_NETWORK = "azure.mgmt.network.models"

# Resource types whose PUT carries no body (link resources): only the Bicep keywords apply.
NO_BODY = ("", "")


@dataclass(frozen=True)
class UnderProperties:
    """A template body that nests the SDK model under ``properties``."""

    module: str
    model: str


# A user-assigned identity's PUT body: location and tags (properties.isolationScope aside, all
# its properties are read-only: principalId, clientId, tenantId). No azure-mgmt-msi here, so
# the shape is written out from the Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30
# type in tests/bicep/types.
USER_ASSIGNED_IDENTITY = ObjectShape(
    "Identity",
    {
        "location": Field(_scalar("str"), required=True),
        "tags": Field(DictShape(_scalar("str"))),
        "properties": Field(ObjectShape("UserAssignedIdentityProperties", {})),
    },
)

# Private DNS zones and their virtual network links: no azure-mgmt-privatedns here, so the PUT
# bodies are written out from the Microsoft.Network/privateDnsZones(/virtualNetworkLinks)
# @2024-06-01 types in tests/bicep/types (every property of a zone is read-only).
PRIVATE_DNS_ZONE = ObjectShape(
    "PrivateZone",
    {
        "location": Field(_scalar("str")),
        "tags": Field(DictShape(_scalar("str"))),
        "etag": Field(_scalar("str")),
        "properties": Field(ObjectShape("PrivateZoneProperties", {})),
    },
)
PRIVATE_DNS_ZONE_LINK = ObjectShape(
    "VirtualNetworkLink",
    {
        "location": Field(_scalar("str")),
        "tags": Field(DictShape(_scalar("str"))),
        "etag": Field(_scalar("str")),
        "properties": Field(
            ObjectShape(
                "VirtualNetworkLinkProperties",
                {
                    "virtualNetwork": Field(
                        ObjectShape("SubResource", {"id": Field(_scalar("str"))})
                    ),
                    "registrationEnabled": Field(_scalar("bool")),
                    "resolutionPolicy": Field(_scalar("str")),
                },
            )
        ),
    },
)
# Diagnostic settings: azure-mgmt-monitor 7.0.0 has no model for them, so the PUT body is
# written out from the Microsoft.Insights/diagnosticSettings@2021-05-01-preview type.
_RETENTION_POLICY = ObjectShape(
    "RetentionPolicy",
    {
        "enabled": Field(_scalar("bool"), required=True),
        "days": Field(_scalar("int"), required=True),
    },
)
DIAGNOSTIC_SETTING = ObjectShape(
    "DiagnosticSettingsResource",
    {
        "properties": Field(
            ObjectShape(
                "DiagnosticSettings",
                {
                    "storageAccountId": Field(_scalar("str")),
                    "serviceBusRuleId": Field(_scalar("str")),
                    "eventHubAuthorizationRuleId": Field(_scalar("str")),
                    "eventHubName": Field(_scalar("str")),
                    "metrics": Field(
                        ListShape(
                            ObjectShape(
                                "MetricSettings",
                                {
                                    "timeGrain": Field(_scalar("str")),
                                    "category": Field(_scalar("str")),
                                    "enabled": Field(_scalar("bool"), required=True),
                                    "retentionPolicy": Field(_RETENTION_POLICY),
                                },
                            )
                        )
                    ),
                    "logs": Field(
                        ListShape(
                            ObjectShape(
                                "LogSettings",
                                {
                                    "category": Field(_scalar("str")),
                                    "categoryGroup": Field(_scalar("str")),
                                    "enabled": Field(_scalar("bool"), required=True),
                                    "retentionPolicy": Field(_RETENTION_POLICY),
                                },
                            )
                        )
                    ),
                    "workspaceId": Field(_scalar("str")),
                    "marketplacePartnerId": Field(_scalar("str")),
                    "logAnalyticsDestinationType": Field(_scalar("str")),
                },
            )
        ),
    },
)

# Resource type (lower case) -> (SDK module, model of the PUT body). Where the model
# depends on the resource name (sites/config), the value maps names to models.
RESOURCE_MODELS: dict[
    str, tuple[str, str] | UnderProperties | ObjectShape | dict[str, tuple[str, str]]
] = {
    "microsoft.web/serverfarms": (_WEB, "AppServicePlan"),
    "microsoft.web/sites": (_WEB, "Site"),
    "microsoft.web/sites/config": {
        "web": (_WEB, "SiteConfigResource"),
        "appsettings": (_WEB, "StringDictionary"),
        "logs": (_WEB, "SiteLogsConfig"),
        "authsettingsv2": (_WEB, "SiteAuthSettingsV2"),
    },
    "microsoft.web/sites/basicpublishingcredentialspolicies": (
        _WEB,
        "CsmPublishingCredentialsPoliciesEntity",
    ),
    "microsoft.web/sites/host/functionkeys": UnderProperties(_WEB, "KeyInfo"),
    "microsoft.storage/storageaccounts": (_STORAGE, "StorageAccountCreateParameters"),
    "microsoft.storage/storageaccounts/blobservices": (_STORAGE, "BlobServiceProperties"),
    "microsoft.storage/storageaccounts/blobservices/containers": (_STORAGE, "BlobContainer"),
    "microsoft.storage/storageaccounts/fileservices": (_STORAGE, "FileServiceProperties"),
    "microsoft.storage/storageaccounts/fileservices/shares": (_STORAGE, "FileShare"),
    "microsoft.storage/storageaccounts/tableservices": (_STORAGE, "TableServiceProperties"),
    "microsoft.storage/storageaccounts/tableservices/tables": (_STORAGE, "Table"),
    "microsoft.cache/redisenterprise": (_REDIS, "Cluster"),
    "microsoft.cache/redisenterprise/databases": (_REDIS, "Database"),
    "microsoft.cache/redisenterprise/databases/accesspolicyassignments": (
        _REDIS,
        "AccessPolicyAssignment",
    ),
    "microsoft.apimanagement/service": (_APIM, "ApiManagementServiceResource"),
    "microsoft.apimanagement/service/apis": (_APIM, "ApiCreateOrUpdateParameter"),
    "microsoft.apimanagement/service/apis/policies": (_APIM, "PolicyContract"),
    "microsoft.apimanagement/service/apis/operations/policies": (_APIM, "PolicyContract"),
    "microsoft.apimanagement/service/policies": (_APIM, "PolicyContract"),
    "microsoft.apimanagement/service/products/policies": (_APIM, "PolicyContract"),
    "microsoft.apimanagement/service/namedvalues": (_APIM, "NamedValueCreateContract"),
    "microsoft.apimanagement/service/backends": (_APIM, "BackendContract"),
    "microsoft.apimanagement/service/products": (_APIM, "ProductContract"),
    "microsoft.apimanagement/service/products/apilinks": (_APIM, "ProductApiLinkContract"),
    # ProductApiOperations.create_or_update takes no body.
    "microsoft.apimanagement/service/products/apis": NO_BODY,
    "microsoft.apimanagement/service/subscriptions": (_APIM, "SubscriptionCreateParameters"),
    "microsoft.apimanagement/service/loggers": (_APIM, "LoggerContract"),
    "microsoft.apimanagement/service/diagnostics": (_APIM, "DiagnosticContract"),
    "microsoft.apimanagement/service/apis/diagnostics": (_APIM, "DiagnosticContract"),
    "microsoft.authorization/roleassignments": (_AUTH, "RoleAssignmentCreateParameters"),
    "microsoft.insights/components": (_INSIGHTS, "ApplicationInsightsComponent"),
    # The workbook's own API version (2023-06-01); _INSIGHTS is the components' version.
    "microsoft.insights/workbooks": (
        "azure.mgmt.applicationinsights.v2023_06_01.models",
        "Workbook",
    ),
    "microsoft.insights/scheduledqueryrules": (_MONITOR, "ScheduledQueryRuleResource"),
    "microsoft.insights/actiongroups": (_MONITOR, "ActionGroupResource"),
    "microsoft.operationalinsights/workspaces": (_LOGS, "Workspace"),
    "microsoft.keyvault/vaults": (_KEYVAULT, "VaultCreateOrUpdateParameters"),
    "microsoft.keyvault/vaults/secrets": (_KEYVAULT, "SecretCreateOrUpdateParameters"),
    "microsoft.managedidentity/userassignedidentities": USER_ASSIGNED_IDENTITY,
    "microsoft.network/virtualnetworks": (_NETWORK, "VirtualNetwork"),
    "microsoft.network/networksecuritygroups": (_NETWORK, "NetworkSecurityGroup"),
    "microsoft.network/privateendpoints": (_NETWORK, "PrivateEndpoint"),
    "microsoft.network/privateendpoints/privatednszonegroups": (_NETWORK, "PrivateDnsZoneGroup"),
    "microsoft.network/privatednszones": PRIVATE_DNS_ZONE,
    "microsoft.network/privatednszones/virtualnetworklinks": PRIVATE_DNS_ZONE_LINK,
    "microsoft.insights/diagnosticsettings": DIAGNOSTIC_SETTING,
}

# Keys every Bicep resource body may carry whatever its type.
BICEP_KEYWORDS = frozenset({"name", "parent", "scope", "dependsOn"})
# Top-level model fields that are read-only in the model but written in Bicep.
_TOP_LEVEL_ALWAYS_ALLOWED = frozenset({"name", "location", "tags"})


_EMPTY = ObjectShape("(no request body)")


def shape_for(resource_type: str, resource_name: Any) -> ObjectShape | None:
    """The shape of a resource type's PUT body, or None when no model is mapped."""
    entry = RESOURCE_MODELS.get(resource_type.lower())
    if isinstance(entry, dict):
        entry = entry.get(str(resource_name).lower())
    if entry is None:
        return None
    if entry == NO_BODY:
        return _EMPTY
    if isinstance(entry, ObjectShape):
        return entry
    if isinstance(entry, UnderProperties):
        return _under_properties(entry)
    return shape_of(_model(*entry))


@functools.cache
def _under_properties(entry: UnderProperties) -> ObjectShape:
    inner = shape_of(_model(entry.module, entry.model))
    return ObjectShape(f"{entry.model} template body", {"properties": Field(inner, required=True)})


# --- walking pycep output ------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    file: str
    resource: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: resource {self.resource}: {self.path}: {self.message}"


def unquote(key: str) -> str:
    """pycep keeps the quotes of a quoted object key ('x-functions-key'); drop them."""
    if len(key) >= 2 and key[0] == key[-1] == "'":
        return key[1:-1]
    return key


def _is_expression(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((key, inner),) = value.items()
    return key in {"operator", "function"} and isinstance(inner, dict) and "type" in inner


def _is_loop(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"loop_type", "condition", "config"}


def _branches(value: Any) -> list[Any] | None:
    """Literal alternatives inside an expression, or None when it is opaque."""
    ((kind, inner),) = value.items()
    if kind == "operator":
        operands = inner.get("operands", {})
        if inner["type"] == "conditional":
            return [operands.get("true_value"), operands.get("false_value")]
        if inner["type"] == "coalesce":
            return list(operands.values())
        return None
    if inner["type"] in {"union", "concat"}:
        return list(inner.get("parameters", {}).values())
    return None


def _suggest(key: str, known: list[str]) -> str:
    lower = {k.lower(): k for k in known}
    if key.lower() in lower:
        return f" (did you mean '{lower[key.lower()]}'? property names are case-sensitive here)"
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_value(value: Any, shape: Shape, path: str, out: list[tuple[str, str]]) -> None:
    if value is None or isinstance(shape, AnyShape):
        return
    if _is_expression(value):
        for branch in _branches(value) or []:
            _check_value(branch, shape, path, out)
        return
    if _is_loop(value):
        if isinstance(shape, ListShape):
            _check_value(value["config"], shape.item, f"{path}[]", out)
        elif isinstance(shape, (ObjectShape, ScalarShape)):
            out.append((path, f"a for-loop builds an array, but {_describe(shape)} is expected"))
        return
    if isinstance(value, str):
        return  # a literal string, or a parameter/variable reference: nothing to check
    if isinstance(value, list):
        if isinstance(shape, ListShape):
            for i, item in enumerate(value):
                _check_value(item, shape.item, f"{path}[{i}]", out)
        else:
            out.append((path, f"an array is given, but {_describe(shape)} is expected"))
        return
    if isinstance(value, dict):
        if isinstance(shape, DictShape):
            for key, item in value.items():
                _check_value(item, shape.value, f"{path}.{unquote(key)}", out)
        elif isinstance(shape, ObjectShape):
            _check_object(value, shape, path, out)
        else:
            out.append((path, f"an object is given, but {_describe(shape)} is expected"))
        return
    # bool / int literal
    if isinstance(shape, (ObjectShape, ListShape, DictShape)):
        out.append((path, f"a {type(value).__name__} is given, but {_describe(shape)} is expected"))


def _describe(shape: Shape) -> str:
    if isinstance(shape, ObjectShape):
        return f"an object ({shape.name})"
    if isinstance(shape, ListShape):
        return "an array"
    if isinstance(shape, DictShape):
        return "a map"
    if isinstance(shape, ScalarShape):
        return f"a scalar ({shape.type_name})"
    return "anything"


def _check_object(
    value: Mapping[str, Any],
    shape: ObjectShape,
    path: str,
    out: list[tuple[str, str]],
    *,
    skip: frozenset[str] = frozenset(),
    allow_readonly: frozenset[str] = frozenset(),
) -> None:
    known = sorted(shape.fields)
    present = {unquote(key) for key in value}
    for raw_key, item in value.items():
        key = unquote(raw_key)
        if key in skip:
            continue
        where = f"{path}.{key}" if path else key
        fld = shape.fields.get(key)
        if fld is None:
            out.append((where, f"unknown property for {shape.name}{_suggest(key, known)}"))
            continue
        if fld.readonly and key not in allow_readonly:
            out.append((where, f"read-only property of {shape.name}; it cannot be set"))
            continue
        _check_value(item, fld.shape, where, out)
    for key, fld in shape.fields.items():
        if fld.required and key not in present and key not in allow_readonly:
            where = f"{path}.{key}" if path else key
            out.append((where, f"required property of {shape.name} is missing"))


# Properties Azure documents and accepts that its published API definitions (the REST specs
# behind the SDK models and bicep-types-az) do not list yet. Bicep warns about them (BCP037),
# and the templates silence that warning on the line above (`#disable-next-line BCP037`), so
# both offline checks leave them out too, each with the page that documents it.
DOCUMENTED_UNPUBLISHED: dict[tuple[str, str], str] = {
    ("microsoft.web/sites", "properties.functionsRuntimeAdminIsolationEnabled"): (
        '"Securing Azure Functions", ms.date 01/20/2026, "Disable administrative endpoints": '
        "set the functionsRuntimeAdminIsolationEnabled site property"
    ),
}


def documented_unpublished(resource_type: str, path: str) -> str | None:
    """The page documenting a property its API definitions do not list yet, else None."""
    return DOCUMENTED_UNPUBLISHED.get((resource_type.split("@")[0].lower(), path))


def _unwrap_resource_body(config: Any) -> Any:
    """Strip `if (...)` conditions and `for` loops around a resource body."""
    while isinstance(config, dict):
        if _is_loop(config):
            config = config["config"]
        elif set(config) == {"condition", "config"}:
            config = config["config"]
        else:
            break
    return config


def check_resource(resource_type: str, body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Findings (path, message) for one resource body; raises KeyError for unmapped types."""
    body = _unwrap_resource_body(body)
    shape = shape_for(resource_type, body.get("name"))
    if shape is None:
        raise KeyError(f"no SDK model is mapped for {resource_type} named {body.get('name')!r}")
    out: list[tuple[str, str]] = []
    _check_object(
        body,
        shape,
        "",
        out,
        skip=BICEP_KEYWORDS,
        allow_readonly=_TOP_LEVEL_ALWAYS_ALLOWED,
    )
    out = [
        (path, message)
        for path, message in out
        if documented_unpublished(resource_type, path) is None
    ]
    return out


# --- files ---------------------------------------------------------------------------------


@functools.cache
def _parser() -> BicepParser:
    return BicepParser()


def parse_bicep(path: Path) -> dict[str, Any]:
    """pycep's JSON for a .bicep file; raises on a syntax error."""
    # pycep types its output as a TypedDict; the checks here walk it as plain JSON.
    return typing.cast(dict[str, Any], _parser().parse(file_path=path))


@dataclass(frozen=True)
class Resource:
    file: Path
    symbol: str
    type: str
    api_version: str
    existing: bool
    body: dict[str, Any]


def iter_resources(path: Path, parsed: Mapping[str, Any] | None = None) -> Iterator[Resource]:
    parsed = parse_bicep(path) if parsed is None else parsed
    for symbol, res in (parsed.get("resources") or {}).items():
        yield Resource(
            file=path,
            symbol=symbol,
            type=res["type"],
            api_version=res["api_version"],
            existing=bool(res.get("existing")),
            body=_unwrap_resource_body(res["config"]),
        )


# Resources of a Bicep extension rather than of ARM: Microsoft Graph's are not in any
# Azure management SDK. tests/support/bicep_types.py checks them against the Graph extension's
# published types (microsoftgraph/msgraph-bicep-types, stored by scripts/refresh-bicep-types).
NOT_ARM = ("microsoft.graph/",)


def is_arm(resource_type: str) -> bool:
    return not resource_type.lower().startswith(NOT_ARM)


def check_file(path: Path, parsed: Mapping[str, Any] | None = None) -> list[Finding]:
    """Every finding for every declared (not `existing`) ARM resource in one file."""
    findings: list[Finding] = []
    for res in iter_resources(path, parsed):
        if res.existing or not is_arm(res.type):
            continue
        try:
            problems = check_resource(res.type, res.body)
        except KeyError as exc:
            findings.append(Finding(path.name, res.symbol, "", str(exc.args[0])))
            continue
        findings.extend(Finding(path.name, res.symbol, p, m) for p, m in problems)
    return findings
