"""Check Bicep resource bodies against Azure's published Bicep types, offline.

The Bicep CLI cannot run here, so this stands in for the type checks `bicep build` runs on
resource bodies. The types are Azure/bicep-types-az's, generated from the REST API specs, and
for the Microsoft.Graph resources those of the Graph extension version bicep/bicepconfig.json
names (microsoftgraph/msgraph-bicep-types); scripts/refresh-bicep-types copies the part the
templates use into tests/bicep/types/ (index.json says where each "Type@version" is,
source.json from which commits).

Each declared resource body, as parsed by pycep-parser, is walked against its type:

* property names, matched without regard to case as ARM does; a name in the wrong case is
  reported with the published spelling, an unknown one with the closest known name;
* value kinds (string, int, bool, array, object), string literal enums, string length and
  pattern, integer bounds, array item types and length, discriminated objects (the
  discriminator picks the variant);
* property flags: ReadOnly (may not be set), Required (must be set in an object literal),
  DeployTimeConstant (may not depend on values known only during the deployment).

Values written as expressions are checked as far as their type is known here:

* a parameter: its declared type and decorators must fit inside the property's type
  (``@maxValue(20)`` against a published maximum of 10 is a finding); a bound the property
  has and the parameter does not declare is listed as skipped;
* a variable: its value is checked in place; conditional branches, ``??`` operands, the
  objects of ``union(...)`` and the arrays of ``concat(...)`` each; ``for`` loops by their
  item;
* a function call or operator: by the kind of value it returns, where that is fixed;
* anything else (references to resources and module outputs, loop variables) is skipped.

Every skipped value is listed with its path and reason. A resource type without published
types (Bicep's BCP081) is listed with the reason; `existing` resources are not checked.

Module calls are checked too: each argument against the module parameter's declared type,
and, where the module passes that parameter straight to a property, against the property's
type, so a bound in main.bicep wider than the property's is found at the call.

``python -m tests.support.bicep_types`` prints the report.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycep.models import BicepElement

from tests.support import bicep_model_check as mc
from tests.support.bicep import BICEP, BICEP_FILES, ROOT

TYPES_DIR = ROOT / "tests" / "bicep" / "types"

# ObjectTypePropertyFlags, as src/bicep-types/src/types.ts of Azure/bicep-types defines them
# (at f125d7a44e3d0e4ba4095552bc90123acdace808, the bicep-types submodule of the stored
# bicep-types-az commit). Identifier (1 << 4) marks a resource's name; nothing to check.
REQUIRED = 1 << 0
READ_ONLY = 1 << 1
WRITE_ONLY = 1 << 2
DEPLOY_TIME_CONSTANT = 1 << 3

# Keys of a resource body that Bicep itself defines, not the resource type.
RESOURCE_KEYWORDS = frozenset({"parent", "scope", "dependsOn"})

# What a resource's or module's properties give before the deployment runs (Bicep BCP120).
_DEPLOY_TIME_RESOURCE_PROPERTIES = frozenset({"id", "name", "type", "apiVersion"})
_DEPLOY_TIME_MODULE_PROPERTIES = frozenset({"name"})

# The kind of value a function returns (pycep's snake_case names), where it is fixed.
_FUNCTION_KINDS = {
    "string": "string",
    "to_lower": "string",
    "to_upper": "string",
    "trim": "string",
    "substring": "string",
    "replace": "string",
    "format": "string",
    "guid": "string",
    "new_guid": "string",
    "unique_string": "string",
    "base64": "string",
    "base64_to_string": "string",
    "uri": "string",
    "uri_component": "string",
    "uri_component_to_string": "string",
    "data_uri": "string",
    "data_uri_to_string": "string",
    "pad_left": "string",
    "join": "string",
    "utc_now": "string",
    "date_time_add": "string",
    "date_time_from_epoch": "string",
    "resource_id": "string",
    "subscription_resource_id": "string",
    "tenant_resource_id": "string",
    "extension_resource_id": "string",
    "management_group_resource_id": "string",
    "load_text_content": "string",
    "load_file_as_base64": "string",
    "int": "int",
    "length": "int",
    "index_of": "int",
    "last_index_of": "int",
    "date_time_to_epoch": "int",
    "bool": "bool",
    "empty": "bool",
    "contains": "bool",
    "starts_with": "bool",
    "ends_with": "bool",
    "split": "array",
    "array": "array",
    "range": "array",
    "flatten": "array",
    "pick_zones": "array",
    "resource_group": "object",
    "subscription": "object",
    "tenant": "object",
    "deployment": "object",
    "environment": "object",
    "management_group": "object",
}
_OPERATOR_KINDS = {
    "equals": "bool",
    "not_equals": "bool",
    "equals_case_insensitive": "bool",
    "not_equals_case_insensitive": "bool",
    "greater_than": "bool",
    "greater_than_or_equals": "bool",
    "less_than": "bool",
    "less_than_or_equals": "bool",
    "and": "bool",
    "or": "bool",
    "not": "bool",
    "add": "int",
    "substract": "int",
    "multiply": "int",
    "divide": "int",
    "modulo": "int",
    "minus": "int",
}

_KIND_ARTICLE = {
    "string": "a string",
    "int": "an int",
    "bool": "a bool",
    "array": "an array",
    "object": "an object",
}


# --- the stored types ---------------------------------------------------------------------------


class Ty:
    """One type entry, with the table its "#/N" references point into.

    ``source`` says whose type it is (``Microsoft.Web/sites@2024-11-01``, or a module's
    parameter); messages about bounds name it.
    """

    __slots__ = ("entry", "source", "table")

    def __init__(
        self, table: Sequence[Mapping[str, Any]], entry: Mapping[str, Any], source: str
    ) -> None:
        self.table = table
        self.entry = entry
        self.source = source

    @property
    def kind(self) -> str:
        return str(self.entry["$type"])

    def at(self, ref: Mapping[str, Any]) -> Ty:
        """The type a reference names; an inline entry (made from a parameter) is itself."""
        target = ref.get("$ref")
        if isinstance(target, str):
            return Ty(self.table, self.table[int(target.removeprefix("#/"))], self.source)
        return Ty(self.table, ref, self.source)

    def elements(self) -> list[Ty]:
        """A union's members, nested unions flattened."""
        out: list[Ty] = []
        for ref in self.entry["elements"]:
            member = self.at(ref)
            out.extend(member.elements() if member.kind == "UnionType" else [member])
        return out


class TypeStore:
    """tests/bicep/types/: index.json, source.json and the types.json files they name."""

    def __init__(
        self,
        index: Mapping[str, Any],
        tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        directory: Path | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> None:
        self._resources = {name.lower(): ref["$ref"] for name, ref in index["resources"].items()}
        self._names = {name.lower(): name for name in index["resources"]}
        self.unpublished: dict[str, str] = dict(index.get("unpublished", {}))
        self._tables: dict[str, Sequence[Mapping[str, Any]]] = dict(tables or {})
        self._directory = directory
        self.source: Mapping[str, Any] = source or {}

    @classmethod
    def load(cls, directory: Path = TYPES_DIR) -> TypeStore:
        index = json.loads((directory / "index.json").read_text())
        source = json.loads((directory / "source.json").read_text())
        return cls(index, directory=directory, source=source)

    def _table(self, relpath: str) -> Sequence[Mapping[str, Any]]:
        if relpath not in self._tables:
            assert self._directory is not None, f"no table {relpath}"
            self._tables[relpath] = json.loads((self._directory / relpath).read_text())
        return self._tables[relpath]

    def covered(self) -> set[str]:
        """Every "Type@version" (lower case) the store has types or a BCP081 reason for."""
        return set(self._resources) | {name.lower() for name in self.unpublished}

    def resource(self, rtype: str, version: str) -> Ty | None:
        """The ResourceType entry of a type at an API version, or None."""
        key = f"{rtype}@{version}".lower()
        ref = self._resources.get(key)
        if ref is None:
            return None
        relpath, index = ref.split("#/")
        table = self._table(relpath)
        return Ty(table, table[int(index)], self._names[key])

    def unpublished_reason(self, rtype: str, version: str) -> str | None:
        key = f"{rtype}@{version}".lower()
        return next((r for n, r in self.unpublished.items() if n.lower() == key), None)


def used_resource_types(files: Iterable[Path] = BICEP_FILES) -> set[tuple[str, str]]:
    """(type, API version) of every resource the templates declare or reference as existing."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    for path in files:
        for res in mc.iter_resources(path):
            seen.setdefault(
                (res.type.lower(), res.api_version.lower()), (res.type, res.api_version)
            )
    return set(seen.values())


# --- parameters as types ------------------------------------------------------------------------


def _decorators(param: Mapping[str, Any]) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in param.get("decorators") or []}


def declared_type(param: Mapping[str, Any], source: str) -> Ty | None:
    """A parameter's declared type and decorators as a type entry; None for other types
    (user-defined types, typed arrays), which are not checked here."""
    decorators = _decorators(param)
    base = param.get("type")
    # Which decorator gives which bound of the bicep-types entry, by the parameter's type.
    bounds = {
        "string": ("StringType", {"min_length": "minLength", "max_length": "maxLength"}),
        "int": ("IntegerType", {"min_value": "minValue", "max_value": "maxValue"}),
        "array": ("ArrayType", {"min_length": "minLength", "max_length": "maxLength"}),
    }
    entry: dict[str, Any]
    if base in bounds:
        kind, fields = bounds[base]
        entry = {"$type": kind}
        if kind == "ArrayType":
            entry["itemType"] = {"$type": "AnyType"}
        entry.update({key: decorators[d] for d, key in fields.items() if d in decorators})
    elif base == "bool":
        entry = {"$type": "BooleanType"}
    elif base == "object":
        entry = {
            "$type": "ObjectType",
            "name": source,
            "additionalProperties": {"$type": "AnyType"},
        }
    else:
        return None
    if isinstance(decorators.get("allowed"), list):
        # Not a bicep-types field: the values @allowed admits, checked one by one.
        entry["allowed"] = decorators["allowed"]
    return Ty([], entry, source)


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skip:
    path: str
    reason: str


@dataclass(frozen=True)
class Sink:
    """Where a parameter's value arrives, and the type there. ``guarded``: only under a
    condition on the parameter itself (``empty(p) ? ... : p``), which this check does not
    follow, so a caller's value is held to the parameter's declaration only."""

    param: str
    where: str
    type: Ty
    guarded: bool


@dataclass
class Outcome:
    """What checking one value against one type found."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    literals: int = 0  # literal values compared with their type
    computed: int = 0  # computed values whose type is known and fits (params, calls)
    skipped: list[Skip] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)  # where a module's parameters go

    def dedupe(self) -> None:
        """One entry per path and reason, whichever way (via) the value was reached."""
        seen: set[tuple[str, str]] = set()
        skipped = []
        for skip in self.skipped:
            key = (skip.path, skip.reason.split(" (via ")[0])
            if key not in seen:
                seen.add(key)
                skipped.append(skip)
        self.skipped = skipped
        self.problems = list(dict.fromkeys(self.problems))

    def merge(self, other: Outcome) -> None:
        self.problems.extend(other.problems)
        self.literals += other.literals
        self.computed += other.computed
        self.skipped.extend(other.skipped)
        self.sinks.extend(other.sinks)


@dataclass(frozen=True)
class Finding:
    file: str
    kind: str  # "resource" or "module"
    symbol: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.kind} {self.symbol}: {self.path}: {self.message}"


@dataclass
class Checked:
    """One resource declaration or module call and what its check found."""

    file: str
    symbol: str
    what: str  # "Type@version", or "module <path>"
    status: str  # "checked", "existing", "unpublished"
    reason: str = ""
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def findings(self) -> list[Finding]:
        kind = "module" if self.what.startswith("module ") else "resource"
        return [Finding(self.file, kind, self.symbol, p, m) for p, m in self.outcome.problems]


@dataclass
class FileResult:
    path: Path
    label: str
    doc: Mapping[str, Any]
    resources: list[Checked] = field(default_factory=list)
    modules: list[Checked] = field(default_factory=list)

    def sinks(self) -> dict[str, list[Sink]]:
        """Where each parameter goes, with paths that name the resource or module call."""
        out: dict[str, list[Sink]] = {}
        for checked in [*self.resources, *self.modules]:
            for sink in checked.outcome.sinks:
                where = f"{checked.symbol}.{sink.where}"
                out.setdefault(sink.param, []).append(
                    Sink(sink.param, where, sink.type, sink.guarded)
                )
        return out


# --- the check ----------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _literal_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _accepts(ty: Ty, kind: str) -> bool:
    """Whether a value of this kind can be of this type at all."""
    match ty.kind:
        case "AnyType":
            return True
        case "StringType" | "StringLiteralType":
            return kind == "string"
        case "IntegerType":
            return kind == "int"
        case "BooleanType":
            return kind == "bool"
        case "ArrayType":
            return kind == "array"
        case "ObjectType" | "DiscriminatedObjectType":
            return kind == "object"
        case "UnionType":
            return any(_accepts(e, kind) for e in ty.elements())
    return False


def _constrained(ty: Ty, kind: str) -> bool:
    """Whether the type asks more of a value of this kind than its kind."""
    e = ty.entry
    match ty.kind:
        case "StringType":
            return any(k in e for k in ("minLength", "maxLength", "pattern", "allowed"))
        case "IntegerType":
            return any(k in e for k in ("minValue", "maxValue", "allowed"))
        case "StringLiteralType" | "ArrayType" | "ObjectType" | "DiscriminatedObjectType":
            return True
        case "UnionType":
            members = [m for m in ty.elements() if _accepts(m, kind)]
            return all(_constrained(m, kind) for m in members)
    return False


def _describe(ty: Ty, limit: int = 8) -> str:
    e = ty.entry
    match ty.kind:
        case "StringLiteralType":
            return f"'{e['value']}'"
        case "StringType":
            return "a string"
        case "IntegerType":
            return "an int"
        case "BooleanType":
            return "a bool"
        case "ArrayType":
            return "an array"
        case "ObjectType" | "DiscriminatedObjectType":
            return f"an object ({e.get('name', 'object')})"
        case "UnionType":
            parts = [_describe(m) for m in ty.elements()]
            more = f" or {len(parts) - limit} more" if len(parts) > limit else ""
            return " or ".join(parts[:limit]) + more
        case "NullType":
            return "null"
    return "anything"


def _suggestion(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _render(value: Any) -> str:
    """A short Bicep-like text for a reference or call, for messages."""
    if isinstance(value, str):
        return value
    if mc._is_expression(value):
        ((kind, inner),) = value.items()
        ops = inner.get("operands", {})
        if kind == "operator" and inner["type"] == "property_accessor":
            return f"{_render(ops['operand_1'])}.{_render(ops['operand_2'])}"
        if kind == "operator" and inner["type"] == "index_accessor":
            return f"{_render(ops['operand_1'])}[{_render(ops['operand_2'])}]"
        if kind == "function":
            return f"{inner['type']}(...)"
        return f"({inner['type']} expression)"
    return type(value).__name__


def _accessor_head(value: Any) -> tuple[Any, str | None]:
    """(root, first property) of a property accessor chain such as ``site.identity.x``."""
    ops = value["operator"]["operands"]
    rest = ops["operand_2"]
    while mc._is_expression(rest) and rest.get("operator", {}).get("type") == "property_accessor":
        rest = rest["operator"]["operands"]["operand_1"]
    return ops["operand_1"], rest if isinstance(rest, str) else None


def _unwrap(config: Any) -> tuple[Any, list[str]]:
    """A resource or module body without `if` and `for`, and the loop names in scope."""
    names: list[str] = []
    while isinstance(config, dict):
        if mc._is_loop(config):
            detail = config["loop_type"]["detail"]
            names.extend(str(detail[k]) for k in ("item_name", "index_name") if detail.get(k))
            config = config["config"]
        elif set(config) == {"condition", "config"}:
            config = config["config"]
        else:
            break
    return config, names


_FLIP = {
    "equals": "equals",
    "not_equals": "not_equals",
    "greater_than": "less_than",
    "greater_than_or_equals": "less_than_or_equals",
    "less_than": "greater_than",
    "less_than_or_equals": "greater_than_or_equals",
}
_NEGATE = {
    "equals": "not_equals",
    "not_equals": "equals",
    "greater_than": "less_than_or_equals",
    "greater_than_or_equals": "less_than",
    "less_than": "greater_than_or_equals",
    "less_than_or_equals": "greater_than",
}


def _facts(condition: Any, holds: bool) -> Iterator[tuple[str, str, Any]]:
    """(comparison, parameter, literal) facts a condition gives about names: ``x == 0`` false
    gives ("not_equals", "x", 0). Conjunctions that hold and disjunctions that fail split."""
    if not mc._is_expression(condition) or "operator" not in condition:
        return
    op = condition["operator"]
    ops = op.get("operands", {})
    kind = op["type"]
    if kind == "not":
        yield from _facts(ops.get("bool_value"), not holds)
    elif (kind == "and" and holds) or (kind == "or" and not holds):
        yield from _facts(ops.get("operand_1"), holds)
        yield from _facts(ops.get("operand_2"), holds)
    elif kind in _FLIP:
        left, right = ops.get("operand_1"), ops.get("operand_2")
        if isinstance(right, BicepElement) and not isinstance(left, (BicepElement, dict, list)):
            left, right, kind = right, left, _FLIP[kind]
        if isinstance(left, BicepElement) and not isinstance(right, (BicepElement, dict, list)):
            yield (kind if holds else _NEGATE[kind]), str(left), right


def _narrowed(name: str, declared: Ty, guards: Sequence[tuple[Any, bool]]) -> tuple[Any, Ty, str]:
    """What the conditions around a parameter's use leave of its declared type: (the one
    value it must have, or None; the narrowed type; the values ruled out, for messages)."""
    entry = dict(declared.entry)
    excluded: list[Any] = []
    fixed = None
    low, high = entry.get("minValue"), entry.get("maxValue")
    for condition, holds in guards:
        for kind, param, value in _facts(condition, holds):
            if param != name:
                continue
            if kind == "equals":
                fixed = value
            elif kind == "not_equals":
                excluded.append(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                bound = {
                    "greater_than": (value + 1, None),
                    "greater_than_or_equals": (value, None),
                    "less_than": (None, value - 1),
                    "less_than_or_equals": (None, value),
                }[kind]
                if bound[0] is not None:
                    low = bound[0] if low is None else max(low, bound[0])
                if bound[1] is not None:
                    high = bound[1] if high is None else min(high, bound[1])
    if declared.kind == "IntegerType":
        while low is not None and low in excluded:
            low += 1
        while high is not None and high in excluded:
            high -= 1
        if low is not None:
            entry["minValue"] = low
        if high is not None:
            entry["maxValue"] = high
    if isinstance(entry.get("allowed"), list):
        entry["allowed"] = [v for v in entry["allowed"] if v not in excluded]
    ruled_out = ", ".join(json.dumps(v) for v in excluded)
    return fixed, Ty(declared.table, entry, declared.source), ruled_out


class _FileCheck:
    """The check of one Bicep file's resources and module calls."""

    def __init__(self, analyzer: Analyzer, result: FileResult) -> None:
        self.analyzer = analyzer
        self.result = result
        doc = result.doc
        self.params: Mapping[str, Any] = doc.get("parameters") or {}
        self.variables: Mapping[str, Any] = doc.get("variables") or {}
        self.resources: Mapping[str, Any] = doc.get("resources") or {}
        self.modules: Mapping[str, Any] = doc.get("modules") or {}
        self.locals: list[str] = []
        self.via: list[str] = []
        # (condition, branch taken) of the conditional expressions the value is inside.
        self.guards: list[tuple[Any, bool]] = []

    # recording

    def _note(self) -> str:
        return f" (via {' -> '.join(self.via)})" if self.via else ""

    def problem(self, out: Outcome, path: str, message: str) -> None:
        out.problems.append((path, message + self._note()))

    def skip(self, out: Outcome, path: str, reason: str) -> None:
        out.skipped.append(Skip(path, reason + self._note()))

    # values

    def value(self, v: Any, ty: Ty, path: str, out: Outcome, *, partial: bool = False) -> None:
        """Check ``v`` against ``ty``; ``partial``: an object may leave out required keys
        (one argument of union(...))."""
        if v is None or (ty.kind == "AnyType" and not isinstance(v, (dict, list))):
            if v is not None and not isinstance(v, BicepElement) and not mc._is_expression(v):
                out.literals += 1
            return
        if isinstance(v, BicepElement):
            self.identifier(str(v), ty, path, out)
        elif mc._is_loop(v):
            self.loop(v, ty, path, out)
        elif mc._is_expression(v):
            self.expression(v, ty, path, out, partial)
        else:
            self.literal(v, ty, path, out, partial)

    def of_kind(self, kind: str | None, ty: Ty, path: str, out: Outcome, what: str) -> None:
        """A computed value of a known kind (or None: not known)."""
        if kind is None:
            self.skip(out, path, what)
        elif not _accepts(ty, kind):
            self.problem(
                out, path, f"{what} is {_KIND_ARTICLE[kind]}, but {_describe(ty)} is expected"
            )
        elif _constrained(ty, kind):
            self.skip(out, path, f"{what}: {_KIND_ARTICLE[kind]}, its value computed")
        else:
            out.computed += 1

    def literal(self, v: Any, ty: Ty, path: str, out: Outcome, partial: bool) -> None:
        kind = _literal_kind(v)
        if ty.kind == "AnyType":
            self.any_contents(v, path, out)
            return
        if not _accepts(ty, kind):
            given = f"'{v}'" if kind == "string" else _KIND_ARTICLE[kind]
            if kind in ("int", "bool"):
                given = f"{json.dumps(v)} ({kind})"
            self.problem(out, path, f"{given} is given, but {_describe(ty)} is expected")
            return
        if ty.kind == "UnionType":
            self.union(v, ty, path, out, partial)
            return
        allowed = ty.entry.get("allowed")
        if kind in ("string", "int") and isinstance(allowed, list):
            if kind == "string" and "${" in v:
                self.skip(out, path, f"interpolated string '{v}' ({ty.source} has @allowed)")
                return
            out.literals += 1
            if v not in allowed:
                self.problem(
                    out, path, f"{json.dumps(v)} is not one of the values {ty.source} allows"
                )
            return
        match ty.kind:
            case "StringLiteralType":
                self.string_literal(v, [ty.entry["value"]], path, out)
            case "StringType":
                self.string(v, ty, path, out)
            case "IntegerType":
                out.literals += 1
                low, high = ty.entry.get("minValue"), ty.entry.get("maxValue")
                if low is not None and v < low:
                    self.problem(out, path, f"{v} is below the minimum {low} of {ty.source}")
                if high is not None and v > high:
                    self.problem(out, path, f"{v} is above the maximum {high} of {ty.source}")
            case "BooleanType":
                out.literals += 1
            case "ArrayType":
                self.array(v, ty, path, out)
            case "ObjectType":
                self.object(v, ty, path, out, partial=partial)
            case "DiscriminatedObjectType":
                self.discriminated(v, ty, path, out, partial=partial)

    def any_contents(self, v: Any, path: str, out: Outcome) -> None:
        """Anything goes: count the literal values it holds."""
        if isinstance(v, dict) and not mc._is_expression(v) and not mc._is_loop(v):
            out.literals += sum(
                1 for x in v.values() if not isinstance(x, (dict, list, BicepElement))
            )
        elif isinstance(v, list):
            out.literals += sum(1 for x in v if not isinstance(x, (dict, list, BicepElement)))
        else:
            out.literals += 1

    def string_literal(self, v: str, values: list[str], path: str, out: Outcome) -> None:
        if "${" in v:
            self.skip(out, path, f"interpolated string '{v}' (must be one of {len(values)} values)")
            return
        out.literals += 1
        if v in values:
            return
        same = [x for x in values if x.lower() == v.lower()]
        if same:
            self.problem(out, path, f"'{v}' is spelt '{same[0]}' in the published type")
            return
        listed = ", ".join(f"'{x}'" for x in values[:12]) + (" ..." if len(values) > 12 else "")
        self.problem(out, path, f"'{v}' is not one of {listed}")

    def string(self, v: str, ty: Ty, path: str, out: Outcome) -> None:
        e = ty.entry
        if "${" in v:
            if any(k in e for k in ("minLength", "maxLength", "pattern")):
                self.skip(out, path, f"interpolated string '{v}'")
            else:
                out.computed += 1
            return
        out.literals += 1
        if "minLength" in e and len(v) < e["minLength"]:
            self.problem(
                out, path, f"'{v}' is shorter than {e['minLength']} characters ({ty.source})"
            )
        if "maxLength" in e and len(v) > e["maxLength"]:
            self.problem(
                out, path, f"'{v}' is longer than {e['maxLength']} characters ({ty.source})"
            )
        pattern = e.get("pattern")
        if pattern:
            try:
                matched = re.search(pattern, v) is not None
            except re.error:
                self.skip(out, path, f"pattern {pattern!r} is not a Python regular expression")
                return
            if not matched:
                self.problem(
                    out, path, f"'{v}' does not match the pattern {pattern!r} ({ty.source})"
                )

    def union(self, v: Any, ty: Ty, path: str, out: Outcome, partial: bool) -> None:
        kind = _literal_kind(v)
        members = [m for m in ty.elements() if _accepts(m, kind)]
        if kind == "string":
            values = [m.entry["value"] for m in members if m.kind == "StringLiteralType"]
            if v in values:
                out.literals += 1
                return
            open_strings = [m for m in members if m.kind == "StringType"]
            if open_strings:
                self.string(v, open_strings[0], path, out)
                return
            if len(values) == len(members):
                self.string_literal(v, values, path, out)
                return
        tries = []
        for member in members:
            sub = Outcome()
            self.value(v, member, path, sub, partial=partial)
            if not sub.problems:
                out.merge(sub)
                return
            tries.append(sub)
        out.merge(min(tries, key=lambda s: len(s.problems)))

    def array(self, v: list[Any], ty: Ty, path: str, out: Outcome) -> None:
        e = ty.entry
        if "minLength" in e and len(v) < e["minLength"]:
            self.problem(
                out, path, f"{len(v)} items, fewer than the minimum {e['minLength']} ({ty.source})"
            )
        if "maxLength" in e and len(v) > e["maxLength"]:
            self.problem(
                out, path, f"{len(v)} items, more than the maximum {e['maxLength']} ({ty.source})"
            )
        item = ty.at(e["itemType"])
        for i, x in enumerate(v):
            self.value(x, item, f"{path}[{i}]", out)

    def object(
        self,
        v: Mapping[str, Any],
        ty: Ty,
        path: str,
        out: Outcome,
        *,
        partial: bool = False,
        skip_keys: frozenset[str] = frozenset(),
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        props: Mapping[str, Any] = (
            properties if properties is not None else ty.entry.get("properties") or {}
        )
        name = ty.entry.get("name", "object")
        by_lower = {k.lower(): k for k in props}
        extra = ty.entry.get("additionalProperties")
        present = set()
        for raw_key, item in v.items():
            key = mc.unquote(raw_key)
            if key in skip_keys:
                continue
            where = _join(path, key)
            known = key if key in props else by_lower.get(key.lower())
            if known is None:
                if extra is not None:
                    self.value(item, ty.at(extra), where, out)
                else:
                    self.problem(out, where, f"unknown property of {name}{_suggestion(key, props)}")
                continue
            present.add(known)
            if known != key:
                self.problem(out, where, f"property '{key}' of {name} is spelt '{known}'")
            prop = props[known]
            flags = int(prop.get("flags", 0))
            if flags & READ_ONLY:
                self.problem(out, where, f"read-only property of {name}: it cannot be set")
                continue
            if flags & DEPLOY_TIME_CONSTANT:
                self.deploy_time_constant(item, where, out)
            self.value(item, ty.at(prop["type"]), where, out)
        if partial:
            return
        for key, prop in props.items():
            flags = int(prop.get("flags", 0))
            if flags & REQUIRED and not flags & READ_ONLY and key not in present:
                self.problem(out, _join(path, key), f"required property of {name} is missing")

    def discriminated(
        self,
        v: Mapping[str, Any],
        ty: Ty,
        path: str,
        out: Outcome,
        *,
        partial: bool = False,
        skip_keys: frozenset[str] = frozenset(),
    ) -> None:
        e = ty.entry
        disc = e["discriminator"]
        variants: Mapping[str, Any] = e["elements"]
        keys = {mc.unquote(k).lower(): k for k in v}
        where = _join(path, disc)
        choices = ", ".join(f"'{x}'" for x in variants)
        if disc.lower() not in keys:
            if partial:
                self.skip(out, path, f"no '{disc}' here: the variant of {e['name']} is not known")
            else:
                self.problem(
                    out, where, f"required: it picks the variant of {e['name']} ({choices})"
                )
            return
        chosen = v[keys[disc.lower()]]
        if not isinstance(chosen, str) or isinstance(chosen, BicepElement) or "${" in chosen:
            self.skip(out, path, f"'{disc}' is computed: the variant of {e['name']} is not known")
            return
        variant = chosen if chosen in variants else None
        if variant is None:
            same = [x for x in variants if x.lower() == chosen.lower()]
            if not same:
                self.problem(out, where, f"'{chosen}' is not one of {choices}")
                return
            variant = same[0]
            self.problem(out, where, f"'{chosen}' is spelt '{variant}' in {e['name']}")
        member = ty.at(variants[variant])
        props = {**(e.get("baseProperties") or {}), **(member.entry.get("properties") or {})}
        self.object(v, member, path, out, partial=partial, skip_keys=skip_keys, properties=props)

    def loop(self, v: Mapping[str, Any], ty: Ty, path: str, out: Outcome) -> None:
        if ty.kind == "UnionType":
            arrays = [m for m in ty.elements() if m.kind == "ArrayType"]
            ty = arrays[0] if arrays else ty
        if ty.kind != "ArrayType":
            self.problem(out, path, f"a for-loop builds an array, but {_describe(ty)} is expected")
            return
        if "minLength" in ty.entry or "maxLength" in ty.entry:
            self.skip(out, path, "the length of a for-loop's array")
        body, names = _unwrap(v)
        self.locals.extend(names)
        try:
            self.value(body, ty.at(ty.entry["itemType"]), f"{path}[*]", out)
        finally:
            del self.locals[len(self.locals) - len(names) :]

    def expression(
        self, v: Mapping[str, Any], ty: Ty, path: str, out: Outcome, partial: bool
    ) -> None:
        ((kind, inner),) = v.items()
        name = inner["type"]
        if kind == "operator":
            ops = inner.get("operands", {})
            if name == "conditional":
                for taken, branch in ((True, "true_value"), (False, "false_value")):
                    self.guards.append((ops["condition"], taken))
                    try:
                        self.value(ops[branch], ty, path, out, partial=partial)
                    finally:
                        self.guards.pop()
            elif name == "coalesce":
                for operand in mc._branches(v) or []:
                    self.value(operand, ty, path, out, partial=partial)
            elif name == "minus" and isinstance(ops.get("integer_value"), int):
                self.literal(-ops["integer_value"], ty, path, out, partial)
            elif name in _OPERATOR_KINDS:
                self.of_kind(_OPERATOR_KINDS[name], ty, path, out, f"{name} expression")
            else:
                self.skip(out, path, f"reference {_render(v)}")
            return
        args = list((inner.get("parameters") or {}).values())
        if name == "union" and _accepts(ty, "object"):
            for arg in args:
                self.value(arg, ty, path, out, partial=True)
        elif name == "concat" and _accepts(ty, "array") and not _accepts(ty, "string"):
            for arg in args:
                self.value(arg, ty, path, out)
        else:
            self.of_kind(_FUNCTION_KINDS.get(name), ty, path, out, f"{name}() result")

    def identifier(self, name: str, ty: Ty, path: str, out: Outcome) -> None:
        if name in self.locals:
            self.skip(out, path, f"loop variable {name}")
        elif name in self.params:
            self.param(name, ty, path, out)
        elif name in self.variables:
            if f"var {name}" in self.via:
                self.skip(out, path, f"var {name} refers to itself")
                return
            saved, self.locals = self.locals, []
            self.via.append(f"var {name}")
            try:
                self.value(self.variables[name]["value"], ty, path, out)
            finally:
                self.via.pop()
                self.locals = saved
        elif name in self.resources or name in self.modules:
            self.skip(out, path, f"reference {name}")
        else:
            self.skip(out, path, f"name {name}")

    def param(self, name: str, ty: Ty, path: str, out: Outcome) -> None:
        param = self.params[name]
        guarded = any(name in self.names_in(c, set()) for c, _ in self.guards)
        out.sinks.append(Sink(name, path + self._note(), ty, guarded))
        declared = declared_type(param, f"{self.result.label} param {name}")
        what = f"param {name}"
        if declared is None:
            self.skip(out, path, f"{what}: declared type {param.get('type')} is not checked here")
            return
        fixed, narrowed, ruled_out = _narrowed(name, declared, self.guards)
        if ruled_out:
            what += f" (the condition around it rules out {ruled_out})"
        if fixed is not None:
            self.via.append(f"{what}, {json.dumps(fixed)} where the condition holds")
            try:
                self.value(fixed, ty, path, out)
            finally:
                self.via.pop()
            return
        self.fits(narrowed, ty, path, out, what, decorated=narrowed.entry == declared.entry)
        # The default reaches the property when nothing is given, unless a condition decides.
        default = param.get("default")
        if default is not None and "allowed" not in declared.entry and not self.guards:
            if not isinstance(default, BicepElement) and not mc._is_expression(default):
                self.via.append(f"default of {what}")
                try:
                    self.value(default, ty, path, out)
                finally:
                    self.via.pop()

    def fits(
        self, declared: Ty, ty: Ty, path: str, out: Outcome, what: str, *, decorated: bool = True
    ) -> None:
        """Whether every value a parameter admits fits the type. ``decorated``: the bounds are
        the decorators' own (not narrowed by a condition), so messages quote them."""
        before = (len(out.problems), len(out.skipped), out.literals, out.computed)
        self._fits(declared, ty, path, out, what, decorated)
        if before == (len(out.problems), len(out.skipped), out.literals, out.computed):
            out.computed += 1

    def _fits(
        self, declared: Ty, ty: Ty, path: str, out: Outcome, what: str, decorated: bool
    ) -> None:
        d = declared.entry
        kind = {
            "StringType": "string",
            "IntegerType": "int",
            "BooleanType": "bool",
            "ArrayType": "array",
            "ObjectType": "object",
        }[declared.kind]
        if ty.kind == "AnyType":
            return
        if not _accepts(ty, kind):
            self.problem(
                out, path, f"{what} is {_KIND_ARTICLE[kind]}, but {_describe(ty)} is expected"
            )
            return
        if isinstance(d.get("allowed"), list):
            self.via.append(f"@allowed of {what}")
            try:
                for allowed in d["allowed"]:
                    self.value(allowed, ty, path, out)
            finally:
                self.via.pop()
            return
        if ty.kind == "UnionType":
            members = [m for m in ty.elements() if _accepts(m, kind)]
            if any(not _constrained(m, kind) for m in members):
                return
            strings = [m for m in members if m.kind == "StringType"]
            if kind == "string" and strings:
                ty = strings[0]
            elif len(members) == 1:
                ty = members[0]
            else:
                self.skip(out, path, f"{what} has no @allowed; the property takes {_describe(ty)}")
                return
        e = ty.entry
        match ty.kind:
            case "IntegerType":
                for low, key in ((True, "minValue"), (False, "maxValue")):
                    self.bound(out, path, what, d.get(key), e.get(key), ty, low, decorated)
            case "StringType" | "ArrayType":
                self.length(out, path, what, d.get("minLength"), e.get("minLength"), ty, low=True)
                self.length(out, path, what, d.get("maxLength"), e.get("maxLength"), ty, low=False)
                if e.get("pattern"):
                    self.skip(out, path, f"{what} is not held to the pattern {e['pattern']!r}")
                if ty.kind == "ArrayType" and ty.at(e["itemType"]).kind != "AnyType":
                    self.skip(out, path, f"{what}: the items of an array parameter")
            case "StringLiteralType":
                self.skip(out, path, f"{what} has no @allowed; the property takes {_describe(ty)}")
            case "ObjectType" | "DiscriminatedObjectType":
                self.skip(out, path, f"{what}: the properties of an object parameter")

    def bound(
        self,
        out: Outcome,
        path: str,
        what: str,
        given: Any,
        limit: Any,
        ty: Ty,
        low: bool,
        decorated: bool,
    ) -> None:
        decorator = "@minValue" if low else "@maxValue"
        word = "minimum" if low else "maximum"
        if limit is None:
            return
        if given is None:
            self.skip(out, path, f"{what} has no {decorator}; {ty.source} allows {word} {limit}")
        elif (given < limit) if low else (given > limit):
            relation = "below" if low else "above"
            quoted = f" ({decorator}({given}))" if decorated else ""
            self.problem(
                out,
                path,
                f"{what} allows {'down' if low else 'up'} to {given}{quoted}, "
                f"{relation} the {word} {limit} of {ty.source}",
            )

    def length(
        self, out: Outcome, path: str, what: str, given: Any, limit: Any, ty: Ty, *, low: bool
    ) -> None:
        decorator = "@minLength" if low else "@maxLength"
        word = "minimum" if low else "maximum"
        if limit is None:
            return
        if given is None:
            self.skip(
                out, path, f"{what} has no {decorator}; {ty.source} has {word} length {limit}"
            )
        elif (given < limit) if low else (given > limit):
            self.problem(
                out,
                path,
                f"{what} allows length {given} ({decorator}({given})), "
                f"{'below' if low else 'above'} the {word} length {limit} of {ty.source}",
            )

    def names_in(self, v: Any, seen: set[str]) -> set[str]:
        """The names an expression uses, through the variables it uses."""
        if isinstance(v, BicepElement):
            name = str(v)
            if name in self.variables and name not in seen:
                seen.add(name)
                return {name} | self.names_in(self.variables[name]["value"], seen)
            return {name}
        if isinstance(v, dict):
            return set().union(*(self.names_in(x, seen) for x in v.values()))
        if isinstance(v, list):
            return set().union(*(self.names_in(x, seen) for x in v))
        return set()

    # deploy-time constants (BCP120)

    def deploy_time_constant(self, v: Any, path: str, out: Outcome) -> None:
        for text in self.runtime_values(v, set()):
            self.problem(
                out,
                path,
                f"deploy-time constant, but {text} is known only during the deployment (BCP120)",
            )

    def runtime_values(self, v: Any, seen: set[str]) -> Iterator[str]:
        if isinstance(v, BicepElement):
            name = str(v)
            if name in self.variables and name not in seen and name not in self.locals:
                seen.add(name)
                yield from self.runtime_values(self.variables[name]["value"], seen)
            return
        if isinstance(v, list):
            for item in v:
                yield from self.runtime_values(item, seen)
            return
        if not isinstance(v, dict):
            return
        if mc._is_expression(v):
            ((kind, inner),) = v.items()
            if kind == "operator" and inner["type"] == "property_accessor":
                root, first = _accessor_head(v)
                if isinstance(root, BicepElement):
                    allowed = (
                        _DEPLOY_TIME_RESOURCE_PROPERTIES
                        if str(root) in self.resources
                        else _DEPLOY_TIME_MODULE_PROPERTIES
                        if str(root) in self.modules
                        else None
                    )
                    if allowed is not None and first not in allowed:
                        yield _render(v)
                    return
                yield from self.runtime_values(root, seen)
                return
            if kind == "function" and (
                inner["type"] == "reference" or inner["type"].startswith("list")
            ):
                yield f"{inner['type']}(...)"
                return
            yield from self.runtime_values(
                inner.get("operands") or inner.get("parameters") or {}, seen
            )
            return
        for item in v.values():
            yield from self.runtime_values(item, seen)

    # declarations

    def resource(self, symbol: str, res: Mapping[str, Any]) -> Checked:
        rtype, version = res["type"], res["api_version"]
        checked = Checked(self.result.label, symbol, f"{rtype}@{version}", "checked")
        if res.get("existing"):
            checked.status = "existing"
            return checked
        store = self.analyzer.store
        found = store.resource(rtype, version)
        if found is None:
            checked.status = "unpublished"
            reason = store.unpublished_reason(rtype, version)
            if reason is None:
                reason = "not in tests/bicep/types: run scripts/refresh-bicep-types"
                self.problem(checked.outcome, "", f"{rtype}@{version} is {reason}")
            checked.reason = reason
            return checked
        if not found.entry.get("writableScopes", 1):
            self.problem(checked.outcome, "", f"{rtype} cannot be deployed: declare it `existing`")
        body, self.locals = _unwrap(res["config"])
        body_ty = found.at(found.entry["body"])
        if not isinstance(body, dict) or mc._is_expression(body):
            self.skip(checked.outcome, "", "the body is computed")
        elif body_ty.kind == "DiscriminatedObjectType":
            self.discriminated(body, body_ty, "", checked.outcome, skip_keys=RESOURCE_KEYWORDS)
        else:
            self.object(body, body_ty, "", checked.outcome, skip_keys=RESOURCE_KEYWORDS)
        for path, message in list(checked.outcome.problems):
            source = mc.documented_unpublished(rtype, path)
            if source is not None and message.startswith("unknown property"):
                checked.outcome.problems.remove((path, message))
                self.skip(
                    checked.outcome, path, f"documented, not in the published types: {source}"
                )
        self.locals = []
        checked.outcome.dedupe()
        return checked

    def module(self, symbol: str, mod: Mapping[str, Any]) -> Checked:
        detail = mod.get("detail") or {}
        checked = Checked(self.result.label, symbol, f"module {detail.get('full')}", "checked")
        out = checked.outcome
        if mod.get("type") != "local":
            checked.status = "unpublished"
            checked.reason = "a registry or template spec module: not read here"
            return checked
        target = (self.result.path.parent / detail["path"]).resolve()
        if not target.exists():
            self.problem(out, "", f"module file {detail['path']} does not exist")
            return checked
        sub = self.analyzer.file(target)
        sub_params: Mapping[str, Any] = sub.doc.get("parameters") or {}
        sinks = sub.sinks()
        body, self.locals = _unwrap(mod["config"])
        args = body.get("params") if isinstance(body, dict) else None
        if not isinstance(args, dict) or mc._is_expression(args):
            self.skip(out, "params", "the module's params are computed")
            self.locals = []
            return checked
        for raw_key, v in args.items():
            arg = mc.unquote(raw_key)
            where = f"params.{arg}"
            param = sub_params.get(arg)
            if param is None:
                self.problem(
                    out, where, f"{sub.label} has no param {arg}{_suggestion(arg, sub_params)}"
                )
                continue
            declared = declared_type(param, f"{sub.label} param {arg}")
            first = Outcome()
            if declared is None:
                self.skip(first, where, f"{sub.label} param {arg}: declared type not checked here")
            else:
                self.value(v, declared, where, first)
            out.merge(first)
            if first.problems:
                continue
            for sink in sinks.get(arg, []):
                if sink.guarded:
                    reason = f"reaches {sub.label} {sink.where} only under a condition on it"
                    self.skip(out, where, reason)
                    continue
                self.via.append(f"{sub.label} {sink.where}")
                try:
                    sub_out = Outcome()
                    self.value(v, sink.type, where, sub_out)
                    # Only what the module's own declaration did not already cover.
                    out.problems.extend(sub_out.problems)
                    out.skipped.extend(sub_out.skipped)
                    out.sinks.extend(sub_out.sinks)
                finally:
                    self.via.pop()
        self.locals = []
        out.dedupe()
        return checked


class Analyzer:
    """Checks Bicep files against a TypeStore; a module is read once however often called."""

    def __init__(self, store: TypeStore | None = None, root: Path = BICEP) -> None:
        self.store = store if store is not None else TypeStore.load()
        self.root = root
        self._files: dict[Path, FileResult] = {}

    def label(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.name

    def file(self, path: Path, doc: Mapping[str, Any] | None = None) -> FileResult:
        key = path.resolve()
        if key not in self._files:
            parsed = doc if doc is not None else mc.parse_bicep(path)
            result = FileResult(path, self.label(path), parsed)
            check = _FileCheck(self, result)
            for symbol, mod in (parsed.get("modules") or {}).items():
                result.modules.append(check.module(symbol, mod))
            for symbol, res in (parsed.get("resources") or {}).items():
                result.resources.append(check.resource(symbol, res))
            self._files[key] = result
        return self._files[key]

    def check(self, paths: Iterable[Path]) -> Report:
        return Report(self.store, [self.file(p) for p in sorted(paths)])


@dataclass
class Report:
    store: TypeStore
    files: list[FileResult]

    @property
    def checked(self) -> list[Checked]:
        return [c for f in self.files for c in [*f.resources, *f.modules]]

    @property
    def findings(self) -> list[Finding]:
        return [finding for c in self.checked for finding in c.findings]

    @property
    def unpublished(self) -> dict[str, list[str]]:
        """Type@version -> the resources of it, for types with no published definition."""
        out: dict[str, list[str]] = {}
        for c in self.checked:
            if c.status == "unpublished" and not c.what.startswith("module "):
                out.setdefault(c.what, []).append(f"{c.file} {c.symbol}")
        return out

    @property
    def skipped(self) -> list[tuple[Checked, Skip]]:
        return [(c, s) for c in self.checked for s in c.outcome.skipped]

    def text(self) -> str:
        lines: list[str] = []
        src = self.store.source
        lines.append(
            f"Bicep type check against {src.get('repository', 'Azure/bicep-types-az')} "
            f"@ {src.get('commit', '?')} ({src.get('commit_date', '?')})"
        )
        graph = src.get("graph")
        if isinstance(graph, dict):
            lines.append(
                f"  and {graph.get('extension', '?')} against {graph.get('repository', '?')} "
                f"@ {graph.get('commit', '?')} ({graph.get('commit_date', '?')})"
            )
        groups: dict[str, list[Checked]] = {}
        for c in self.checked:
            if c.status == "checked":
                groups.setdefault(c.what if not c.what.startswith("module ") else "", []).append(c)
        lines.append("")
        lines.append(
            "Checked: type@api-version: resources, literal values checked, computed values "
            "checked (a parameter's declared type, a function's result), computed values "
            "skipped, findings"
        )
        for what in sorted((w for w in groups if w), key=str.lower):
            lines.append("  " + self._row(what, groups[what]))
        if "" in groups:
            lines.append("  " + self._row("module calls (params)", groups[""]))
        lines.append("")
        lines.append(f"Computed values skipped ({len(self.skipped)}):")
        for c, s in self.skipped:
            lines.append(f"  {c.file} {c.symbol} {s.path or '(body)'}: {s.reason}")
        lines.append("")
        lines.append("Types without published definitions (BCP081), bodies not checked:")
        reasons = {c.what: c.reason for c in self.checked if c.status == "unpublished"}
        for what, where in sorted(self.unpublished.items()):
            lines.append(f"  {what}: {reasons[what]}")
            lines.append(f"    declared in: {', '.join(where)}")
        existing = sorted({f"{c.what}" for c in self.checked if c.status == "existing"})
        lines.append("")
        lines.append(f"`existing` resources, bodies not checked: {', '.join(existing) or 'none'}")
        lines.append("")
        lines.append(f"Findings ({len(self.findings)}):")
        for finding in self.findings:
            lines.append(f"  {finding}")
        return "\n".join(lines)

    @staticmethod
    def _row(what: str, group: list[Checked]) -> str:
        literals = sum(c.outcome.literals for c in group)
        computed = sum(c.outcome.computed for c in group)
        skipped = sum(len(c.outcome.skipped) for c in group)
        problems = sum(len(c.outcome.problems) for c in group)
        return (
            f"{what}: {len(group)}, {literals} literal, {computed} computed, {skipped} skipped, "
            f"{problems} findings"
        )


def check_files(paths: Iterable[Path] = BICEP_FILES, store: TypeStore | None = None) -> Report:
    return Analyzer(store).check(paths)


if __name__ == "__main__":
    print(check_files().text())
