"""The deployment package: what `func azure functionapp publish` uploads, and the app
indexing its functions from it with the runtime requirements alone.

Core Tools packs every file under the app's root except the folders ``.git`` and
``.vscode``, the files ``.funcignore``, ``.gitignore``, ``local.settings.json`` and
``project.lock.json``, and what ``.funcignore`` excludes (``GetLocalFiles`` in
src/Cli/func/Common/FileSystemHelpers.cs of Azure/azure-functions-core-tools). It reads
``.funcignore`` with its own port of codemix/gitignore-parser (GitIgnoreParser.cs there),
not with git's rules: each line becomes a regular expression anchored at the start of the
path and ended by a word boundary. ``CoreToolsIgnore`` below is that parser in Python. For
a Python app with a remote build, the package is those files; Azure installs
requirements.txt (PythonHelpers.GetPythonDeploymentPackage).
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pathspec
import pytest
from packaging.utils import canonicalize_name

from tests.support.keys import SECRET

ROOT = Path(__file__).resolve().parent.parent
FUNCIGNORE = (ROOT / ".funcignore").read_text(encoding="utf-8")
# What the app needs in Azure: the trigger table, the host's settings, the lock Azure's
# build installs, and the code: the core and its wings (shared/) and the composition root
# that wires them (app/).
APP = {"function_app.py", "host.json", "requirements.txt", "shared", "app"}
CODE = ("shared", "app")
# Folders that must never ship, whatever else changes.
NEVER = ("tools/", "tests/", "bench/", "docs/", "scripts/", "bicep/", "devhost/")
FUNCTIONS = {"ivr_lookup", "health", "warmup", "scale_schedule", "surge", "cache_warm"}
# Core Tools' own exclusions, before .funcignore (compared without case).
SKIPPED_FOLDERS = {".git", ".vscode"}
SKIPPED_FILES = {".funcignore", ".gitignore", "local.settings.json", "project.lock.json"}


class CoreToolsIgnore:
    """``.funcignore`` as Core Tools reads it (GitIgnoreParser.cs, line for line)."""

    def __init__(self, text: str) -> None:
        positive: list[str] = []
        negative: list[str] = []
        for raw in text.split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line.removeprefix("!").removeprefix("/")
            (negative if negated else positive).append(line)
        self._positive = self._compile(positive)
        self._negative = self._compile(negative)

    @staticmethod
    def _pattern(line: str) -> str:
        escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda m: "\\" + m.group(0), line)
        return escaped.replace("**", "(.+)").replace("*", "([^/]+)")

    @classmethod
    def _compile(cls, lines: list[str]) -> re.Pattern[str]:
        # Core Tools sorts the lines first; the order of alternatives changes no match.
        if not lines:
            return re.compile("$^")
        return re.compile("^((" + ")|(".join(cls._pattern(line) for line in lines) + r"))\b")

    def accepts(self, path: str) -> bool:
        return bool(self._negative.match(path)) or not self._positive.match(path)


@functools.cache
def candidate_files(root: Path = ROOT) -> tuple[str, ...]:
    """Every file Core Tools considers, as a path from the root with forward slashes. It
    walks every folder, ignored or not, so this reads the whole tree once per session."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d.lower() not in SKIPPED_FOLDERS]
        for name in names:
            if name.lower() not in SKIPPED_FILES:
                found.append((Path(folder) / name).relative_to(root).as_posix())
    return tuple(sorted(found))


def package_files(root: Path = ROOT, funcignore: str = FUNCIGNORE) -> list[str]:
    """The files `func azure functionapp publish` puts in the package."""
    ignore = CoreToolsIgnore(funcignore)
    return [path for path in candidate_files(root) if ignore.accepts(path)]


def files_kept_by_gits_rules(root: Path = ROOT, funcignore: str = FUNCIGNORE) -> list[str]:
    """The files .funcignore keeps when read as a .gitignore: like git, this does not look
    inside a folder it excludes."""
    spec = pathspec.GitIgnoreSpec.from_lines(funcignore.splitlines())
    kept = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder).relative_to(root)
        dirs[:] = [
            d
            for d in dirs
            if d.lower() not in SKIPPED_FOLDERS and not spec.match_file(f"{(here / d).as_posix()}/")
        ]
        for name in names:
            path = (here / name).as_posix()
            if name.lower() not in SKIPPED_FILES and not spec.match_file(path):
                kept.append(path)
    return sorted(kept)


def forbidden(files: Iterable[str]) -> list[str]:
    """Operator tools, tests, benchmarks, docs, scripts, Bicep and the dev host."""
    return [f for f in files if f.startswith(NEVER) or Path(f).name.startswith("test_")]


def test_the_parser_reads_patterns_as_core_tools_does() -> None:
    # Cases from Core Tools' own tests (test/Cli/Func.UnitTests/ParserTests).
    theirs = CoreToolsIgnore(
        "# a comment\nnode_modules\n*.log\nnonexistent\n!/nonexistent/foo\n/baz\nfoo/*.wat\n"
        "/test1\ntest2\nothernonexistent/**/what\n!/othernonexistent/**/what/foo\n*.swp\n"
    )
    for path in ("test/index.js", "wat/test/index.js", "test1File.wat", "nonexistent/foo/wat"):
        assert theirs.accepts(path), path
    for path in ("test.swp", "node_modules/what.js", "foo/bar.wat", "othernonexistent/b/what"):
        assert not theirs.accepts(path), path
    # What makes it differ from git: anchored at the root, and a word boundary after.
    ours = CoreToolsIgnore("__pycache__\n/.venv/\n")
    assert not ours.accepts("__pycache__/x.pyc") and ours.accepts("shared/__pycache__/x.pyc")
    assert not ours.accepts(".venv/bin/python") and ours.accepts(".venv/.requirements.sha")


def test_the_package_holds_the_app_and_no_tool_test_benchmark_or_doc() -> None:
    files = package_files()
    top = sorted({f.split("/")[0] for f in files})
    print(f"the package: {len(files)} files, top level {top}")
    assert set(top) == APP, f"the package holds {top}, not {sorted(APP)}"
    assert forbidden(files) == []
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    # Everything the app runs is in it: the code and the Lua scripts it loads.
    code = {
        p.relative_to(ROOT).as_posix()
        for pattern in ("*.py", "*.lua")
        for folder in CODE
        for p in (ROOT / folder).rglob(pattern)
    }
    assert code - set(files) == set()


def test_read_with_gits_rules_the_funcignore_excludes_at_least_as_much() -> None:
    by_git = files_kept_by_gits_rules()
    assert set(by_git) <= set(package_files())
    assert forbidden(by_git) == []


def test_the_package_without_its_funcignore_lines_would_ship_the_tools() -> None:
    """The checks above can fail: drop the lines that keep tools and tests out."""
    loose = "\n".join(line for line in FUNCIGNORE.splitlines() if line not in {"/tools", "/tests"})
    leaked = forbidden(package_files(funcignore=loose))
    assert any(f.startswith("tools/") for f in leaked)
    assert any(f.startswith("tests/") for f in leaked)


# --- imports: the standard library, the package itself, and the runtime lock -------------


@functools.cache
def runtime_files() -> frozenset[Path]:
    """The installed files of every distribution requirements.txt pins (the environment is
    the lock: tests/test_requirements.py)."""
    lock = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    names = set(re.findall(r"^([A-Za-z0-9_.\-]+)==", lock, re.M))
    files: set[Path] = set()
    for dist in importlib.metadata.distributions():
        if canonicalize_name(dist.metadata["Name"]) in {canonicalize_name(n) for n in names}:
            files.update(Path(str(dist.locate_file(f))).resolve() for f in dist.files or ())
    return frozenset(files)


def _imported(source: str) -> set[str]:
    """Every module a source imports by absolute name, at any level."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def foreign_imports(source: str) -> list[str]:
    """Modules ``source`` imports that are in neither the standard library, nor the package
    (shared, app, function_app), nor a distribution of the runtime lock."""
    foreign = []
    for module in sorted(_imported(source)):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top in {"__future__", "shared", "app", "function_app"}:
            continue
        try:
            spec = importlib.util.find_spec(module)
        except ImportError:
            spec = None
        origin = spec.origin if spec is not None else None
        if origin is None or Path(origin).resolve() not in runtime_files():
            foreign.append(module)
    return foreign


def test_the_package_imports_only_the_standard_library_and_the_runtime_lock() -> None:
    sources = {f: (ROOT / f).read_text(encoding="utf-8") for f in package_files()}
    offenders = {
        f: found
        for f, text in sources.items()
        if f.endswith(".py") and (found := foreign_imports(text))
    }
    assert offenders == {}


def test_the_import_check_sees_a_dev_package_or_a_tool_inside_a_function() -> None:
    planted = (
        "import json\nfrom azure.data.tables.aio import TableClient\n\n"
        "def main() -> None:\n    from tqdm import tqdm\n    import tools.plan\n"
    )
    assert foreign_imports(planted) == ["tools.plan", "tqdm"]


# --- the app, imported from the package with only requirements.txt installed -------------

PROBE = """
import importlib, json, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import function_app
import app, shared
modules = sorted(
    m.name
    for package in (shared, app)
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
)
for name in modules:
    importlib.import_module(name)
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "functions": sorted(f.get_function_name() for f in function_app.app.get_functions()),
    "modules": modules,
}))
"""
# The least the app needs to import: where the customer table is.
IMPORT_ENV = {"CustomerStorage": "UseDevelopmentStorage=true", "LOOKUP_KEY_SECRET": SECRET}


def _probe(python: Path, app: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", "-c", PROBE, str(app)],
        env=IMPORT_ENV,
        cwd=app,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_function_app_indexes_its_functions_from_the_package_with_runtime_requirements_only(
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [
            *(str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"),
            *("--require-hashes", "-r", str(ROOT / "requirements.txt")),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    app = tmp_path / "app"
    for f in package_files():
        (app / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, app / f)

    done = _probe(python, app)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["python"] == [3, 13]
    assert set(result["functions"]) == FUNCTIONS
    assert {"app.runtime", "app.settings", "shared.dip.loader", "shared.dip.warm"} <= set(
        result["modules"]
    )

    # It can fail: a module the app imports reaching for a tool, or for a dev package.
    runtime = app / "app" / "runtime.py"
    original = runtime.read_text(encoding="utf-8")
    for missing, line in (("tools", "from tools import plan"), ("tqdm", "import tqdm")):
        runtime.write_text(f"{original}\n{line}\n", encoding="utf-8")
        failed = _probe(python, app)
        assert failed.returncode != 0
        assert f"No module named '{missing}'" in failed.stderr
    runtime.write_text(original, encoding="utf-8")
