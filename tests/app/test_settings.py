"""The composition root's settings: the core's and both wings' specs, combined once."""

from __future__ import annotations

import dataclasses

from app.settings import SECTIONS, SETTINGS, Settings, load_settings
from shared.dip.settings import DIP_SETTINGS, DipSettings
from shared.scale.settings import SCALE_SETTINGS, ScaleSettings
from shared.settings import CORE_SETTINGS, CoreSettings
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
    assert _fields(ScaleSettings) == {s.name.lower() for s in SCALE_SETTINGS}


def test_every_spec_has_one_owner() -> None:
    names = [spec.name for spec in SETTINGS]
    assert len(names) == len(set(names))
    assert [section.specs for section in SECTIONS] == [CORE_SETTINGS, DIP_SETTINGS, SCALE_SETTINGS]


def test_the_settings_are_the_three_parts() -> None:
    settings = load_settings(LOCAL)
    assert isinstance(settings, Settings)
    assert isinstance(settings.core, CoreSettings)
    assert isinstance(settings.dip, DipSettings)
    assert isinstance(settings.scale, ScaleSettings)
