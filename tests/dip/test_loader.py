"""The CRM loader: good rows load, bad rows are reported by line and kept aside."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from azure.data.tables import TableClient

from devhost.services import ROOT, Azurite
from shared.dip.customers import LookupKey, table_keys
from shared.dip.loader import Rejected, parse_rows

GOOD = """customerId,phone,tier,isVip,preferredLanguage
C-1,+13175550116,Gold,true,en-US
C-2,tel:+1 317-555-0117;(317) 555-0118,Silver,no,
C-3,,Platinum,1,fr-CA
"""

MIXED = """customerId,phone,tier,isVip
C-1,+13175550116,Gold,true
bad id,+13175550120,Gold,true
C-4,not-a-phone,Gold,false
C-5,+13175550121,,false
C-6,+13175550122,Gold,perhaps
C-7,+13175550123,Bronze,false,extra,fields
C-8,+13175550124,Bronze,false
"""


def run_loader(path: Path, azurite: Azurite, table: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CustomerStorage": azurite.connection_string, "CUSTOMER_TABLE": table}
    return subprocess.run(
        [sys.executable, "-m", "shared.dip.loader", str(path), "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def entity(azurite: Azurite, table: str, key: LookupKey) -> dict[str, object]:
    with TableClient.from_connection_string(azurite.connection_string, table) as client:
        pk, rk = table_keys(key)
        return dict(client.get_entity(pk, rk))


def test_rows_validate_with_editor_line_numbers() -> None:
    items = list(parse_rows(MIXED.splitlines(keepends=True), "US"))
    rejected = {r.line: r.reason for r in items if isinstance(r, Rejected)}
    assert sorted(rejected) == [3, 4, 5, 6, 7]
    assert "customerId" in rejected[3]
    assert "not-a-phone" in rejected[4]
    assert "tier" in rejected[5]
    assert "isVip" in rejected[6]
    assert "too many fields" in rejected[7]


def test_a_header_without_required_columns_is_an_error() -> None:
    with pytest.raises(ValueError, match="tier"):
        list(parse_rows(["customerId,phone,isVip\n", "C-1,,true\n"], "US"))


def test_a_clean_file_loads_every_key_and_exits_0(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(GOOD, encoding="utf-8")
    result = run_loader(path, azurite, table_name)
    assert result.returncode == 0, result.stderr
    assert "loaded 3 customers (6 entities)" in result.stderr
    assert entity(azurite, table_name, LookupKey("ani", "+13175550118"))["CustomerId"] == "C-2"
    assert entity(azurite, table_name, LookupKey("customerId", "C-3"))["Tier"] == "Platinum"
    assert not path.with_suffix(".rejects.csv").exists()


def test_bad_rows_are_reported_and_set_aside_while_good_rows_load(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(MIXED, encoding="utf-8")
    result = run_loader(path, azurite, table_name)
    assert result.returncode == 2
    for line in (3, 4, 5, 6, 7):
        assert f"crm.csv:{line}: rejected" in result.stderr
    with path.with_suffix(".rejects.csv").open(encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [r["line"] for r in rejects] == ["3", "4", "5", "6", "7"]
    assert rejects[1]["phone"] == "not-a-phone"
    assert entity(azurite, table_name, LookupKey("customerId", "C-8"))["Tier"] == "Bronze"
    assert entity(azurite, table_name, LookupKey("ani", "+13175550116"))["CustomerId"] == "C-1"


def test_loading_twice_is_idempotent_and_updates_in_place(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(GOOD, encoding="utf-8")
    assert run_loader(path, azurite, table_name).returncode == 0
    path.write_text(
        GOOD.replace("C-1,+13175550116,Gold", "C-1,+13175550116,Diamond"), encoding="utf-8"
    )
    assert run_loader(path, azurite, table_name).returncode == 0
    with TableClient.from_connection_string(azurite.connection_string, table_name) as client:
        assert len(list(client.list_entities())) == 6
    assert entity(azurite, table_name, LookupKey("ani", "+13175550116"))["Tier"] == "Diamond"


def test_a_missing_file_exits_1(tmp_path: Path, azurite: Azurite, table_name: str) -> None:
    result = run_loader(tmp_path / "nope.csv", azurite, table_name)
    assert result.returncode == 1 and "does not exist" in result.stderr
