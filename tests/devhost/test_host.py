"""The dev host's routes and settings: the paths a route template serves, and
local.settings.json applied under the environment."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from devhost.host import aiohttp_paths


def test_optional_route_parameters_serve_both_paths() -> None:
    assert aiohttp_paths("api", "surge/{id?}") == ["/api/surge/{id}", "/api/surge"]
    assert aiohttp_paths("", "items/{n:int}") == ["/items/{n}"]


def test_local_settings_do_not_override_the_environment(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devhost.host import load_local_settings

    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"Values": {"DIPGUARD_T1": "file", "DIPGUARD_T2": "file"}}))
    monkeypatch.setenv("DIPGUARD_T1", "env")
    monkeypatch.delenv("DIPGUARD_T2", raising=False)
    applied = load_local_settings(settings_file)
    assert os.environ["DIPGUARD_T1"] == "env"
    assert os.environ["DIPGUARD_T2"] == "file"
    assert applied == {"DIPGUARD_T2": "file"}
    monkeypatch.delenv("DIPGUARD_T2")
