"""docs/privacy.md's table of stores says what the code does: its names, forms and lifetimes
are held to the code's constants and the settings' defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.settings import SETTINGS
from shared.dip.cache import ANSWER_PREFIX
from shared.dip.keys import LookupKeys
from shared.dip.readmodel import bloom_key
from tests.support.keys import KEYS

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "privacy.md").read_text(encoding="utf-8")
DEFAULTS = {spec.name: spec.default for spec in SETTINGS}


def table_rows() -> list[list[str]]:
    section = PAGE.split("## Every store\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    header, *rows = lines
    assert header.split("|")[1:-1] == [
        " Store ",
        " Personal data it holds ",
        " Form ",
        " Kept for ",
    ]
    # A row's cells, split on the pipes that separate cells (not those inside `p|…`).
    return [
        [cell.strip() for cell in re.split(r"(?<!`p)(?<!`c)(?<!:p)(?<!:c)\|", r)[1:-1]]
        for r in rows
    ]


def test_the_table_has_a_row_for_every_redis_key_family_the_code_writes() -> None:
    stores = " ".join(row[0] for row in table_rows())
    assert f"`{ANSWER_PREFIX}p|…`" in stores and f"`{ANSWER_PREFIX}c|…`" in stores
    bloom_prefix = bloom_key("g", "b00").removesuffix("g:b00")
    assert f"`{bloom_prefix}…`" in stores


@pytest.mark.parametrize("row", table_rows(), ids=lambda row: row[0][:40])
def test_each_lifetime_names_settings_whose_defaults_it_quotes(row: list[str]) -> None:
    kept = row[3]
    named = re.findall(r"`([A-Z][A-Z0-9_]+)`", kept)
    quoted = re.search(r"\(([\d + ]+) s by default\)", kept)
    if not named:
        assert quoted is None
        return
    assert all(name in DEFAULTS for name in named), named
    assert quoted is not None, kept
    figures = [int(n) for n in quoted[1].split("+")]
    assert figures == [int(DEFAULTS[name] or -1) for name in named]


def test_the_key_form_the_page_states_is_what_the_stores_get() -> None:
    assert "truncated to 128 bits and written as 22 characters of URL-safe base64" in PAGE
    key = KEYS.key("ani", "+13175550116")
    assert re.fullmatch(r"p\|[A-Za-z0-9_-]{22}", key.cache_key)
    assert LookupKeys(b"x" * 32).key("customerId", "C-1").cache_key.startswith("c|")


@pytest.mark.parametrize(("param_file", "days"), [("dev.bicepparam", 30), ("prod.bicepparam", 90)])
def test_the_log_retention_the_page_states_is_what_bicep_deploys(
    param_file: str, days: int
) -> None:
    text = (ROOT / "bicep" / param_file).read_text(encoding="utf-8")
    assert re.search(rf"^param logRetentionDays = {days}$", text, re.MULTILINE)
    env = param_file.split(".")[0]
    assert f"{days} in {env}" in PAGE or f"{days} days in {env}" in PAGE


def test_readme_links_the_privacy_page() -> None:
    assert "(docs/privacy.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
