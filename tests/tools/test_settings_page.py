"""docs/settings.md is generated from the SETTINGS specs and must not drift from them."""

from __future__ import annotations

import dataclasses

import pytest

from shared import settings
from shared.settings import SETTINGS, settings_page
from tests.support.services import ROOT

PAGE = ROOT / "docs" / "settings.md"


def test_the_settings_page_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == settings_page(), (
        "docs/settings.md differs from the specs: run python -m shared.settings "
        "--out docs/settings.md"
    )


def test_every_setting_has_a_row_with_its_default() -> None:
    page = settings_page()
    for spec in SETTINGS:
        row = next(line for line in page.splitlines() if line.startswith(f"| `{spec.name}` |"))
        assert (f"`{spec.default}`" if spec.default else "(empty)") in row


def test_a_changed_spec_changes_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = (dataclasses.replace(SETTINGS[0], default="redis://elsewhere:6379/0"), *SETTINGS[1:])
    monkeypatch.setattr(settings, "SETTINGS", changed)
    assert settings_page() != PAGE.read_text(encoding="utf-8")


def test_the_command_writes_the_page(tmp_path: object) -> None:
    from pathlib import Path

    out = Path(str(tmp_path)) / "settings.md"
    assert settings.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == settings_page()
