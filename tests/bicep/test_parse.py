"""Every .bicep file parses with a real Bicep grammar, and its modules are local and present.

pycep-parser stands in for the Bicep CLI, which cannot run here; a test shows the grammar
rejects broken Bicep, so a file that parses is one Bicep would parse too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import bicep_model_check as mc
from tests.support.bicep import BICEP, BICEP_FILES, MAIN, MODULES, parsed


def test_the_deployment_has_a_main_template_and_local_modules() -> None:
    assert MAIN in BICEP_FILES
    names = {p.name for p in MODULES.glob("*.bicep")}
    assert {
        "function-app.bicep",
        "storage.bicep",
        "redis.bicep",
        "apim.bicep",
        "apim-api.bicep",
        "entra-app.bicep",
        "monitoring.bicep",
        "alerts.bicep",
        "app-access.bicep",
        "workbook.bicep",
    } <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(BICEP)))
def test_bicep_file_parses_with_the_bicep_grammar(path: Path) -> None:
    doc = parsed(path)
    assert doc["resources"] or doc["modules"], f"{path.name} declares nothing"


def test_the_grammar_rejects_broken_bicep() -> None:
    broken = "resource site 'Microsoft.Web/sites@2024-11-01' = {\n  name: 'x'\n  kind: 'it''s'\n}\n"
    with pytest.raises(Exception, match="Unexpected"):
        mc._parser().parse(text=broken)


def test_modules_are_local_and_exist() -> None:
    for path in BICEP_FILES:
        for call in (parsed(path).get("modules") or {}).values():
            assert call["type"] == "local", "registry modules cannot be restored offline"
            assert (path.parent / call["detail"]["path"]).is_file()
