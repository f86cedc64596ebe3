"""The loader's rows: good rows parse, bad rows are rejected by the line an editor shows,
whatever a hostile file holds; the rejects file runs nothing in a spreadsheet and is its
owner's only; a transaction that fails is retried, and then names what it left unwritten."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceResponseError
from azure.data.tables import TransactionOperation
from azure.data.tables.aio import TableClient
from redis import asyncio as aioredis
from redis import exceptions as redis_exceptions

from shared.dip import loader
from shared.dip.breaker import Breaker
from shared.dip.cache import ANSWER_PREFIX, RedisCache
from shared.dip.customers import CustomerRecord, table_keys
from shared.dip.keys import LookupKey
from shared.dip.loader import (
    FIELD_LIMIT,
    Customer,
    LoadReport,
    ReadFailed,
    Rejected,
    Unwritten,
    load_file,
    load_rows,
    parse_rows,
    write_rejects,
)
from shared.dip.readmodel import ReadModelWriter
from tests.support.customers import MIXED
from tests.support.keys import KEYS
from tests.support.services import Azurite


def test_rows_validate_with_editor_line_numbers() -> None:
    items = list(parse_rows(MIXED.splitlines(keepends=True), "US"))
    rejected = {r.line: r.reason for r in items if isinstance(r, Rejected)}
    assert sorted(rejected) == [3, 4, 5, 6, 7]
    assert "customerId" in rejected[3]
    # A reason names the field and never quotes its value: it reaches terminals and logs.
    assert "phone" in rejected[4] and "not-a-phone" not in rejected[4]
    assert "perhaps" not in rejected[6]
    assert "tier" in rejected[5]
    assert "isVip" in rejected[6]
    assert "too many fields" in rejected[7]


def test_a_header_without_required_columns_is_an_error() -> None:
    with pytest.raises(ValueError, match="tier"):
        list(parse_rows(["customerId,phone,isVip\n", "C-1,,true\n"], "US"))


# --- hostile files ---------------------------------------------------------------------------

HEADER = "customerId,phone,tier,isVip,preferredLanguage\n"
BEFORE = "C-1,+13175550116,Gold,true,en-US\n"
AFTER = "C-9,+13175550119,Bronze,false,\n"


def parse(*rows: str) -> list[Customer | Rejected]:
    return list(parse_rows([HEADER, BEFORE, *rows, AFTER], "US"))


def loaded_ids(items: list[Customer | Rejected]) -> list[tuple[int, str]]:
    return [(i.line, i.record.customer_id) for i in items if isinstance(i, Customer)]


def rejected_at(items: list[Customer | Rejected]) -> dict[int, str]:
    return {r.line: r.reason for r in items if isinstance(r, Rejected)}


def test_a_field_over_the_limit_is_rejected_by_its_line_and_the_rows_after_it_still_parse() -> None:
    items = parse(f"C-2,+13175550117,{'G' * (FIELD_LIMIT + 1)},true,\n", "C-3,,Gold,no,\n")
    assert rejected_at(items) == {3: f"a field is longer than {FIELD_LIMIT} characters"}
    assert loaded_ids(items) == [(2, "C-1"), (4, "C-3"), (5, "C-9")]


def test_fields_over_the_limit_on_consecutive_lines_are_each_rejected() -> None:
    huge = "x" * (FIELD_LIMIT * 50)
    items = parse(f"{huge}\n", f'C-2,"{huge}",Gold,true,\n')
    assert sorted(rejected_at(items)) == [3, 4]
    assert loaded_ids(items) == [(2, "C-1"), (5, "C-9")]


def test_a_field_at_the_limit_is_read() -> None:
    items = parse(f"C-2,{';' * FIELD_LIMIT},Gold,true,\n")
    assert loaded_ids(items) == [(2, "C-1"), (3, "C-2"), (4, "C-9")]


def test_the_field_limit_holds_only_while_the_loader_reads() -> None:
    before = csv.field_size_limit()
    rows = parse_rows([HEADER, BEFORE], "US")
    next(rows)
    assert csv.field_size_limit() == before


def test_a_record_spanning_lines_is_named_by_the_line_it_starts_on() -> None:
    # The quoted language holds a line break: C-2 starts on line 3, its field ends on 4.
    items = parse('C-2,+13175550117,Gold,true,"en-\r\n', 'US"\n', "C-3,,Silver,false,\n")
    assert list(rejected_at(items)) == [3]
    assert rejected_at(items)[3].startswith("preferredLanguage must be empty or a BCP 47")
    assert loaded_ids(items) == [(2, "C-1"), (5, "C-3"), (6, "C-9")]


def test_a_line_that_is_not_utf8_is_rejected_by_its_number_and_the_rest_loads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes(
        (HEADER + BEFORE).encode()
        + "C-2,+13175550117,Gold,true,de-DE\n".replace("de-DE", "M\u00fcller").encode("latin-1")
        + AFTER.encode()
    )
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        items = list(parse_rows(handle, "US"))
    assert rejected_at(items) == {3: "the line is not UTF-8 text"}
    assert [r.row for r in items if isinstance(r, Rejected)] == [{}]
    assert loaded_ids(items) == [(2, "C-1"), (4, "C-9")]


async def test_load_file_reads_a_file_with_a_latin1_line(
    tmp_path: Path, table: TableClient
) -> None:
    path = tmp_path / "crm.csv"
    path.write_bytes((HEADER + BEFORE).encode() + b"C-2,,G\xfcld,true,\n" + AFTER.encode())
    report = await load_file(path, table, "US", KEYS)
    assert [r.line for r in report.rejected] == [3] and report.customers == 2
    # The rejects file is UTF-8 and names the line without the bytes it could not hold.
    rejects = path.with_suffix(".rejects.csv").read_text(encoding="utf-8")
    assert '"3","the line is not UTF-8 text"' in rejects


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("customerId,phone,tier,isVip,phone\n", "phone"),
        ("customerId,phone,tier,tier,isVip,isVip\n", "isVip, tier"),
        # A column of its own, or a first data row taken for the header: by position.
        ("customerId,phone,tier,isVip,+13175550116,+13175550116\n", "column 5, column 6"),
    ],
)
def test_a_header_naming_a_column_twice_is_an_error_naming_it(header: str, named: str) -> None:
    with pytest.raises(ValueError) as raised:
        list(parse_rows([header, "D-1,+13175550117,Gold,true,+13175550118\n"], "US"))
    assert str(raised.value) == f"the header names {named} more than once"


def test_a_headerless_export_is_refused_without_quoting_its_first_row() -> None:
    first = "C-1,+13175550116,Gold,false,+13175550116\n"
    with pytest.raises(ValueError) as raised:
        list(parse_rows([first, BEFORE], "US"))
    assert "lacks column(s) customerId, phone, tier, isVip" in str(raised.value)
    assert "555" not in str(raised.value) and "C-1" not in str(raised.value)


def test_a_nul_in_a_column_of_its_own_names_its_position_not_its_header() -> None:
    items = list(
        parse_rows(
            ["customerId,phone,tier,isVip,\x1b]0;+13175550116\x07\n", "C-2,,Gold,true,a\0b\n"],
            "US",
        )
    )
    assert rejected_at(items) == {2: "column 5 holds a NUL character"}


def test_a_header_that_is_not_utf8_is_an_error() -> None:
    with pytest.raises(ValueError, match="not UTF-8"):
        list(parse_rows(["customerId,phone,tier,isVip,pr\udcfcf\n", BEFORE], "US"))


@pytest.mark.parametrize("column", range(5))
def test_a_nul_in_any_column_is_rejected_naming_the_column(column: int) -> None:
    fields = ["C-2", "+13175550117", "Gold", "true", "en-US"]
    fields[column] = fields[column][:2] + "\0" + fields[column][2:]
    items = parse(",".join(fields) + "\n")
    name = HEADER.strip().split(",")[column]
    assert rejected_at(items) == {3: f"{name} holds a NUL character"}
    assert loaded_ids(items) == [(2, "C-1"), (4, "C-9")]


@pytest.mark.parametrize(
    "tier",
    [
        "G" * 33,
        "Gold<script>",
        "Gold;Silver",
        "Gold\u200b",  # a zero-width space
        "Göld",
        "Gold\x07",
        "=1+1",
        "Gold\\Silver",
    ],
)
def test_a_tier_too_long_or_with_other_characters_is_rejected_without_quoting_it(
    tier: str,
) -> None:
    items = parse(f'C-2,+13175550117,"{tier}",true,\n')
    (reason,) = rejected_at(items).values()
    assert reason == "tier must be 1-32 letters, digits, spaces, '_' or '-'"
    assert loaded_ids(items) == [(2, "C-1"), (4, "C-9")]


@pytest.mark.parametrize("tier", ["G" * 32, "Gold Plus", "tier_2-b", "7"])
def test_a_tier_of_up_to_32_letters_digits_spaces_underscores_and_hyphens_loads(
    tier: str,
) -> None:
    (_, customer, _) = parse(f"C-2,,{tier},true,\n")
    assert isinstance(customer, Customer) and customer.record.tier == tier


@pytest.mark.parametrize(
    "language",
    ["en", "en-US", "EN-us", "fr-CA", "es-419", "zh-Hant-TW", "zh-yue-HK", "sl-rozaj-biske",
     "de-CH-1901", "en-US-u-ca-gregory", "en-x-private", "haw"],
)  # fmt: skip
def test_a_bcp47_preferred_language_loads(language: str) -> None:
    (_, customer, _) = parse(f"C-2,,Gold,true,{language}\n")
    assert isinstance(customer, Customer) and customer.record.preferred_language == language


@pytest.mark.parametrize(
    "language",
    [
        "e",
        "english language",
        "english",
        "engl",
        "en_US",
        "en-US;fr",
        "en-",
        "en--US",
        "en-US-",
        "x-private",
        "en-" + "-".join(["abcde"] * 11),  # well formed, but over 64 characters
        "en-\u0665\u0660\u0661",  # Arabic-Indic digits are digits to Python, not to BCP 47
        "=cmd|' /C calc'!A0",
    ],
)
def test_a_preferred_language_that_is_not_a_bcp47_tag_is_rejected_without_quoting_it(
    language: str,
) -> None:
    items = parse(f'C-2,+13175550117,Gold,true,"{language.replace(chr(34), "")}"\n')
    (reason,) = rejected_at(items).values()
    assert reason == "preferredLanguage must be empty or a BCP 47 language tag such as en-US"
    assert loaded_ids(items) == [(2, "C-1"), (4, "C-9")]


def test_load_rows_checks_every_record_before_writing_anything() -> None:
    bad = Customer(7, CustomerRecord("C-7", "G" * 33, False), ())
    with pytest.raises(ValueError, match=r"line 7: tier must be"):
        # No table is needed: the check comes before the first request.
        asyncio.run(load_rows(None, [bad], KEYS))  # type: ignore[arg-type]


# --- the rejects file ------------------------------------------------------------------------

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def read_back(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("first", DANGEROUS)
def test_every_rejects_cell_that_could_run_as_a_formula_gets_a_leading_quote(
    tmp_path: Path, first: str
) -> None:
    header = ["customerId", "phone", "tier", "isVip", f"{first}extra"]
    row = {name: f'{first}HYPERLINK("http://x","y")' for name in header}
    path = tmp_path / "crm.rejects.csv"
    write_rejects(path, [Rejected(2, f"{first}cmd|' /C calc'!A0", row)], header)
    (head, cells) = read_back(path)
    assert head == ["line", "reason", *(f"'{h}" if h.startswith(first) else h for h in header)]
    assert cells[0] == "2"
    assert cells[1] == f"'{first}cmd|' /C calc'!A0"
    assert cells[2:] == [f'\'{first}HYPERLINK("http://x","y")'] * len(header)


def test_rejects_cells_that_start_otherwise_are_written_as_they_are(tmp_path: Path) -> None:
    header = ["customerId", "phone", "tier", "isVip"]
    row = {"customerId": "bad id", "phone": "1 (317) 555-0116", "tier": "'Gold", "isVip": ""}
    path = tmp_path / "crm.rejects.csv"
    write_rejects(path, [Rejected(3, "customerId must be ...", row)], header)
    assert read_back(path)[1] == ["3", "customerId must be ...", *row.values()]


def test_the_rejects_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "crm.rejects.csv"
    old = os.umask(0)  # what a wide umask would let a plain open() create
    try:
        write_rejects(path, [Rejected(2, "r", {})], ["customerId"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_rejects_file_readable_by_others_is_narrowed_to_its_owner(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crm.rejects.csv"
    path.write_text("old rows\n")
    path.chmod(0o644)
    write_rejects(path, [Rejected(2, "r", {})], ["customerId"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "old rows" not in path.read_text()


# --- a transaction that fails ----------------------------------------------------------------


class FailingPartition:
    """The table, whose transactions for one partition fail: ``transient`` times with a 503
    (then they go through), or always with a 400 when ``transient`` is None."""

    def __init__(self, inner: TableClient, partition: str, transient: int | None) -> None:
        self.inner, self.partition, self.transient = inner, partition, transient
        self.attempts = 0

    async def submit_transaction(self, batch: list[tuple[Any, ...]]) -> Any:
        if batch[0][1]["PartitionKey"] == self.partition:
            self.attempts += 1
            if self.transient is None or self.attempts <= self.transient:
                error = HttpResponseError("refused")
                error.status_code = 400 if self.transient is None else 503
                raise error
        return await self.inner.submit_transaction(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


FAILING = """customerId,phone,tier,isVip
F-1,+13175550131,Gold,true
F-2,+13175550132,Silver,false
F-3,+13175550133,Bronze,false
"""
# F-2's number lives in a partition of its own among these keys; its id elsewhere.
FAILING_PARTITION = table_keys(KEYS.key("ani", "+13175550132"))[0]


@pytest.fixture
async def table(azurite: Azurite, table_name: str) -> AsyncIterator[TableClient]:
    async with TableClient.from_connection_string(azurite.connection_string, table_name) as t:
        yield t
        await t.delete_table()


async def keys_stored(table: TableClient, *keys: LookupKey) -> list[bool]:
    found = []
    for key in keys:
        try:
            await table.get_entity(*table_keys(key))
            found.append(True)
        except ResourceNotFoundError:
            found.append(False)
    return found


def test_the_failing_partition_holds_only_f2s_number() -> None:
    others = [KEYS.key("customerId", f"F-{i}") for i in (1, 2, 3)]
    others += [KEYS.key("ani", f"+1317555013{i}") for i in (1, 3)]
    assert FAILING_PARTITION not in {table_keys(k)[0] for k in others}


async def test_a_transaction_that_keeps_failing_leaves_its_customers_as_they_were(
    table: TableClient, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    failing = FailingPartition(table, FAILING_PARTITION, transient=None)
    report = await load_file(path, failing, "US", KEYS)  # type: ignore[arg-type]
    assert report.unwritten == [Unwritten(3, "F-2", undone=True)]
    assert report.write_error == "HttpResponseError 400"
    assert failing.attempts == 1  # a refusal is not retried
    assert report.entities == 4
    # Every other customer loaded; F-2, new, is in the table under no key: its id's row,
    # written in another transaction, was deleted again.
    assert await keys_stored(
        table,
        KEYS.key("ani", "+13175550131"),
        KEYS.key("ani", "+13175550133"),
        KEYS.key("customerId", "F-2"),
        KEYS.key("ani", "+13175550132"),
    ) == [True, True, False, False]
    # Loading it again, once the partition takes writes, finishes the job.
    again = await load_file(path, table, "US", KEYS)
    assert again.unwritten == [] and again.write_error is None and again.entities == 6
    assert await keys_stored(table, KEYS.key("customerId", "F-2")) == [True]


async def test_an_update_a_failing_transaction_holds_is_put_back_on_every_key(
    table: TableClient, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    assert (await load_file(path, table, "US", KEYS)).entities == 6
    # F-2 moves to Gold: by id and by number, or not at all.
    path.write_text(FAILING.replace("F-2,+13175550132,Silver", "F-2,+13175550132,Gold"))
    failing = FailingPartition(table, FAILING_PARTITION, transient=None)
    report = await load_file(path, failing, "US", KEYS)  # type: ignore[arg-type]
    assert report.unwritten == [Unwritten(3, "F-2", undone=True)]
    for key in (KEYS.key("customerId", "F-2"), KEYS.key("ani", "+13175550132")):
        assert (await table.get_entity(*table_keys(key)))["Tier"] == "Silver"


class FailingUndo(FailingPartition):
    """FailingPartition whose deletes fail too: an undo that cannot go through."""

    async def delete_entity(self, *args: Any, **kwargs: Any) -> None:
        error = HttpResponseError("refused")
        error.status_code = 400
        raise error


class AppliedButLost(FailingPartition):
    """The service applies the partition's transactions, but every answer is lost on the way
    back (a timeout after the commit): the loader cannot tell they were written."""

    async def submit_transaction(self, batch: list[tuple[Any, ...]]) -> Any:
        result = await self.inner.submit_transaction(batch)
        if batch[0][1]["PartitionKey"] == self.partition:
            self.attempts += 1
            raise ServiceResponseError("the connection closed before the response")
        return result


async def test_a_transaction_that_may_have_been_applied_is_put_back_too(
    table: TableClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "RETRY_DELAYS_S", (0.01,))
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    lost = AppliedButLost(table, FAILING_PARTITION, transient=None)
    report = await load_file(path, lost, "US", KEYS)  # type: ignore[arg-type]
    assert lost.attempts == 2 and report.unwritten == [Unwritten(3, "F-2", undone=True)]
    # F-2's number was written, as far as the table knows: it went again with its id.
    assert await keys_stored(
        table, KEYS.key("customerId", "F-2"), KEYS.key("ani", "+13175550132")
    ) == [False, False]


async def test_a_customer_on_two_rows_is_put_back_on_both(
    table: TableClient, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    assert (await load_file(path, table, "US", KEYS)).entities == 6
    # F-2, now Gold, listed on two rows: one with F-1's partitions' number, one with its own.
    path.write_text(
        FAILING.replace("F-2,+13175550132,Silver", "F-2,+13175550132,Gold")
        + "F-2,+13175550139,Gold,false\n"
    )
    failing = FailingPartition(table, FAILING_PARTITION, transient=None)
    report = await load_file(path, failing, "US", KEYS)  # type: ignore[arg-type]
    assert [u.customer_id for u in report.unwritten] == ["F-2", "F-2"]
    assert all(u.undone for u in report.unwritten)
    # Neither row of F-2 loaded: its id is Silver again, the new number is not there.
    assert (await table.get_entity(*table_keys(KEYS.key("customerId", "F-2"))))["Tier"] == "Silver"
    assert await keys_stored(table, KEYS.key("ani", "+13175550139")) == [False]


async def test_redis_answers_the_put_back_rows_as_they_were_over_what_a_dip_cached(
    table: TableClient, tmp_path: Path, redis: aioredis.Redis
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    assert (await load_file(path, table, "US", KEYS, read_model=_writer(redis))).entities == 6
    path.write_text(FAILING.replace("F-2,+13175550132,Silver", "F-2,+13175550132,Gold"))
    f2 = KEYS.key("customerId", "F-2")

    class DipBetween(FailingPartition):
        """A dip reads F-2's id row, already Gold, before the failed transaction is undone."""

        async def submit_transaction(self, batch: list[tuple[Any, ...]]) -> Any:
            if batch[0][1]["PartitionKey"] == self.partition:
                record = CustomerRecord("F-2", "Gold", False, "")
                await _dip_cache(redis).put(f2.cache_key, record, 1.0, as_of=time.time())
            return await super().submit_transaction(batch)

    failing = DipBetween(table, FAILING_PARTITION, transient=None)
    report = await load_file(path, failing, "US", KEYS, read_model=_writer(redis))  # type: ignore[arg-type]
    assert report.unwritten == [Unwritten(3, "F-2", undone=True)]
    answer = await _answer(redis, f2)
    assert answer is not None and answer["tier"] == "Silver"


@pytest.mark.parametrize(
    ("before", "after", "column"),
    [
        ("F-1,+13175550131,Gold,true", "F-1,+13175550131,Gold,false", "IsVip"),
        ("F-1,+13175550131,Gold,true", "F-1,+13175550131,Gold,true,fr-CA", "PreferredLanguage"),
    ],
)
async def test_a_change_in_any_one_column_is_written(
    table: TableClient, tmp_path: Path, before: str, after: str, column: str
) -> None:
    path = tmp_path / "crm.csv"
    header = "customerId,phone,tier,isVip,preferredLanguage\n"
    path.write_text(header + before + "\n")
    await load_file(path, table, "US", KEYS)
    path.write_text(header + after + "\n")
    await load_file(path, table, "US", KEYS)
    for key in (KEYS.key("customerId", "F-1"), KEYS.key("ani", "+13175550131")):
        entity = await table.get_entity(*table_keys(key))
        assert entity[column] == {"IsVip": False, "PreferredLanguage": "fr-CA"}[column]


class UnreadableTable:
    """A table every read of which is refused."""

    def __init__(self, inner: TableClient) -> None:
        self.inner = inner
        self.writes = 0

    async def get_entity(self, *args: Any, **kwargs: Any) -> Any:
        error = HttpResponseError("refused")
        error.status_code = 403
        raise error

    async def submit_transaction(self, batch: list[tuple[Any, ...]]) -> Any:
        self.writes += 1
        return await self.inner.submit_transaction(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_table_that_cannot_be_read_first_gets_nothing_written(
    table: TableClient, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    unreadable = UnreadableTable(table)
    with pytest.raises(ReadFailed, match="nothing was written") as raised:
        await load_file(path, unreadable, "US", KEYS)  # type: ignore[arg-type]
    assert "HttpResponseError 403" in str(raised.value) and unreadable.writes == 0


async def test_a_customer_whose_undo_fails_too_is_named_partly_written(
    table: TableClient, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    failing = FailingUndo(table, FAILING_PARTITION, transient=None)
    report = await load_file(path, failing, "US", KEYS)  # type: ignore[arg-type]
    assert report.unwritten == [Unwritten(3, "F-2", undone=False)]
    assert await keys_stored(table, KEYS.key("customerId", "F-2")) == [True]


async def test_a_customer_on_two_rows_whose_undo_fails_is_partly_written_on_both(
    table: TableClient, tmp_path: Path
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING + "F-2,+13175550139,Silver,false\n")
    stuck = table_keys(KEYS.key("ani", "+13175550139"))[0]
    assert stuck != FAILING_PARTITION

    class UndoStuckIn(FailingPartition):
        """Only the second row's number cannot be put back; the first row's can."""

        async def delete_entity(self, pk: str, rk: str, **kwargs: Any) -> None:
            if pk == stuck:
                error = HttpResponseError("refused")
                error.status_code = 400
                raise error
            await self.inner.delete_entity(pk, rk, **kwargs)

    failing = UndoStuckIn(table, FAILING_PARTITION, transient=None)
    report = await load_file(path, failing, "US", KEYS)  # type: ignore[arg-type]
    # One customer, one verdict on both of its lines.
    assert [(u.customer_id, u.undone) for u in report.unwritten] == [
        ("F-2", False),
        ("F-2", False),
    ]


async def test_a_load_writes_only_the_rows_that_change(table: TableClient, tmp_path: Path) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    assert (await load_file(path, table, "US", KEYS)).entities == 6
    # Nothing changed: the failing partition is never asked to write.
    failing = FailingPartition(table, FAILING_PARTITION, transient=None)
    again = await load_file(path, failing, "US", KEYS)  # type: ignore[arg-type]
    assert failing.attempts == 0 and again.unwritten == [] and again.entities == 6


async def test_a_transient_failure_is_retried_until_the_transaction_goes_through(
    table: TableClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    failing = FailingPartition(table, FAILING_PARTITION, transient=3)
    report = await load_file(path, failing, "US", KEYS)  # type: ignore[arg-type]
    assert failing.attempts == 4
    assert report.unwritten == [] and report.write_error is None and report.entities == 6
    assert await keys_stored(table, KEYS.key("ani", "+13175550132")) == [True]


async def test_retries_are_bounded(
    table: TableClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    failing = FailingPartition(table, FAILING_PARTITION, transient=4)
    report = await load_file(path, failing, "US", KEYS)  # type: ignore[arg-type]
    assert failing.attempts == 4
    assert report.unwritten == [Unwritten(3, "F-2")]
    assert report.write_error == "HttpResponseError 503"


def _writer(redis: aioredis.Redis) -> ReadModelWriter:
    return ReadModelWriter(redis, max_age_s=3600, stale_ttl_s=3600, negative_ttl_s=30)


async def _replace(path: Path, table: Any, redis: aioredis.Redis) -> LoadReport:
    """A replacing load of ``path`` that may drop up to half the keys, writing through."""
    return await load_file(
        path, table, "US", KEYS, replace=True, max_delete=0.5, read_model=_writer(redis)
    )


async def _answer(redis: aioredis.Redis, key: LookupKey) -> dict[str, Any] | None:
    raw = await redis.get(ANSWER_PREFIX + key.cache_key)
    return None if raw is None else dict(json.loads(raw))


async def test_a_replacing_load_whose_upserts_partly_fail_removes_nothing(
    table: TableClient, tmp_path: Path, redis: aioredis.Redis
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING + "F-4,+13175550134,Gold,false\n")
    assert (await load_file(path, table, "US", KEYS)).entities == 8
    path.write_text(FAILING.replace("F-2,+13175550132,Silver", "F-2,+13175550132,Gold"))
    failing = FailingPartition(table, FAILING_PARTITION, transient=None)
    report = await _replace(path, failing, redis)
    assert report.unwritten == [Unwritten(3, "F-2")]
    assert report.removed == 0 and report.unremoved == 2
    # F-2 was not loaded: Redis answers its old tier, as the table does.
    answer = await _answer(redis, KEYS.key("customerId", "F-2"))
    assert answer is not None and answer["tier"] == "Silver"
    assert await keys_stored(table, KEYS.key("customerId", "F-4")) == [True]


class WatchedDeletes:
    """The table, calling ``on_delete`` before the first transaction that deletes a row."""

    def __init__(self, inner: TableClient, on_delete: Any) -> None:
        self.inner, self.on_delete = inner, on_delete
        self.deleted = False

    async def submit_transaction(self, batch: list[tuple[Any, ...]]) -> Any:
        if not self.deleted and any(op[0] == TransactionOperation.DELETE for op in batch):
            self.deleted = True
            await self.on_delete()
        return await self.inner.submit_transaction(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_replacing_load_settles_redis_before_the_first_row_goes(
    table: TableClient, tmp_path: Path, redis: aioredis.Redis
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING + "F-4,+13175550134,Gold,false\n")
    assert (await load_file(path, table, "US", KEYS, read_model=_writer(redis))).entities == 8
    # A dip cached "no customer" for F-1's number meanwhile (a stranger, as a rotation's
    # new key reads before the load writes it).
    await _dip_cache(redis).put(
        KEYS.key("ani", "+13175550131").cache_key, None, 1.0, as_of=time.time()
    )
    assert await _answer(redis, KEYS.key("ani", "+13175550131")) is not None
    path.write_text(FAILING.replace("F-3,+13175550133,Bronze", "F-3,+13175550133,Platinum"))
    seen: dict[str, Any] = {}

    async def on_delete() -> None:
        seen["F-1"] = await _answer(redis, KEYS.key("ani", "+13175550131"))
        seen["F-3"] = await _answer(redis, KEYS.key("customerId", "F-3"))
        seen["F-4"] = await _answer(redis, KEYS.key("ani", "+13175550134"))

    watched = WatchedDeletes(table, on_delete)
    report = await _replace(path, watched, redis)
    assert report.removed == 2 and report.write_error is None
    assert watched.deleted, "F-4's rows were never deleted"
    # When the first row went, Redis already said what the export says.
    assert seen["F-1"] is not None and seen["F-1"]["customerId"] == "F-1"
    assert seen["F-3"] is not None and seen["F-3"]["tier"] == "Platinum"
    assert seen["F-4"] is not None and "customerId" not in seen["F-4"]


def _dip_cache(redis: aioredis.Redis) -> RedisCache:
    """The cache as a dip writes to it."""
    return RedisCache(redis, Breaker(3, 5), fresh_ttl_s=60, stale_ttl_s=3600, negative_ttl_s=30)


async def test_a_dropped_key_a_dip_read_before_its_row_went_is_no_customer_after_the_load(
    table: TableClient, tmp_path: Path, redis: aioredis.Redis
) -> None:
    # The "no customer" written before the deletes lives NEGATIVE_TTL_SECONDS; deletes can
    # take longer, and a dip in between reads the row that is still there and caches it.
    path = tmp_path / "crm.csv"
    path.write_text(FAILING + "F-4,+13175550134,Gold,false\n")
    assert (await load_file(path, table, "US", KEYS, read_model=_writer(redis))).entities == 8
    path.write_text(FAILING)
    dropped = KEYS.key("ani", "+13175550134")

    async def a_dip_reads_the_row_first() -> None:
        await redis.delete(ANSWER_PREFIX + dropped.cache_key)  # the 30 s entry expired
        record = CustomerRecord("F-4", "Gold", False, "")
        await _dip_cache(redis).put(dropped.cache_key, record, 1.0, as_of=time.time())

    watched = WatchedDeletes(table, a_dip_reads_the_row_first)
    report = await _replace(path, watched, redis)
    assert report.removed == 2 and watched.deleted
    answer = await _answer(redis, dropped)
    assert answer is not None and "customerId" not in answer


async def test_the_loader_stamps_answers_by_redis_clock_not_the_operators(
    table: TableClient, tmp_path: Path, redis: aioredis.Redis
) -> None:
    # An operator's machine an hour behind: its answers would lose to any a dip wrote.
    path = tmp_path / "crm.csv"
    path.write_text(FAILING)
    behind = ReadModelWriter(
        redis, max_age_s=3600, stale_ttl_s=3600, negative_ttl_s=30, clock=lambda: time.time() - 3600
    )
    assert (await load_file(path, table, "US", KEYS, read_model=behind)).written_through == 6
    answer = await _answer(redis, KEYS.key("customerId", "F-1"))
    assert answer is not None and abs(answer["asOf"] - time.time()) < 5
    assert abs(answer["freshUntil"] - (time.time() + 3600)) < 5


class FailingWrites(ReadModelWriter):
    async def write(self, *args: Any, **kwargs: Any) -> int:
        raise redis_exceptions.ConnectionError("Redis went away")


async def test_a_replacing_load_whose_redis_fails_midway_deletes_no_row(
    table: TableClient, tmp_path: Path, redis: aioredis.Redis
) -> None:
    path = tmp_path / "crm.csv"
    path.write_text(FAILING + "F-4,+13175550134,Gold,false\n")
    assert (await load_file(path, table, "US", KEYS)).entities == 8
    path.write_text(FAILING)
    failing = FailingWrites(redis, max_age_s=3600, stale_ttl_s=3600, negative_ttl_s=30)
    report = await load_file(
        path, table, "US", KEYS, replace=True, max_delete=0.5, read_model=failing
    )
    # The announce worked, the write-through did not: F-4 keeps its rows, and says so.
    assert report.removed == 0 and report.unremoved == 2
    assert report.write_error is not None and "ConnectionError" in report.write_error
    assert await keys_stored(
        table, KEYS.key("customerId", "F-4"), KEYS.key("ani", "+13175550134")
    ) == [True, True]


def test_a_symlink_planted_at_the_rejects_path_is_replaced_never_written_through(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim.sh"
    victim.write_text("echo keep me\n")
    victim.chmod(0o644)
    path = tmp_path / "crm.rejects.csv"
    path.symlink_to(victim)
    write_rejects(path, [Rejected(2, "r", {"customerId": "$(touch pwned)"})], ["customerId"])
    assert victim.read_text() == "echo keep me\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not path.is_symlink() and "pwned" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.rejects.csv", "victim.sh"]
