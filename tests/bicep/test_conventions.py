"""The Azure Verified Modules conventions the Bicep follows.

Every parameter is described as Required. or Optional., every file and output is
described, every module outputs its name and resource ID, and symbolic names are readable.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.bicep import BICEP, BICEP_FILES, MODULES, decorators, parsed


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(BICEP)))
def test_every_parameter_is_described_as_required_or_optional(path: Path) -> None:
    for name, param in (parsed(path).get("parameters") or {}).items():
        description = decorators(param).get("description", "")
        has_default = param["default"] is not None
        expected = "Optional." if has_default else "Required."
        assert description.startswith(expected), f"{path.name}: param {name}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(BICEP)))
def test_every_output_and_file_is_described(path: Path) -> None:
    doc = parsed(path)
    assert {"name", "description"} <= set(doc["metadata"])
    for name, output in (doc.get("outputs") or {}).items():
        assert decorators(output).get("description"), f"{path.name}: output {name}"


@pytest.mark.parametrize("path", sorted(MODULES.glob("*.bicep")), ids=lambda p: p.name)
def test_every_module_outputs_name_and_resource_id(path: Path) -> None:
    outputs = parsed(path)["outputs"]
    assert outputs["name"]["type"] == "string"
    assert outputs["resourceId"]["type"] == "string"


def test_resource_symbolic_names_are_readable() -> None:
    for path in BICEP_FILES:
        for symbol in parsed(path)["resources"]:
            assert re.fullmatch(r"[a-z][A-Za-z]+(_[a-z][A-Za-z]+)*", symbol), symbol
            assert len(symbol) >= 4, symbol
