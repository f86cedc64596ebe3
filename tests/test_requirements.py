"""The locks agree with the direct requirements, and the environment is the lock.

requirements.in lists the app's direct runtime requirements; requirements.txt is the lock
compiled from it (what Azure's remote build installs). requirements-dev.in adds the dev
tools; requirements-dev.txt is its lock, constrained to requirements.txt.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent

# The exact command at the top of each lock; the flags fix the target Azure runs on.
LOCK_COMMAND = (
    "uv pip compile --generate-hashes --python-version 3.13 "
    "--python-platform x86_64-manylinux_2_28 {source} -o {lock}"
)
RUNTIME = ("requirements.in", "requirements.txt")
DEV = ("requirements-dev.in", "requirements-dev.txt")
PAIRS = pytest.mark.parametrize(("source", "lock"), [RUNTIME, DEV], ids=["runtime", "dev"])

_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    line: str
    name: NormalizedName
    version: str | None  # None when the line is not `name==version`
    hashes: frozenset[str]
    others: tuple[str, ...]  # anything on the line that is neither the pin nor a hash


def read_lock(name: str) -> list[Pin]:
    """Every requirement line of a lock, continuation lines joined."""
    text = (ROOT / name).read_text(encoding="utf-8").replace("\\\n", " ")
    pins = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        first, *options = line.split()
        req = Requirement(first)
        spec = list(req.specifier)
        exact = len(spec) == 1 and spec[0].operator == "==" and "*" not in spec[0].version
        pins.append(
            Pin(
                line=line,
                name=canonicalize_name(req.name),
                version=spec[0].version if exact else None,
                hashes=frozenset(o for o in options if _HASH.match(o)),
                others=tuple(o for o in options if not _HASH.match(o)),
            )
        )
    return pins


def locked_versions(name: str) -> dict[NormalizedName, str]:
    return {p.name: p.version for p in read_lock(name) if p.version is not None}


def read_direct(name: str) -> list[Requirement]:
    """The requirements a .in file names, following -r; -c constraints are not requirements."""
    reqs = []
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith(("-c ", "--constraint")):
            continue
        if line.startswith(("-r ", "--requirement")):
            reqs.extend(read_direct(line.split(maxsplit=1)[1].strip()))
            continue
        assert not line.startswith("-"), f"{name}: unexpected option line {line!r}"
        reqs.append(Requirement(line))
    return reqs


def installed_closure(roots: Iterable[Requirement]) -> tuple[set[NormalizedName], set[str]]:
    """Every distribution reachable from roots through installed metadata (markers evaluated
    here, on the Python and platform the locks target), and the names not installed."""
    seen: set[tuple[NormalizedName, str]] = set()
    names: set[NormalizedName] = set()
    missing: set[str] = set()
    todo = [r for r in roots if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        wanted = {(name, "")} | {(name, canonicalize_name(e)) for e in req.extras}
        new = wanted - seen
        if not new:
            continue
        seen |= new
        names.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            missing.add(name)
            continue
        for text in requires:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for _, e in new):
                todo.append(dep)
    return names, missing


@PAIRS
def test_each_lock_starts_with_the_command_that_regenerates_it(source: str, lock: str) -> None:
    header = (ROOT / lock).read_text(encoding="utf-8").splitlines()[:2]
    assert header[1].strip().removeprefix("#").strip() == LOCK_COMMAND.format(
        source=source, lock=lock
    ), f"{lock} was not compiled with the command the tests expect: {header}"


@PAIRS
def test_every_line_of_a_lock_pins_one_version_and_carries_hashes(source: str, lock: str) -> None:
    pins = read_lock(lock)
    assert pins, f"{lock} locks nothing"
    bad = [p.line[:80] for p in pins if p.version is None or not p.hashes or p.others]
    assert bad == [], f"{lock}: lines without an exact pin and only sha256 hashes: {bad}"
    names = [p.name for p in pins]
    assert len(names) == len(set(names)), f"{lock} pins a package twice"


@PAIRS
def test_every_direct_requirement_is_locked_at_a_version_it_admits(source: str, lock: str) -> None:
    pins = locked_versions(lock)
    wrong = []
    for req in read_direct(source):
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            wrong.append(f"{req} locked at {version}")
    assert wrong == [], f"{lock} disagrees with {source}: {wrong}"


@PAIRS
def test_nothing_in_a_lock_is_unexplained_or_missing(source: str, lock: str) -> None:
    # What the direct requirements pull in, following the installed distributions' metadata
    # (the installed versions are the locked ones: see the test below).
    reachable, not_installed = installed_closure(read_direct(source))
    locked = set(locked_versions(lock))
    assert not_installed == set(), f"required but not installed: {sorted(not_installed)}"
    assert sorted(locked - reachable) == [], f"{lock} pins packages nothing in {source} needs"
    assert sorted(reachable - locked) == [], f"{lock} lacks packages {source} needs"


def test_the_dev_lock_holds_the_runtime_lock_exactly() -> None:
    dev = {p.name: p for p in read_lock(DEV[1])}
    differ = [
        f"{p.name}=={p.version} (dev: {dev[p.name].version if p.name in dev else 'absent'})"
        for p in read_lock(RUNTIME[1])
        if p.name not in dev or (dev[p.name].version, dev[p.name].hashes) != (p.version, p.hashes)
    ]
    assert differ == [], f"tests would not run what Azure installs: {differ}"


@PAIRS
def test_the_installed_environment_is_the_lock(source: str, lock: str) -> None:
    differ = []
    for name, version in locked_versions(lock).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            differ.append(f"{name}=={version} not installed")
            continue
        if Version(installed) != Version(version):
            differ.append(f"{name}=={version} installed as {installed}")
    assert differ == [], f"the environment is not {lock} (run scripts/setup.sh): {differ}"


def test_setup_installs_from_the_dev_lock_in_hash_checking_mode() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    installs = re.findall(r"pip\" install (.*)", setup)
    assert '--require-hashes -r "$ROOT/requirements-dev.txt"' in installs
    # The venv is rebuilt when either lock changes.
    stamp = re.search(r'want="\$\(cat (.*?) \| sha256sum', setup)
    assert stamp is not None
    assert set(stamp.group(1).split()) == {
        '"$ROOT/requirements.txt"',
        '"$ROOT/requirements-dev.txt"',
    }


def test_azure_mgmt_web_is_held_to_the_model_shape_arm_py_builds() -> None:
    # shared/scale/arm.py nests the PATCH fields under `properties`, as only the 11.x models
    # do; 10.x models are flattened and drop the nested ones (tests/scale/test_arm.py).
    (req,) = [r for r in read_direct(RUNTIME[0]) if canonicalize_name(r.name) == "azure-mgmt-web"]
    assert not req.specifier.contains("10.1.0")
    assert req.specifier.contains(locked_versions(RUNTIME[1])[canonicalize_name(req.name)])
