"""Load a CRM export into the customer table; operators run ``python -m tools.load``.

Columns: ``customerId,phone,tier,isVip[,preferredLanguage]``. ``phone`` is optional and
may hold several numbers separated by ``;``; they are normalised like ANIs. Each customer
becomes one entity findable by id plus one per number (see ``customers``).

Bad rows are reported with their line numbers and written to ``<input>.rejects.csv``
while the good rows still load. A line the CSV reader cannot read (a field longer than
``FIELD_LIMIT``) is a bad row too, and reading goes on with the next line. The rejects file
holds numbers, so it is created readable by its owner only, and a cell a spreadsheet would
run as a formula is written with a leading ``'`` (OWASP, "CSV Injection").

Every value that reaches the table is checked before anything is written, so the table
cannot refuse an entity. Only rows whose values change are written. A transaction covers
one partition, and a customer's entities live in several, so a failed transaction is
retried; if it still fails, what was written of the customers it held is put back as it
was and the report names them. Upserts are idempotent, so a re-run is safe.

Every loaded answer is also written through to the read model in Redis, so a changed tier
or a number that moved to another customer answers right away, not after the next warm.
When Redis cannot be reached the table still loads, and the next warm catches up.

A replacing load makes the table match the export, as a full CRM snapshot is meant to:
keys no longer in it (a number that left a customer, a deleted customer) are removed from
the table and answered "no customer" in Redis. Unless forced, it refuses to remove more
than ``max_delete`` of the keys, so a truncated export cannot wipe the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import random
import re
import tempfile
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient

from shared.clients import REDIS_ERRORS, ensure_table
from shared.dip.customers import (
    PARTITIONS,
    CustomerRecord,
    entities_for,
    lookups_of,
    record_of,
    table_keys,
)
from shared.dip.keys import LookupKey, LookupKeys
from shared.dip.phone import normalize_number
from shared.dip.readmodel import ReadModelWriter

__all__ = [
    "FIELD_LIMIT",
    "LoadReport",
    "PartlyWritten",
    "Progress",
    "ReadFailed",
    "Rejected",
    "ReplaceRefused",
    "Unwritten",
    "load_file",
    "load_rows",
    "parse_rows",
    "write_rejects",
]

REQUIRED_COLUMNS = ("customerId", "phone", "tier", "isVip")
KNOWN_COLUMNS = frozenset((*REQUIRED_COLUMNS, "preferredLanguage"))
# Every string the loader stores is ASCII from one of these patterns (or an E.164 number),
# at most 64 characters: no property can exceed Table Storage's 64 KiB, no entity its
# 1 MiB, and no character is one the service refuses (it takes any valid UTF-16, and the
# keys are base64url hashes). So a transaction can fail only for transient reasons.
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The repo configures no list of tiers (DEGRADED_TIER is free text), so a tier is bounded
# by shape: what a CRM's tier names look like, and nothing a routing rule could trip on.
_TIER = re.compile(r"[A-Za-z0-9 _-]{1,32}")
# A BCP 47 (RFC 5646) language tag by the shape of its grammar: language (2-3 letters and
# up to three 3-letter extlangs), script, region, variants, extensions and a private-use
# part. The grammar's 4-8 letter languages are left out: the IANA registry has none, and
# they would take words such as "english". It does not check the registry, and takes no
# grandfathered or private-use-only tag. Written by hand: langcodes and
# language-tags on PyPI validate against the registry, but the locks are hash-pinned and
# a shape check is what keeps hostile text out of the table.
_LANGUAGE_TAG = re.compile(
    r"""
    [a-z]{2,3}(?:-[a-z]{3}){0,3}              # language, extlang
    (?:-[a-z]{4})?                            # script
    (?:-(?:[a-z]{2}|[0-9]{3}))?               # region
    (?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*  # variants
    (?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*       # extensions
    (?:-x(?:-[a-z0-9]{1,8})+)?                # private use
    """,
    re.IGNORECASE | re.VERBOSE | re.ASCII,
)
_LANGUAGE_CHARS = 64
# The CSV reader's limit on one field. The longest legitimate field is a phone list of a
# few dozen numbers; 4096 characters is far above it, and far below Table Storage's 64 KiB
# per string, while a hostile multi-megabyte field is refused by the reader itself.
FIELD_LIMIT = 4096
# A cell a spreadsheet reads as a formula (or that hides one after a tab or return): the
# rejects file writes it with a leading "'" (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}
# A Table transaction holds at most 100 operations, all in one partition.
_BATCH = 100
_PARALLEL_BATCHES = 8
# The table client retries nothing (shared/clients.py TABLE_CLIENT_OPTIONS: a dip's deadline
# is its retry budget), so the loader retries a transaction itself after these pauses
# (seconds, each with up to 50% jitter), for the failures that may pass.
RETRY_DELAYS_S: tuple[float, ...] = (0.5, 2.0, 5.0)
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# How a caller shows a load's progress: called with the number of entities a pass writes,
# it gives a context whose value is called with each transaction's size as it completes.
Progress = Callable[[int], AbstractContextManager[Callable[[int], object]]]


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str
    row: dict[str, str]


@dataclass(frozen=True)
class Customer:
    line: int
    record: CustomerRecord
    phones: tuple[str, ...]


@dataclass(frozen=True)
class Unwritten:
    """A customer a failed transaction kept from loading (by line and id: never a number).

    ``undone``: what was written of it was put back, so the table holds it as before the
    load; otherwise the undo failed too and it is partly written."""

    line: int
    customer_id: str
    undone: bool = True


@dataclass
class LoadReport:
    customers: int = 0
    entities: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    # Keys removed because the export no longer has them (--replace).
    removed: int = 0
    # Answers written through to Redis; None when Redis could not be reached.
    written_through: int | None = 0
    redis_error: str | None = None
    # Customers a transaction that failed after its retries kept from loading, and why.
    unwritten: list[Unwritten] = field(default_factory=list)
    # Keys the export no longer has that a failed transaction left in the table.
    unremoved: int = 0
    write_error: str | None = None


class ReplaceRefused(Exception):
    """--replace would remove more keys than allowed; nothing was changed."""


def _record_problem(record: CustomerRecord) -> str | None:
    """Why the table must not get a record, naming the field and never quoting it."""
    if not _CUSTOMER_ID.fullmatch(record.customer_id):
        return "customerId must be 1-64 letters, digits, '_' or '-'"
    if not record.tier:
        return "tier is empty"
    if not _TIER.fullmatch(record.tier):
        return "tier must be 1-32 letters, digits, spaces, '_' or '-'"
    language = record.preferred_language
    if language and (len(language) > _LANGUAGE_CHARS or not _LANGUAGE_TAG.fullmatch(language)):
        return "preferredLanguage must be empty or a BCP 47 language tag such as en-US"
    return None


def _parse_row(row: dict[str, str], line: int, region: str) -> Customer | Rejected:
    def text(name: str) -> str:
        return (row.get(name) or "").strip()

    for index, value in enumerate(row.values()):
        # Python's csv reader takes a NUL as any other character; no export means one.
        if "\0" in value:
            return Rejected(line, f"{_column(list(row), index)} holds a NUL character", row)
    vip = text("isVip").lower()
    record = CustomerRecord(
        text("customerId"), text("tier"), vip in _TRUE, text("preferredLanguage")
    )
    problem = _record_problem(record)
    if problem is not None:
        return Rejected(line, problem, row)
    if vip not in _TRUE | _FALSE:
        return Rejected(line, "isVip must be true or false", row)
    phones: list[str] = []
    for raw in filter(None, (p.strip() for p in text("phone").split(";"))):
        number = normalize_number(raw, region)
        if number is None:
            # The reason never quotes the number: it goes to the terminal and to logs.
            return Rejected(line, "phone holds something that is not a phone number", row)
        if number not in phones:
            phones.append(number)
    return Customer(line, record, tuple(phones))


def _read(reader: Iterator[list[str]]) -> list[str] | None:
    """The reader's next record under FIELD_LIMIT, None at the end; csv.Error as it comes.

    The limit is process-wide, so it holds only while this loader reads."""
    before = csv.field_size_limit(FIELD_LIMIT)
    try:
        return next(reader, None)
    finally:
        csv.field_size_limit(before)


# Bytes that are not UTF-8, as the file is read with errors="surrogateescape": the line
# that holds one is rejected by its number, and the rest of the file still loads.
_UNDECODED = re.compile("[\udc80-\udcff]")


def _undecoded(fields: Iterable[str]) -> bool:
    return any(_UNDECODED.search(f) for f in fields)


def _header(reader: Iterator[list[str]]) -> list[str]:
    try:
        header = _read(reader) or []
    except csv.Error:
        raise ValueError(
            f"the header cannot be read as CSV (is a column name over {FIELD_LIMIT} characters?)"
        ) from None
    if _undecoded(header):
        raise ValueError("the header is not UTF-8 text; save the export as UTF-8")
    return header


def _column(header: Sequence[str], index: int) -> str:
    """A column as a message may name it: its name when it is one of ours, else its position.
    A hostile or misaligned export's header may hold anything, a number included."""
    name = header[index] if index < len(header) else ""
    return name if name in KNOWN_COLUMNS else f"column {index + 1}"


def _check_columns(header: Sequence[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"the header lacks column(s) {', '.join(missing)}; "
            f"expected {','.join(REQUIRED_COLUMNS)}[,preferredLanguage]"
        )
    # zip() would keep the last of two same-named columns and drop the other's values.
    twice = sorted({_column(header, i) for i, n in enumerate(header) if header.count(n) > 1})
    if twice:
        raise ValueError(f"the header names {', '.join(twice)} more than once")


def parse_rows(lines: Iterable[str], region: str) -> Iterator[Customer | Rejected]:
    """Validate CSV text row by row; a bad header rejects nothing but raises ValueError.

    A record the CSV reader cannot read is rejected by the line it starts on, and reading
    goes on with the line after the one where the reader stopped (the reader starts every
    record afresh). Within a quoted field that spans lines, the lines after that one are
    then read as records of their own, and rejected or loaded as they read.
    """
    reader = csv.reader(lines)
    header = _header(reader)
    _check_columns(header)
    while True:
        # Line numbers as an editor shows them: the header is line 1.
        start = reader.line_num + 1
        try:
            fields = _read(reader)
        except csv.Error as exc:
            # csv's messages quote no data, but the reason is ours to word.
            reason = (
                f"a field is longer than {FIELD_LIMIT} characters"
                if "field limit" in str(exc)
                else "the line cannot be read as CSV"
            )
            yield Rejected(start, reason, {})
            if reader.line_num < start:
                return  # the reader read nothing: there is nothing after it to go on with
            continue
        if fields is None:
            return
        if not fields:
            continue  # a blank line, as csv.DictReader skips it
        # A record is named by the line it starts on, also when a quoted field spans lines.
        line = start
        if _undecoded(fields):
            # Nothing of it is kept: the rejects file is UTF-8 and could not hold it.
            yield Rejected(line, "the line is not UTF-8 text", {})
            continue
        row = dict(zip(header, fields, strict=False))
        if len(fields) > len(header):
            yield Rejected(line, "too many fields", row)
            continue
        yield _parse_row(row, line, region)


def _entities(
    customers: Sequence[Customer], keys: LookupKeys
) -> dict[str, dict[str, dict[str, Any]]]:
    """The export's entities by partition and RowKey; a later row for a key wins, as a
    re-run of the export would."""
    by_partition: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for customer in customers:
        for entity in entities_for(customer.record, customer.phones, keys):
            by_partition[entity["PartitionKey"]][entity["RowKey"]] = entity
    return by_partition


def _unshown(done: int) -> None:
    pass


Batch = list[tuple[Any, ...]]


def _transient(exc: BaseException) -> bool:
    """A failure another attempt may not meet: the connection, a timeout, or a status the
    service sends when busy or briefly unwell (a refused entity is none of these)."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError | OSError | TimeoutError):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in _TRANSIENT_STATUS


async def _retried[T](fn: Callable[[], Awaitable[T]], gate: asyncio.Semaphore) -> T:
    """``fn`` under ``gate``, tried again after each of RETRY_DELAYS_S while its failure is
    transient; the last failure is raised. The back-off waits outside the gate, so a call
    that waits does not hold up the others."""
    for delay in RETRY_DELAYS_S:
        try:
            async with gate:
                return await fn()
        except (AzureError, OSError, TimeoutError) as exc:
            if not _transient(exc):
                raise
        await asyncio.sleep(delay * (1 + random.random() / 2))
    async with gate:
        return await fn()


async def _submit(
    table: TableClient,
    batches: list[Batch],
    count: int,
    progress: Progress | None,
) -> list[tuple[Batch, BaseException]]:
    """Send the transactions, each retried after RETRY_DELAYS_S while its failure is
    transient; return those that failed all the same, with the last error of each."""
    gate = asyncio.Semaphore(_PARALLEL_BATCHES)
    failed: list[tuple[Batch, BaseException]] = []
    shown: AbstractContextManager[Callable[[int], object]] = (
        nullcontext(_unshown) if progress is None else progress(count)
    )
    with shown as advance:

        async def submit(batch: Batch) -> None:
            try:
                await _retried(lambda: table.submit_transaction(batch), gate)
            except (AzureError, OSError, TimeoutError) as exc:
                failed.append((batch, exc))
            else:
                advance(len(batch))

        await asyncio.gather(*(submit(b) for b in batches))
    return failed


def _batches(by_partition: dict[str, Batch]) -> list[Batch]:
    # A Table transaction holds at most 100 operations, all in one partition.
    return [
        ops[i : i + _BATCH] for ops in by_partition.values() for i in range(0, len(ops), _BATCH)
    ]


def _failed_keys(failed: list[tuple[Batch, BaseException]]) -> set[tuple[str, str]]:
    return {(op[1]["PartitionKey"], op[1]["RowKey"]) for batch, _ in failed for op in batch}


def _cause(failed: list[tuple[Batch, BaseException]]) -> str:
    """What the failures were, by error type and status: an error's message may quote keys."""
    kinds = {
        f"{type(exc).__name__}"
        + (f" {exc.status_code}" if isinstance(exc, HttpResponseError) else "")
        for _, exc in failed
    }
    return ", ".join(sorted(kinds))


class PartlyWritten(Exception):
    """A transaction still failed after its retries: some entities were not written (or,
    for a replacing load, some dropped keys not removed). Upserts and deletes are
    idempotent, so loading the same export again finishes the job."""

    def __init__(
        self,
        written: int,
        unwritten: list[Unwritten],
        unremoved: int,
        cause: str,
        removed: list[LookupKey] | None = None,
        deleted: int = 0,
        unloaded: frozenset[tuple[str, str]] = frozenset(),
        restored: list[tuple[LookupKey, CustomerRecord | None]] | None = None,
    ) -> None:
        super().__init__(
            f"{len(unwritten)} customers not loaded, {unremoved} keys not removed: {cause}"
        )
        self.written = written
        self.unwritten = unwritten
        self.unremoved = unremoved
        self.cause = cause
        # The (PartitionKey, RowKey) of every entity of the customers not loaded: their
        # answers are not written through either.
        self.unloaded = unloaded
        # The rows put back, with the answer each gives again (None: no customer).
        self.restored = restored or []
        # Keys that were removed all the same (and those of them whose answers Redis may
        # hold).
        self.deleted = deleted
        self.removed = removed or []


# The properties an entity's answer is made of (customers.entities_for).
_VALUES = ("CustomerId", "Tier", "IsVip", "PreferredLanguage")
# A partition the export has at most this many keys in is read key by key rather than
# whole: a small load into a large table then reads what it writes, not the table.
_POINT_READS_MAX = 16


@dataclass
class TableState:
    """What the table holds under the export's keys, read before a load writes.

    ``wanted``: the export's entities by partition and RowKey, as read against.
    ``present``: every RowKey of the table (only when asked for, by a replacing load).
    ``before``: each of the export's keys whose row the load changes, with the values it
    held (None for a row it adds); a key whose row already holds the export's values is not
    in it, and is not written again."""

    wanted: dict[str, dict[str, dict[str, Any]]]
    present: dict[str, set[str]]
    before: dict[tuple[str, str], dict[str, Any] | None]


class ReadFailed(ValueError):
    """Reading the table before a load failed after its retries: nothing was written."""


def _values_of(entity: Mapping[str, Any]) -> dict[str, Any]:
    return {name: entity.get(name) for name in _VALUES}


async def read_table_state(
    table: TableClient,
    wanted: dict[str, dict[str, dict[str, Any]]],
    *,
    every_partition: bool = False,
) -> TableState:
    """Read the rows under the export's keys; ``every_partition`` reads every row's key too.

    A partition with few of the export's keys is read by point reads, any other by one
    query; each read is retried as a transaction is. Only changed rows' values are kept, so
    a daily snapshot that changes little costs little memory.
    """
    present: dict[str, set[str]] = defaultdict(set)
    before: dict[tuple[str, str], dict[str, Any] | None] = {}
    gate = asyncio.Semaphore(_PARALLEL_BATCHES)

    def compare(pk: str, rk: str, found: Mapping[str, Any] | None) -> None:
        new = wanted[pk][rk]
        if found is None:
            before[(pk, rk)] = None
        elif any(found[name] != new[name] for name in _VALUES):
            before[(pk, rk)] = dict(found)

    async def scan(pk: str) -> None:
        rows = wanted.get(pk, {})
        keys: set[str] = set()
        seen: dict[str, dict[str, Any]] = {}
        async for entity in table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey", *_VALUES]
        ):
            rk = str(entity["RowKey"])
            if every_partition:
                keys.add(rk)
            if rk in rows:
                seen[rk] = _values_of(entity)
        # Only a whole read counts: a retried partition starts afresh.
        if every_partition:
            present[pk] = keys
        for rk in rows:
            compare(pk, rk, seen.get(rk))

    async def point_reads(pk: str) -> None:
        for rk in wanted[pk]:
            try:
                entity = await table.get_entity(pk, rk, select=list(_VALUES))
            except ResourceNotFoundError:
                compare(pk, rk, None)
            else:
                compare(pk, rk, _values_of(entity))

    async def read(pk: str) -> None:
        sparse = not every_partition and len(wanted.get(pk, {})) <= _POINT_READS_MAX
        try:
            await _retried(lambda: point_reads(pk) if sparse else scan(pk), gate)
        except (AzureError, OSError, TimeoutError) as exc:
            raise ReadFailed(
                "reading the table before writing failed after retries "
                f"({_cause([([], exc)])}); nothing was written"
            ) from exc

    partitions = [f"b{n:02x}" for n in range(PARTITIONS)] if every_partition else list(wanted)
    try:
        # A task group: when one partition's read fails, the others are cancelled.
        async with asyncio.TaskGroup() as group:
            for pk in partitions:
                group.create_task(read(pk))
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return TableState(wanted, dict(present), before)


async def load_rows(
    table: TableClient,
    customers: Sequence[Customer],
    keys: LookupKeys,
    *,
    progress: Progress | None = None,
    state: TableState | None = None,
) -> int:
    """Make every customer's entities hold the export's values; return their count.

    Checks every record first (ValueError naming the line, nothing written). Reads what the
    table holds (``state``, unless given, read against these customers' entities;
    ReadFailed, nothing written, when it cannot), then upserts the rows that differ in
    partition-sized transactions. A customer's rows live in several partitions, and a Table
    transaction covers one: when a transaction still fails after its retries, what was
    written of the customers it held goes back to the values read before (a row the load
    added is deleted), and PartlyWritten names them, with the answers their keys give again.
    """
    for customer in customers:
        problem = _record_problem(customer.record)
        if problem is not None:
            raise ValueError(f"line {customer.line}: {problem}; nothing was written")
    await ensure_table(table)
    if state is None:
        state = await read_table_state(table, _entities(customers, keys))
    by_partition = state.wanted
    operations = {
        pk: [
            (TransactionOperation.UPSERT, e, {"mode": "replace"})
            for rk, e in rows.items()
            if (pk, rk) in state.before
        ]
        for pk, rows in by_partition.items()
    }
    operations = {pk: ops for pk, ops in operations.items() if ops}
    total = sum(len(rows) for rows in by_partition.values())
    changing = sum(len(ops) for ops in operations.values())
    failed = await _submit(table, _batches(operations), changing, progress)
    if failed:
        raise await _undo(table, customers, keys, state, failed, total)
    return total


async def _put_back(
    table: TableClient, pk: str, rk: str, old: dict[str, Any] | None, gate: asyncio.Semaphore
) -> bool:
    """One row back to its values before the load (deleted when the load added it), one
    entity at a time: a delete in a transaction fails when its row was never written, while
    the async TableClient's delete_entity returns on a 404 (azure-data-tables 12.7.0,
    aio/_table_client_async.py, delete_entity)."""

    async def put() -> None:
        if old is None:
            await table.delete_entity(pk, rk)
        else:
            await table.upsert_entity(
                {"PartitionKey": pk, "RowKey": rk, **old}, mode=UpdateMode.REPLACE
            )

    try:
        await _retried(put, gate)
    except (AzureError, OSError, TimeoutError):
        return False
    return True


async def _undo(
    table: TableClient,
    customers: Sequence[Customer],
    keys: LookupKeys,
    state: TableState,
    failed: list[tuple[Batch, BaseException]],
    total: int,
) -> PartlyWritten:
    """Put back what was written of every customer a failed transaction held."""
    # A failed transaction's own rows are put back too: one of its attempts may have been
    # applied although its answer was lost (a timeout after the commit), and putting back
    # a row that holds its old values already changes nothing.
    missing = _failed_keys(failed)
    # A key belongs to the last row that has it, as _entities keeps that row's values; and
    # a customer is every row with its id, as the export may list one on several rows.
    owner: dict[tuple[str, str], int] = {}
    for index, customer in enumerate(customers):
        for e in entities_for(customer.record, customer.phones, keys):
            owner[(e["PartitionKey"], e["RowKey"])] = index
    held_ids = {customers[owner[key]].record.customer_id for key in missing if key in owner}
    held = [i for i, c in enumerate(customers) if c.record.customer_id in held_ids]
    held_set = set(held)
    unloaded = frozenset(key for key, index in owner.items() if index in held_set)
    back = [(key, state.before[key]) for key in sorted(unloaded) if key in state.before]
    gate = asyncio.Semaphore(_PARALLEL_BATCHES)
    results = await asyncio.gather(*(_put_back(table, pk, rk, old, gate) for (pk, rk), old in back))
    not_back = {key for (key, _), ok in zip(back, results, strict=True) if not ok}
    # A customer is partly written when any row of any of its lines could not be put back.
    partly = {customers[owner[key]].record.customer_id for key in not_back}
    unwritten = [
        Unwritten(
            customers[index].line,
            customers[index].record.customer_id,
            undone=customers[index].record.customer_id not in partly,
        )
        for index in held
    ]
    # What the put-back keys answer again, for Redis: a dip may have cached the load's
    # values between the write and the undo.
    restored: list[tuple[LookupKey, CustomerRecord | None]] = []
    for (pk, rk), old in back:
        key = LookupKey.from_stored(rk)
        if key is not None and (pk, rk) not in not_back:
            restored.append((key, None if old is None else record_of(old)))
    return PartlyWritten(
        total - len(unloaded),
        unwritten,
        0,
        _cause(failed),
        unloaded=unloaded,
        restored=restored,
    )


def _superseded(customers: Sequence[Customer], keys: LookupKeys) -> set[str]:
    """RowKeys that stand for one of the export's own keys in an older form: the key under
    the previous secret during a rotation. A replacing load removes them without counting
    them against ``max_delete``, as it does rows that are not keyed hashes at all."""
    if not keys.rotating:
        return set()
    rows: set[str] = set()
    for customer in customers:
        for kind, value in lookups_of(customer.record.customer_id, customer.phones):
            old = keys.previous_key(kind, value)
            if old is not None:
                rows.add(old.cache_key)
    return rows


async def replace_rows(
    table: TableClient,
    customers: Sequence[Customer],
    keys: LookupKeys,
    *,
    max_delete: float,
    force: bool = False,
    progress: Progress | None = None,
    before_delete: Callable[[list[LookupKey]], Awaitable[None]] | None = None,
) -> tuple[int, int, list[LookupKey]]:
    """Make the table match the export: upsert it, then delete keys it no longer has.

    Refuses (ReplaceRefused, nothing changed) to delete more than ``max_delete`` of the
    table's keys unless ``force``; keys the export still has in another form (the previous
    secret's, or a plain key from before keys were hashed) do not count. Deletes come after
    the upserts, so a number that moved to another customer, or to the new secret, is never
    missing in between. ``before_delete`` is awaited between the two with the keys about to
    go whose answers Redis may hold; if it raises a Redis error, no row is deleted
    (PartlyWritten). Returns the upserted and deleted counts, and the removed keys whose
    answers Redis may hold.
    """
    await ensure_table(table)
    wanted = _entities(customers, keys)
    state = await read_table_state(table, wanted, every_partition=True)
    present = state.present
    gone = {pk: sorted(rows - set(wanted.get(pk, {}))) for pk, rows in present.items()}
    gone = {pk: rows for pk, rows in gone.items() if rows}
    superseded = _superseded(customers, keys)
    older = sum(
        1
        for rows in gone.values()
        for rk in rows
        if rk in superseded or LookupKey.from_stored(rk) is None
    )
    total = sum(len(rows) for rows in present.values()) - older
    removing = sum(len(rows) for rows in gone.values()) - older
    if total and removing > max_delete * total and not force:
        raise ReplaceRefused(
            f"the export would remove {removing} of the table's {total} keys "
            f"({removing / total:.0%}, more than {max_delete:.0%}): is it truncated? "
            "Nothing was changed; pass --force to remove them"
        )
    try:
        upserted = await load_rows(table, customers, keys, progress=progress, state=state)
    except PartlyWritten as exc:
        # No deletes: a key under the previous secret may be all the table has of a number
        # whose new key was not written.
        exc.unremoved = removing + older
        raise
    if before_delete is not None:
        # A plain key (from before keys were hashed) has no answer in Redis under a hashed name.
        going = [key for rows in gone.values() for rk in rows if (key := LookupKey.from_stored(rk))]
        try:
            await before_delete(going)
        except REDIS_ERRORS as exc:
            cause = f"Redis, before the dropped keys' rows went: {type(exc).__name__}: {exc}"
            raise PartlyWritten(upserted, [], removing + older, cause) from exc
    deletes = {
        pk: [(TransactionOperation.DELETE, {"PartitionKey": pk, "RowKey": rk}) for rk in rows]
        for pk, rows in gone.items()
    }
    failed = await _submit(table, _batches(deletes), removing + older, progress)
    kept = _failed_keys(failed)
    # A plain key (from before keys were hashed) has no answer in Redis under a hashed name.
    removed = [
        key
        for pk, rows in gone.items()
        for rk in rows
        if (pk, rk) not in kept and (key := LookupKey.from_stored(rk))
    ]
    if kept:
        deleted = removing + older - len(kept)
        raise PartlyWritten(upserted, [], len(kept), _cause(failed), removed, deleted)
    return upserted, removing + older, removed


def answers_of(
    customers: Sequence[Customer], keys: LookupKeys
) -> list[tuple[LookupKey, CustomerRecord]]:
    """Each lookup key of the export with the answer it should give (a later row wins)."""
    answers: list[tuple[LookupKey, CustomerRecord]] = []
    for rows in _entities(customers, keys).values():
        for entity in rows.values():
            key = LookupKey.from_stored(entity["RowKey"])
            if key is not None:
                answers.append((key, record_of(entity)))
    return answers


def _cell(value: object) -> str:
    """A cell a spreadsheet shows as text, never runs (OWASP, "CSV Injection")."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_rejects(path: Path, rejected: list[Rejected], header: list[str]) -> None:
    """Write the rejected rows to ``path``, by line, reason and the export's columns.

    The rows go to a new file that only its owner can read (mkstemp: mode 0600, created
    exclusively), which then replaces ``path``: whatever was at ``path`` (an older rejects
    file, a symlink someone planted next to the export) is replaced, never followed or
    written through. It holds customers' numbers.
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", newline="", encoding="utf-8") as out:
            # Every cell quoted, so a separator inside one cannot start another.
            writer = csv.writer(out, quoting=csv.QUOTE_ALL)
            writer.writerow([_cell(c) for c in ["line", "reason", *header]])
            for r in rejected:
                writer.writerow(
                    [_cell(c) for c in [r.line, r.reason, *(r.row.get(h, "") for h in header)]]
                )
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


async def load_file(
    path: Path,
    table: TableClient,
    region: str,
    keys: LookupKeys,
    *,
    progress: Progress | None = None,
    read_model: ReadModelWriter | None = None,
    replace: bool = False,
    max_delete: float = 0.1,
    force: bool = False,
) -> LoadReport:
    report = LoadReport()
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        header = _header(csv.reader([handle.readline()]))
        handle.seek(0)
        good: list[Customer] = []
        for item in parse_rows(handle, region):
            if isinstance(item, Rejected):
                report.rejected.append(item)
            else:
                good.append(item)
    report.customers = len(good)
    # The rejects file first, so it is there whatever the load does next.
    rejects_path = path.with_suffix(".rejects.csv")
    if report.rejected:
        write_rejects(rejects_path, report.rejected, header)
    elif rejects_path.is_file() or rejects_path.is_symlink():
        rejects_path.unlink()
    removed: list[LookupKey] = []
    if replace and report.rejected:
        # A rejected row's customer is missing from ``good``: replacing would delete them.
        raise ReplaceRefused(
            f"{len(report.rejected)} rows were rejected (first: line "
            f"{report.rejected[0].line}, {report.rejected[0].reason}), and --replace would "
            "remove their customers from the table. Nothing was changed; fix the rows, or "
            "load without --replace"
        )
    answers = answers_of(good, keys)
    announced: frozenset[str] = frozenset()
    if read_model is not None:
        # Filters first, then the table: a new customer is never "absent" meanwhile.
        try:
            await read_model.follow_server_clock()
            announced = await read_model.announce([key for key, _ in answers])
        except REDIS_ERRORS as exc:
            report.redis_error = f"{type(exc).__name__}: {exc}"
    if replace and (read_model is None or report.redis_error is not None):
        # Redis may hold an answer for every key the export drops, fresh for up to a read
        # model's age: it has to go with the key's rows. During a rotation the read model
        # must also learn the new keys before the previous secret's rows go.
        raise ReplaceRefused(
            "a replacing load needs Redis: the answers Redis holds for the keys the export "
            "drops must be replaced when their rows go. Nothing was changed; load again "
            "when Redis answers, or load without --replace"
        )
    settled = False
    restored: list[tuple[LookupKey, CustomerRecord | None]] = []

    async def settle(going: list[LookupKey]) -> None:
        # The export's answers, then "no customer" for the keys it drops, before any row
        # goes: a dip meanwhile finds what the export says, and during a rotation the
        # current secret's key answers before the previous secret's row is gone. A "no
        # customer" lives NEGATIVE_TTL_SECONDS, fewer than the deletes may take, so the
        # deleted keys are answered "no customer" once more after them (below): a dip that
        # read a row before it went cached it as of an earlier time, and loses.
        nonlocal settled
        assert read_model is not None
        report.written_through = await read_model.write(answers, announced)
        if going:
            await read_model.remove(going)
        settled = True

    try:
        if replace:
            report.entities, report.removed, removed = await replace_rows(
                table,
                good,
                keys,
                max_delete=max_delete,
                force=force,
                progress=progress,
                before_delete=settle,
            )
        else:
            report.entities = await load_rows(table, good, keys, progress=progress)
    except PartlyWritten as exc:
        # The other customers' answers still go through to Redis; those not loaded keep
        # what Redis has, as the table keeps what it had, until the export is loaded again.
        answers = [(k, r) for k, r in answers if table_keys(k) not in exc.unloaded]
        restored = exc.restored
        report.entities = exc.written
        report.unwritten = exc.unwritten
        report.unremoved = exc.unremoved
        report.write_error = exc.cause
        removed = exc.removed
        report.removed = exc.deleted
    if read_model is not None:
        try:
            # Rows put back after a failed transaction first answer as they did before the
            # load, over anything a dip cached of them in between (these entries are newer).
            if back := [(k, r) for k, r in restored if r is not None]:
                await read_model.write(back, announced)
            if gone := [k for k, r in restored if r is None]:
                await read_model.remove(gone)
            if not settled:
                report.written_through = await read_model.write(answers, announced)
                report.redis_error = None  # the filters have the keys now, whatever announce did
            if removed:
                await read_model.remove(removed)
        except REDIS_ERRORS as exc:
            if not settled:
                report.written_through = None
            report.redis_error = f"{type(exc).__name__}: {exc}"
    return report
