"""The house rules, read from the code: the core (shared/) imports no wing, the two wings
(shared/dip, shared/scale) never import each other, and the composition root (app/) that
wires them is imported by none of them; one module-level state; no operator tool imported
by what the app runs; and no test code imported by what is deployed, the operator tools or
the dev host (the benchmarks, a test harness kept out of the package, may use the test
services)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.services import ROOT

SHARED = ROOT / "shared"
# The composition root: it wires the core and both wings, and nothing below imports it.
ROOT_PACKAGE = ROOT / "app"


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any level (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # "from shared.scale import surge" imports the module shared.scale.surge.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _ours(module: str) -> bool:
    return module.split(".")[0] in {"shared", "app"}


APP_FILES = [*SHARED.rglob("*.py"), *ROOT_PACKAGE.rglob("*.py")]
GRAPH = {_module(p): {m for m in _imports(p) if _ours(m)} for p in APP_FILES}


def _reach(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        for dep in GRAPH.get(todo.pop(), set()):
            if dep in GRAPH and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _layer(module: str) -> str:
    """``root`` (app), ``dip`` or ``scale`` (the wings), or ``core`` (the rest of shared)."""
    parts = module.split(".")
    if parts[0] == "app":
        return "root"
    return parts[1] if len(parts) > 2 and parts[1] in {"dip", "scale"} else "core"


def _wing(module: str) -> str | None:
    layer = _layer(module)
    return layer if layer in {"dip", "scale"} else None


# What each layer may import: the core only itself, a wing itself and the core, the root
# everything. The wings' package modules (shared.dip, shared.scale) are their docstrings.
ALLOWED = {
    "core": {"core"},
    "dip": {"dip", "core"},
    "scale": {"scale", "core"},
    "root": {"root", "dip", "scale", "core"},
}


def _violations() -> list[str]:
    """Every import, direct or through other modules, that goes where its layer may not."""
    return sorted(
        f"{module} -> {dep}"
        for module in GRAPH
        for dep in _reach(module)
        if _layer(dep) not in ALLOWED[_layer(module)]
    )


def test_the_layers_exist_and_hold_their_modules() -> None:
    layers: dict[str, set[str]] = {}
    for module in GRAPH:
        layers.setdefault(_layer(module), set()).add(module)
    assert {"shared.dip.lookup", "shared.dip.valve", "shared.dip.loader"} <= layers["dip"]
    assert {"shared.scale.schedule", "shared.scale.tick", "shared.scale.surge_api"} <= layers[
        "scale"
    ]
    assert {"shared.clients", "shared.settings", "shared.errors"} <= layers["core"]
    assert {"app.runtime", "app.settings"} <= layers["root"]


def test_no_module_of_one_wing_reaches_the_other_even_through_the_core() -> None:
    crossings = sorted(
        f"{module} -> {dep}"
        for module in GRAPH
        if _wing(module)
        for dep in _reach(module)
        if _wing(dep) and _wing(dep) != _wing(module)
    )
    assert crossings == []


def test_the_core_imports_no_wing_and_nothing_imports_the_composition_root() -> None:
    # No exemption: the wiring lives in app/, above the core and both wings.
    core = {m for m in GRAPH if _layer(m) == "core"}
    assert {m for m in core if any(_layer(d) != "core" for d in _reach(m))} == set()
    below = {m for m in GRAPH if _layer(m) != "root"}
    assert {m for m in below if any(_layer(d) == "root" for d in _reach(m))} == set()
    assert _violations() == []


def test_the_check_sees_a_violation_when_there_is_one() -> None:
    # Planted: a dip module reaching the scale wing through the core, the core importing a
    # wing, and a wing importing the composition root.
    planted = {
        "shared.dip.example": {"shared.http"},
        "shared.http": GRAPH["shared.http"] | {"shared.scale.tick"},
        "shared.scale.example": {"app.runtime"},
    }
    saved = {name: GRAPH.get(name) for name in planted}
    GRAPH.update(planted)
    try:
        found = _violations()
        assert "shared.dip.example -> shared.scale.tick" in found
        assert "shared.http -> shared.scale.tick" in found
        assert "shared.scale.example -> app.runtime" in found
    finally:
        for name, deps in saved.items():
            if deps is None:
                del GRAPH[name]
            else:
                GRAPH[name] = deps
    assert _violations() == []


def _tool_imports(path: Path) -> list[str]:
    """The operator tools (tools/, never deployed) a file imports, at any level."""
    return sorted(m for m in _imports(path) if m == "tools" or m.startswith("tools."))


def test_nothing_the_app_runs_imports_an_operator_tool() -> None:
    runs = [ROOT / "function_app.py", *APP_FILES]
    offenders = {str(p.relative_to(ROOT)): found for p in runs if (found := _tool_imports(p))}
    assert offenders == {}


def test_the_tools_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("def main() -> None:\n    from tools import plan\n", encoding="utf-8")
    assert _tool_imports(planted) == ["tools", "tools.plan"]


def _module_state(path: Path) -> list[str]:
    """Module-level mutable state: ``global`` statements, and lower-case names bound to a
    mutable container (upper-case names are constants by convention)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [f"global {', '.join(n.names)}" for n in ast.walk(tree) if isinstance(n, ast.Global)]
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        mutable = isinstance(value, ast.Dict | ast.List | ast.Set) or (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id in {"dict", "list", "set", "defaultdict", "deque"}
        )
        for target in targets:
            if (
                mutable
                and isinstance(target, ast.Name)
                and not target.id.isupper()
                and not target.id.startswith("__")
            ):
                found.append(target.id)
    return found


def test_the_runtime_is_the_only_module_level_state_in_the_app() -> None:
    stateful = {_module(p): _module_state(p) for p in APP_FILES}
    assert {m: s for m, s in stateful.items() if s} == {
        "app.runtime": ["global _current", "global _current"]
    }


def _test_imports(path: Path) -> list[str]:
    """The test modules (tests/) a file imports, at any level."""
    return sorted(m for m in _imports(path) if m == "tests" or m.startswith("tests."))


def test_nothing_deployed_nor_a_tool_nor_the_dev_host_imports_tests() -> None:
    checked = [
        ROOT / "function_app.py",
        *(
            path
            for folder in ("app", "shared", "tools", "devhost")
            for path in (ROOT / folder).rglob("*.py")
        ),
    ]
    offenders = {str(p.relative_to(ROOT)): found for p in checked if (found := _test_imports(p))}
    assert offenders == {}


def test_the_tests_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "def main() -> None:\n    from tests.support.services import RedisServer\n",
        encoding="utf-8",
    )
    assert _test_imports(planted) == [
        "tests.support.services",
        "tests.support.services.RedisServer",
    ]
