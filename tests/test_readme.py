"""README is the front door: short, true to the code, and one click from every page."""

from __future__ import annotations

import re

from devhost.services import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
LINKS = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)


def test_readme_shows_the_two_commands_and_a_working_curl() -> None:
    assert "scripts/run" in README and "scripts/test" in README
    assert "curl -s -X POST http://localhost:7071/api/lookup" in README


def test_readme_is_a_front_door_of_about_ten_kilobytes() -> None:
    assert len(README.encode()) <= 12 * 1024


def test_every_page_in_docs_is_one_click_from_readme() -> None:
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    assert pages, "docs/ has no pages"
    assert pages <= set(LINKS), f"not linked from README: {sorted(pages - set(LINKS))}"


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    broken = []
    for page in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []
