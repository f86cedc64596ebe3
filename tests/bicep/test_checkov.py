"""checkov finds nothing in bicep/ it is not told, inline and with a reason, to skip.

Every skip comment carries a reason and is still needed. checkov honours skip comments only
inside resources, so a parameter check it fails counts as skipped when the parameter carries
such a comment. checkov runs from .venv-checkov, or from CHECKOV_BIN.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.bicep import BICEP, BICEP_FILES, ROOT


def _checkov_bin() -> str:
    configured = os.environ.get("CHECKOV_BIN")
    candidates = [configured] if configured else [str(ROOT / ".venv-checkov" / "bin" / "checkov")]
    for candidate in candidates:
        if candidate and (Path(candidate).is_file() or shutil.which(candidate)):
            return candidate
    pytest.fail(
        "checkov not found: create it with `python3 -m venv .venv-checkov && "
        ".venv-checkov/bin/pip install checkov` or set CHECKOV_BIN"
    )


GRAPH_FILES = [p for p in BICEP_FILES if re.search(r"^extension\s", p.read_text(), re.M)]


@cache
def _checkov_report() -> dict[str, Any]:
    result = subprocess.run(
        [
            _checkov_bin(),
            "--directory",
            str(BICEP),
            "--framework",
            "bicep",
            "--output",
            "json",
            "--skip-download",
            # checkov's Bicep parser predates `extension` declarations, and it has no checks
            # for Microsoft Graph resources: the files that use the Graph extension are left
            # to the type check (tests/bicep/test_types.py) and tests/bicep/test_data_and_identity.
            *(arg for path in GRAPH_FILES for arg in ("--skip-path", re.escape(path.name))),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-2000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["check_type"] == "bicep"
    return report


_SKIP = re.compile(r"//\s*checkov:skip=(CKV2?_[A-Z]+_\d+)(:?)(.*)$")
_PARAM = re.compile(r"^param\s+(\w+)\s")


def _param_skips() -> set[tuple[str, str, str]]:
    """(check, file, parameter) for each skip comment among a parameter's decorators.

    checkov honours skip comments inside resources only; a parameter check it reports as
    failed counts as skipped here when the parameter carries such a comment.
    """
    found: set[tuple[str, str, str]] = set()
    for path in BICEP_FILES:
        pending: list[str] = []
        for line in path.read_text().splitlines():
            text = line.strip()
            match, param = _SKIP.search(text), _PARAM.match(text)
            if match:
                pending.append(match.group(1))
            elif param:
                found.update((check, path.name, param.group(1)) for check in pending)
                pending = []
            elif not text.startswith(("@", "//")):
                pending = []
    return found


def _skipped_param_failure(check: Mapping[str, Any]) -> bool:
    param = str(check["resource"]).rsplit(".", 1)[-1]
    return (check["check_id"], Path(check["file_path"]).name, param) in _param_skips()


def test_checkov_finds_no_failed_checks_in_the_bicep() -> None:
    report = _checkov_report()
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['file_path']} {c['resource']}"
        for c in report["results"]["failed_checks"]
        if not _skipped_param_failure(c)
    ]
    assert failed == []
    assert summary["parsing_errors"] == 0, "checkov could not parse some .bicep files"
    assert summary["passed"] >= 20


def test_every_checkov_skip_is_justified_inline_and_still_needed() -> None:
    inline: set[tuple[str, str]] = set()
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            match = _SKIP.search(line)
            if match:
                check, colon, reason = match.groups()
                assert colon and len(reason.strip()) >= 30, f"{path.name}: {check} needs a reason"
                inline.add((check, path.name))
    results = _checkov_report()["results"]
    used = {(c["check_id"], Path(c["file_path"]).name) for c in results["skipped_checks"]}
    used |= {
        (c["check_id"], Path(c["file_path"]).name)
        for c in results["failed_checks"]
        if _skipped_param_failure(c)
    }
    assert inline == used


def test_only_the_graph_extension_modules_are_kept_from_checkov() -> None:
    # Every ARM resource stays under checkov; the files it skips declare Graph resources only.
    assert sorted(p.name for p in GRAPH_FILES) == [
        "entra-app.bicep",
        "entra-lookup-api.bicep",
        "entra-role-assignments.bicep",
    ]
    graph = {
        "Microsoft.Graph/applications",
        "Microsoft.Graph/servicePrincipals",
        "Microsoft.Graph/appRoleAssignedTo",
    }
    for path in GRAPH_FILES:
        types = set(re.findall(r"^resource \w+ '([^@']+)@", path.read_text(), re.M))
        assert types and types <= graph, path.name
