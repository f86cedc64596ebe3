"""README is the first thing users read: it must stay true to the code."""

from __future__ import annotations

import re

from devhost.services import ROOT
from shared.settings import SETTINGS

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_setting_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `([A-Za-z_]+)` \| ([^|]+) \|", README, re.MULTILINE))
    for spec in SETTINGS:
        assert spec.name in rows, f"README's settings table lacks {spec.name}"
        if spec.default:
            assert f"`{spec.default}`" in rows[spec.name], spec.name
    assert "CustomerStorage__tableServiceUri" in rows


def test_readme_shows_the_two_commands_and_a_working_curl() -> None:
    assert "scripts/run" in README and "scripts/test" in README
    assert "curl -s -X POST http://localhost:7071/api/lookup" in README
