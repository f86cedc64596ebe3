"""docs/settings.md is generated from the settings' specs and must not drift from them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from app.settings import SECTIONS, SETTINGS
from tests.support.services import ROOT
from tools import settings_page as generator
from tools.settings_page import main, settings_page

PAGE = ROOT / "docs" / "settings.md"


def test_the_settings_page_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == settings_page(), (
        "docs/settings.md differs from the specs: run python -m tools.settings_page "
        "--out docs/settings.md"
    )


def test_every_setting_has_a_row_with_its_default_under_its_owner() -> None:
    page = settings_page()
    for spec in SETTINGS:
        row = next(line for line in page.splitlines() if line.startswith(f"| `{spec.name}` |"))
        if spec.default is None:
            assert "(required)" in row
        else:
            assert (f"`{spec.default}`" if spec.default else "(empty)") in row
    for section in SECTIONS:
        part = page.split(f"## {section.title}\n", 1)[1].split("\n## ", 1)[0]
        assert f"Specs in `{section.owner}`." in part
        assert all(f"| `{spec.name}` |" in part for spec in section.specs)


def test_a_changed_spec_changes_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    first = SECTIONS[0]
    changed = dataclasses.replace(
        first,
        specs=(
            dataclasses.replace(first.specs[0], default="redis://elsewhere:6379/0"),
            *first.specs[1:],
        ),
    )
    monkeypatch.setattr(generator, "SECTIONS", (changed, *SECTIONS[1:]))
    assert settings_page() != PAGE.read_text(encoding="utf-8")


def test_the_command_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "settings.md"
    assert main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == settings_page()
