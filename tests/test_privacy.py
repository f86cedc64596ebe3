"""docs/privacy.md's table of stores says what the code does: its names, forms and lifetimes
are held to the code's constants and the settings' defaults."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import phonenumbers
import pytest
import redis.asyncio as aioredis
from azure.data.tables.aio import TableServiceClient

from app.runtime import Runtime
from app.settings import SETTINGS, load_settings
from shared.dip.cache import ANSWER_PREFIX
from shared.dip.contract import DipRequest
from shared.dip.keys import LookupKeys
from shared.dip.phone import normalize_number
from shared.dip.readmodel import bloom_key
from tests.support.keys import KEYS
from tests.support.services import Azurite

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "privacy.md").read_text(encoding="utf-8")
DEFAULTS = {spec.name: spec.default for spec in SETTINGS}
CONV = "43436e96-5c19-4c52-b951-4ea05d9a9af7"


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


def number_forms(number: str) -> set[str]:
    """The ways a dialled number can be written down: E.164, its digits, its national
    digits and percent-encoded."""
    parsed = phonenumbers.parse(number)
    national = str(parsed.national_number)
    digits = number.lstrip("+")
    return {number, digits, national, quote(number, safe="")}


async def test_after_the_demo_load_and_dips_no_store_holds_a_dialled_number(
    base_env: dict[str, str], azurite: Azurite
) -> None:
    """What scripts/run does (the demo load), a warm, dips by number (a customer and a
    stranger) and by id: then no Redis key or value and no table entity holds a number."""
    env = {**base_env, "REDIS_URL": base_env["REDIS_URL"].rsplit("/", 1)[0] + "/14"}
    async with aioredis.Redis.from_url(env["REDIS_URL"]) as client:
        await client.flushdb()
    loaded = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tools.load", "demo/customers.csv", "--no-progress"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    with (ROOT / "demo" / "customers.csv").open(encoding="utf-8") as handle:
        phones = [p for row in csv.DictReader(handle) for p in row["phone"].split(";") if p]
    numbers = [normalize_number(p, "US") for p in phones]
    dialled = [n for n in numbers if n is not None] + ["+13179990042"]
    assert len(dialled) > 3
    rt = Runtime(load_settings(env))
    try:
        assert (await rt.warm().run()).completed
        for number in dialled:
            await rt.dips.answer(DipRequest(CONV, number, None, None))
        await rt.dips.answer(DipRequest(CONV, None, "C-1001", None))
    finally:
        await rt.dips.drain()
        await rt.close()

    stored: list[str] = []
    async with aioredis.Redis.from_url(env["REDIS_URL"]) as client:
        async for key in client.scan_iter(count=1000):
            stored.append(key.decode(errors="replace"))
            if await client.type(key) == b"string":
                value = await client.get(key)
                stored.append(value.decode(errors="replace") if isinstance(value, bytes) else "")
    assert any(k.startswith(ANSWER_PREFIX) for k in stored)
    async with TableServiceClient.from_connection_string(azurite.connection_string) as service:
        async for table in service.list_tables():
            async for entity in service.get_table_client(table.name).list_entities():
                stored.append(json.dumps(dict(entity), default=str))
    haystack = "\n".join(stored)
    found = sorted(form for n in dialled for form in number_forms(n) if form in haystack)
    assert found == []
    # The scan saw what the stores hold: the customers' keys, as keyed hashes.
    assert KEYS.key("ani", dialled[0]).digest in haystack
