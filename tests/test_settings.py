"""Settings are parsed once; a bad value names the setting at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.settings import DEPLOYED_SETTINGS, SETTINGS, load_settings
from shared.dip.keys import LOCAL_SECRET
from shared.settings import SettingsError

LOCAL = {"CustomerStorage": "UseDevelopmentStorage=true", "LOOKUP_KEY_SECRET": LOCAL_SECRET}


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


def test_the_lookup_key_secret_is_required() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"CustomerStorage": "UseDevelopmentStorage=true"})
    assert caught.value.name == "LOOKUP_KEY_SECRET"
    assert "required" in str(caught.value)


@pytest.mark.parametrize("name", ["LOOKUP_KEY_SECRET", "LOOKUP_KEY_SECRET_PREVIOUS"])
@pytest.mark.parametrize(
    "value",
    ["too-short-a-secret", "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/k/)"],
)
def test_a_malformed_secret_names_its_setting_and_never_quotes_it(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**LOCAL, name: value})
    assert caught.value.name == name
    assert value not in str(caught.value)


def test_the_previous_secret_is_optional_and_read_when_set() -> None:
    assert load_settings(LOCAL).dip.lookup_key_secret_previous is None
    previous = "p" * 40
    rotating = load_settings({**LOCAL, "LOOKUP_KEY_SECRET_PREVIOUS": previous})
    assert rotating.dip.lookup_key_secret_previous == previous.encode()


def test_azure_refuses_the_published_local_secret() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**LOCAL, "WEBSITE_SITE_NAME": "dipguard-prod"})
    assert caught.value.name == "LOOKUP_KEY_SECRET"
    own = load_settings(
        {
            **LOCAL,
            "WEBSITE_SITE_NAME": "dipguard-prod",
            "LOOKUP_KEY_SECRET": "s" * 44,
            "DIPGUARD_FUNCTIONS": "lookup",
        }
    )
    assert own.dip.lookup_key_secret == b"s" * 44


def test_the_secret_is_not_in_the_settings_repr() -> None:
    assert LOCAL_SECRET not in repr(load_settings(LOCAL))


def test_missing_storage_names_customer_storage() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    assert caught.value.name == "CustomerStorage"


def test_identity_based_storage_needs_an_https_uri() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"CustomerStorage__tableServiceUri": "ftp://x"})
    assert caught.value.name == "CustomerStorage__tableServiceUri"
    ok = load_settings(
        {
            "CustomerStorage__tableServiceUri": "https://acct.table.core.windows.net",
            "LOOKUP_KEY_SECRET": "s" * 44,
        }
    )
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


REAL_ACCOUNT = (
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;"
    "TableEndpoint=https://acct.table.core.windows.net/"
)


@pytest.mark.parametrize(
    "storage",
    [
        {"CustomerStorage__tableServiceUri": "https://acct.table.core.windows.net"},
        {"CustomerStorage": REAL_ACCOUNT},
    ],
    ids=["endpoint", "connection string"],
)
@pytest.mark.parametrize("name", ["LOOKUP_KEY_SECRET", "LOOKUP_KEY_SECRET_PREVIOUS"])
def test_the_published_local_secret_is_refused_for_real_storage(
    storage: dict[str, str], name: str
) -> None:
    # The loader reads local.settings.json for what the environment leaves unset: it must
    # not hash a real table's keys with the secret the repository publishes.
    env = {**storage, "LOOKUP_KEY_SECRET": "s" * 44, name: LOCAL_SECRET}
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert caught.value.name == name


@pytest.mark.parametrize(
    "conn",
    [
        "UseDevelopmentStorage=true",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;",
    ],
)
def test_the_published_local_secret_serves_a_local_emulator(conn: str) -> None:
    settings = load_settings({"CustomerStorage": conn, "LOOKUP_KEY_SECRET": LOCAL_SECRET})
    assert settings.dip.lookup_key_secret == LOCAL_SECRET.encode()


def test_in_azure_an_app_must_say_which_functions_it_serves() -> None:
    azure = {**LOCAL, "WEBSITE_SITE_NAME": "func-lookup", "LOOKUP_KEY_SECRET": "s" * 44}
    with pytest.raises(SettingsError) as caught:
        load_settings(azure)
    assert caught.value.name == "DIPGUARD_FUNCTIONS"
    assert load_settings({**azure, "DIPGUARD_FUNCTIONS": "lookup"}).functions == "lookup"
    # Locally the default serves every function from one host.
    assert load_settings(LOCAL).functions == "all"
