"""Settings are parsed once; a bad value names the setting at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.settings import DEPLOYED_SETTINGS, SETTINGS, load_settings
from shared.settings import SettingsError

LOCAL = {"CustomerStorage": "UseDevelopmentStorage=true"}


def test_defaults_match_the_documented_budget() -> None:
    settings = load_settings(LOCAL)
    assert settings.dip.max_db_qps == 200
    assert settings.dip.cache_ttl_seconds == 60
    assert settings.dip.stale_ttl_seconds == 86400
    assert settings.dip.handler_deadline_ms == 2500
    assert settings.dip.degraded_tier == "Standard"
    assert settings.dip.default_region == "US"
    assert settings.core.storage_connection_string == "UseDevelopmentStorage=true"
    assert settings.core.storage_table_uri is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_DB_QPS", "abc"),
        ("MAX_DB_QPS", "0"),
        ("CACHE_TTL_SECONDS", "-5"),
        ("HANDLER_DEADLINE_MS", "5000"),
        ("REDIS_URL", "http://localhost:6379"),
        ("DEFAULT_REGION", "Atlantis"),
        ("CUSTOMER_TABLE", "no-dashes"),
        ("SCALE_DRY_RUN", "maybe"),
        ("VALVE_MODE", "fixed"),
    ],
)
def test_an_invalid_value_names_its_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**LOCAL, name: value})
    assert caught.value.name == name
    assert name in str(caught.value)


def test_missing_storage_names_customer_storage() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    assert caught.value.name == "CustomerStorage"


def test_identity_based_storage_needs_an_https_uri() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"CustomerStorage__tableServiceUri": "ftp://x"})
    assert caught.value.name == "CustomerStorage__tableServiceUri"
    ok = load_settings({"CustomerStorage__tableServiceUri": "https://acct.table.core.windows.net"})
    assert ok.core.storage_table_uri == "https://acct.table.core.windows.net"
    assert ok.core.storage_connection_string is None


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"LOCAL_DB_QPS": "500", "MAX_DB_QPS": "100"}, "LOCAL_DB_QPS"),
        ({"CACHE_TTL_SECONDS": "600", "STALE_TTL_SECONDS": "60"}, "STALE_TTL_SECONDS"),
        ({"DB_TIMEOUT_MS": "2500", "HANDLER_DEADLINE_MS": "2000"}, "DB_TIMEOUT_MS"),
    ],
)
def test_inconsistent_settings_name_the_one_to_change(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**LOCAL, **env})
    assert caught.value.name == name


def test_local_settings_json_holds_only_emulator_values() -> None:
    values = json.loads(Path("local.settings.json").read_text(encoding="utf-8"))["Values"]
    load_settings(values)  # the committed file is itself a valid configuration
    for name, value in values.items():
        lowered = value.lower()
        assert "accountkey=" not in lowered, name
        assert "password" not in lowered, name
        assert not lowered.startswith("rediss://"), name


def test_every_setting_is_documented_and_deployed_names_are_unique() -> None:
    assert all(spec.doc for spec in SETTINGS)
    assert len(set(DEPLOYED_SETTINGS)) == len(DEPLOYED_SETTINGS)
    assert "CustomerStorage__tableServiceUri" in DEPLOYED_SETTINGS
