"""README is the front door: short, true to the code, and one click from every page."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys

from app.runtime import Runtime
from app.settings import load_settings
from shared.dip.contract import parse_dip_request
from tests.support.bicep import COMMAND_LINE_VALUES
from tests.support.services import ROOT

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


async def test_readmes_curl_answers_as_documented_after_the_demo_load(
    base_env: dict[str, str],
) -> None:
    """What scripts/run does, then README's request: the answer README shows, source included."""
    request = re.search(r"-d '(\{.*?\})'", README)
    answer = re.search(r"```json\n(\{.*?\})\n```", README)
    assert request and answer, "README lost its curl example or its answer"
    # A Redis database of its own: the demo's answers must not reach other tests' dips.
    base_env = {**base_env, "REDIS_URL": base_env["REDIS_URL"].rsplit("/", 1)[0] + "/15"}
    loaded = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tools.load", "demo/customers.csv", "--no-progress"],
        cwd=ROOT,
        env={**os.environ, **base_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    rt = Runtime(load_settings(base_env))
    try:
        outcome = await rt.dips.answer(parse_dip_request(request[1].encode(), "application/json"))
    finally:
        await rt.dips.drain()
        await rt.close()
    assert outcome.answer.body() == json.loads(answer[1])


def test_readmes_production_deploy_passes_what_the_bicep_tests_add_to_prod_bicepparam() -> None:
    # tests/bicep judge production as README's command deploys it; the two must not drift.
    command = README[README.index("az deployment group create") :].split("\n```", 1)[0]
    assert "bicep/prod.bicepparam" in command
    for name, value in COMMAND_LINE_VALUES.items():
        assert f'{name}="{json.dumps(value).replace(chr(34), chr(39))}"' in command, name
