"""The composition root's settings: the core's and both wings' specs, combined once."""

from __future__ import annotations

import dataclasses

import pytest

from app.settings import APP_SETTINGS, SECTIONS, SETTINGS, Settings, load_settings
from shared.dip.settings import DIP_SETTINGS, DipSettings
from shared.scale.settings import SCALE_SETTINGS, ScaleSettings
from shared.settings import CORE_SETTINGS, CoreSettings, SettingsError
from tests.support.keys import SECRET

LOCAL = {"CustomerStorage": "UseDevelopmentStorage=true", "LOOKUP_KEY_SECRET": SECRET}


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_each_part_has_a_field_for_each_of_its_owners_specs_and_no_other() -> None:
    assert _fields(CoreSettings) == {s.name.lower() for s in CORE_SETTINGS} | {
        "storage_connection_string",
        "storage_table_uri",
    }
    assert _fields(DipSettings) == {s.name.lower() for s in DIP_SETTINGS}
    # WEBSITE_AUTH_ENABLED is App Service's, read beside the specs.
    assert _fields(ScaleSettings) == {s.name.lower() for s in SCALE_SETTINGS} | {"app_service_auth"}


def test_every_spec_has_one_owner() -> None:
    names = [spec.name for spec in SETTINGS]
    assert len(names) == len(set(names))
    assert [section.specs for section in SECTIONS] == [
        APP_SETTINGS,
        CORE_SETTINGS,
        DIP_SETTINGS,
        SCALE_SETTINGS,
    ]


def test_the_settings_are_the_three_parts() -> None:
    settings = load_settings(LOCAL)
    assert isinstance(settings, Settings)
    assert isinstance(settings.core, CoreSettings)
    assert isinstance(settings.dip, DipSettings)
    assert isinstance(settings.scale, ScaleSettings)


# --- DIPGUARD_FUNCTIONS: which functions this app serves ---------------------------------


@pytest.mark.parametrize("value", ["lookup", "operator", "all", " Operator "])
def test_the_function_set_is_lookup_operator_or_all(value: str) -> None:
    assert load_settings({**LOCAL, "DIPGUARD_FUNCTIONS": value}).functions == value.strip().lower()


def test_one_host_serves_every_function_by_default() -> None:
    assert load_settings(LOCAL).functions == "all"


@pytest.mark.parametrize("value", ["both", "", "lookup,operator"])
def test_an_unknown_function_set_names_the_setting(value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**LOCAL, "DIPGUARD_FUNCTIONS": value})
    assert caught.value.name == "DIPGUARD_FUNCTIONS"
    assert "lookup, operator, all" in str(caught.value)


# --- the operator app scales the lookup app -----------------------------------------------

# In Azure the published local lookup key secret is refused; any other long one will do.
IN_AZURE = {
    **LOCAL,
    "LOOKUP_KEY_SECRET": "a-deployed-secret-" + "x" * 32,
    "WEBSITE_SITE_NAME": "func-dipguard-ops",
    "DIPGUARD_FUNCTIONS": "lookup",
}


def test_the_operator_app_in_azure_needs_the_lookup_app_to_scale() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**IN_AZURE, "DIPGUARD_FUNCTIONS": "operator"})
    assert caught.value.name == "SCALE_SITE_NAME"
    assert "lookup app" in str(caught.value)


def test_the_operator_app_may_not_name_itself_as_the_app_to_scale() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {**IN_AZURE, "DIPGUARD_FUNCTIONS": "operator", "SCALE_SITE_NAME": "FUNC-dipguard-ops"}
        )
    assert caught.value.name == "SCALE_SITE_NAME"


def test_the_operator_app_scales_the_site_it_is_given() -> None:
    settings = load_settings(
        {**IN_AZURE, "DIPGUARD_FUNCTIONS": "operator", "SCALE_SITE_NAME": "func-dipguard"}
    )
    assert settings.scale.scale_site_name == "func-dipguard"


@pytest.mark.parametrize("functions", ["lookup", "all"])
def test_other_apps_and_the_dev_host_scale_their_own_site_by_default(functions: str) -> None:
    # The lookup app runs no scale timer; one host serving everything scales itself.
    for env in (LOCAL, IN_AZURE):
        settings = load_settings({**env, "DIPGUARD_FUNCTIONS": functions})
        assert settings.scale.scale_site_name == ""
    assert load_settings({**LOCAL, "DIPGUARD_FUNCTIONS": "operator"}).functions == "operator"


# --- whom the surge switch believes ------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "trusted"),
    [
        ({}, False),
        ({"WEBSITE_AUTH_ENABLED": "True"}, True),
        ({"WEBSITE_AUTH_ENABLED": "true"}, True),
        ({"WEBSITE_AUTH_ENABLED": "False"}, False),
        ({"SURGE_TRUST_LOCAL_PRINCIPAL": "true"}, True),
    ],
)
def test_principal_headers_are_believed_only_behind_app_service_authentication_or_locally(
    env: dict[str, str], trusted: bool
) -> None:
    assert load_settings({**LOCAL, **env}).scale.principal_trusted is trusted


def test_the_local_principal_setting_is_refused_in_azure() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({**IN_AZURE, "SURGE_TRUST_LOCAL_PRINCIPAL": "true"})
    assert caught.value.name == "SURGE_TRUST_LOCAL_PRINCIPAL"
    assert "WEBSITE_SITE_NAME" in str(caught.value)
    # Off, it is no obstacle.
    load_settings({**IN_AZURE, "SURGE_TRUST_LOCAL_PRINCIPAL": "false"})
