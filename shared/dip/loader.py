"""Load a CRM export into the customer table; operators run ``python -m tools.load``.

Columns: ``customerId,phone,tier,isVip[,preferredLanguage]``. ``phone`` is optional and
may hold several numbers separated by ``;``; they are normalised like ANIs. Each customer
becomes one entity findable by id plus one per number (see ``customers``).

Bad rows are reported with their line numbers and written to ``<input>.rejects.csv``
while the good rows still load. Upserts are idempotent, so a re-run is safe.

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
import csv
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.data.tables import TransactionOperation
from azure.data.tables.aio import TableClient

from shared.clients import REDIS_ERRORS, ensure_table
from shared.dip.customers import PARTITIONS, CustomerRecord, entities_for, record_of
from shared.dip.keys import KeyKind, LookupKey, LookupKeys
from shared.dip.phone import normalize_number
from shared.dip.readmodel import ReadModelWriter

__all__ = [
    "LoadReport",
    "Progress",
    "Rejected",
    "ReplaceRefused",
    "load_file",
    "load_rows",
    "parse_rows",
]

REQUIRED_COLUMNS = ("customerId", "phone", "tier", "isVip")
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}
# A Table transaction holds at most 100 operations, all in one partition.
_BATCH = 100
_PARALLEL_BATCHES = 8

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


class ReplaceRefused(Exception):
    """--replace would remove more keys than allowed; nothing was changed."""


def _parse_row(row: dict[str, str], line: int, region: str) -> Customer | Rejected:
    def text(name: str) -> str:
        return (row.get(name) or "").strip()

    customer_id = text("customerId")
    if not _CUSTOMER_ID.match(customer_id):
        return Rejected(line, "customerId must be 1-64 letters, digits, '_' or '-'", row)
    tier = text("tier")
    if not tier:
        return Rejected(line, "tier is empty", row)
    vip = text("isVip").lower()
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
    record = CustomerRecord(customer_id, tier, vip in _TRUE, text("preferredLanguage"))
    return Customer(line, record, tuple(phones))


def parse_rows(lines: Iterable[str], region: str) -> Iterator[Customer | Rejected]:
    """Validate CSV text row by row; a bad header rejects nothing but raises ValueError."""
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"the header lacks column(s) {', '.join(missing)}; "
            f"expected {','.join(REQUIRED_COLUMNS)}[,preferredLanguage]"
        )
    for row in reader:
        # Line numbers as an editor shows them: the header is line 1.
        line = reader.line_num
        if None in row:
            yield Rejected(line, "too many fields", {k: v for k, v in row.items() if k})
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


async def _submit(
    table: TableClient,
    batches: list[list[tuple[Any, ...]]],
    count: int,
    progress: Progress | None,
) -> None:
    gate = asyncio.Semaphore(_PARALLEL_BATCHES)
    shown: AbstractContextManager[Callable[[int], object]] = (
        nullcontext(_unshown) if progress is None else progress(count)
    )
    with shown as advance:

        async def submit(batch: list[tuple[Any, ...]]) -> None:
            async with gate:
                await table.submit_transaction(batch)
            advance(len(batch))

        await asyncio.gather(*(submit(b) for b in batches))


def _batches(by_partition: dict[str, list[tuple[Any, ...]]]) -> list[list[tuple[Any, ...]]]:
    # A Table transaction holds at most 100 operations, all in one partition.
    return [
        ops[i : i + _BATCH] for ops in by_partition.values() for i in range(0, len(ops), _BATCH)
    ]


async def load_rows(
    table: TableClient,
    customers: Sequence[Customer],
    keys: LookupKeys,
    *,
    progress: Progress | None = None,
) -> int:
    """Upsert every customer's entities in partition-sized transactions; return the count."""
    await ensure_table(table)
    by_partition = _entities(customers, keys)
    operations = {
        pk: [(TransactionOperation.UPSERT, e, {"mode": "replace"}) for e in rows.values()]
        for pk, rows in by_partition.items()
    }
    total = sum(len(rows) for rows in by_partition.values())
    await _submit(table, _batches(operations), total, progress)
    return total


async def existing_keys(table: TableClient) -> dict[str, set[str]]:
    """Every RowKey in the table, by partition (one query per partition, keys only)."""
    found: dict[str, set[str]] = defaultdict(set)
    for n in range(PARTITIONS):
        pk = f"b{n:02x}"
        async for entity in table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"]
        ):
            found[pk].add(str(entity["RowKey"]))
    return found


def _superseded(customers: Sequence[Customer], keys: LookupKeys) -> set[str]:
    """RowKeys that stand for one of the export's own keys in an older form: the key under
    the previous secret during a rotation. A replacing load removes them without counting
    them against ``max_delete``, as it does rows that are not keyed hashes at all."""
    if not keys.rotating:
        return set()
    rows: set[str] = set()
    for customer in customers:
        lookups: list[tuple[KeyKind, str]] = [("customerId", customer.record.customer_id)]
        lookups += [("ani", phone) for phone in customer.phones]
        for kind, value in lookups:
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
) -> tuple[int, int, list[LookupKey]]:
    """Make the table match the export: upsert it, then delete keys it no longer has.

    Refuses (ReplaceRefused, nothing changed) to delete more than ``max_delete`` of the
    table's keys unless ``force``; keys the export still has in another form (the previous
    secret's, or a plain key from before keys were hashed) do not count. Deletes come after
    the upserts, so a number that moved to another customer, or to the new secret, is never
    missing in between. Returns the upserted and deleted counts, and the removed keys
    whose answers Redis may hold.
    """
    await ensure_table(table)
    wanted = _entities(customers, keys)
    present = await existing_keys(table)
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
    upserted = await load_rows(table, customers, keys, progress=progress)
    deletes = {
        pk: [(TransactionOperation.DELETE, {"PartitionKey": pk, "RowKey": rk}) for rk in rows]
        for pk, rows in gone.items()
    }
    await _submit(table, _batches(deletes), removing + older, progress)
    # A plain key (from before keys were hashed) has no answer in Redis under a hashed name.
    removed = [key for rows in gone.values() for rk in rows if (key := LookupKey.from_stored(rk))]
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


def _write_rejects(path: Path, rejected: list[Rejected], header: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "reason", *header])
        for r in rejected:
            writer.writerow([r.line, r.reason, *(r.row.get(h, "") for h in header)])


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
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader([handle.readline()]), [])
        handle.seek(0)
        good: list[Customer] = []
        for item in parse_rows(handle, region):
            if isinstance(item, Rejected):
                report.rejected.append(item)
            else:
                good.append(item)
    report.customers = len(good)
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
            announced = await read_model.announce([key for key, _ in answers])
        except REDIS_ERRORS as exc:
            report.redis_error = f"{type(exc).__name__}: {exc}"
    if replace:
        report.entities, report.removed, removed = await replace_rows(
            table, good, keys, max_delete=max_delete, force=force, progress=progress
        )
    else:
        report.entities = await load_rows(table, good, keys, progress=progress)
    if read_model is not None:
        try:
            report.written_through = await read_model.write(answers, announced)
            report.redis_error = None  # the filters have the keys now, whatever announce did
            if removed:
                await read_model.remove(removed)
        except REDIS_ERRORS as exc:
            report.written_through = None
            report.redis_error = f"{type(exc).__name__}: {exc}"
    rejects_path = path.with_suffix(".rejects.csv")
    if report.rejected:
        _write_rejects(rejects_path, report.rejected, header)
    elif rejects_path.exists():
        rejects_path.unlink()
    return report
