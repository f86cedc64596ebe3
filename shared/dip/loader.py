"""Load a CRM export into the customer table: ``python -m shared.dip.loader PATH.csv``.

Columns: ``customerId,phone,tier,isVip[,preferredLanguage]``. ``phone`` is optional and
may hold several numbers separated by ``;``; they are normalised like ANIs. Each customer
becomes one entity findable by id plus one per number (see ``customers``).

Bad rows are reported with their line numbers and written to ``<input>.rejects.csv``
while the good rows still load. Upserts are idempotent, so a re-run is safe.

Every loaded answer is also written through to the read model in Redis, so a changed tier
or a number that moved to another customer answers right away, not after the next warm.
When Redis cannot be reached the table still loads, and the next warm catches up.

``--replace`` makes the table match the export, as a full CRM snapshot is meant to: keys
no longer in it (a number that left a customer, a deleted customer) are removed from the
table and answered "no customer" in Redis. It refuses, unless ``--force``, to remove more
than ``--max-delete`` of the keys (10% by default), so a truncated export cannot wipe the
table.

Exit code: 0 when every row loaded, 2 when rows were rejected, 1 when loading failed or a
replace was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.data.tables import TransactionOperation
from azure.data.tables.aio import TableClient
from tqdm import tqdm

from shared.clients import REDIS_ERRORS, ensure_table, make_redis, make_table_client
from shared.dip.customers import (
    PARTITIONS,
    CustomerRecord,
    LookupKey,
    decode_key,
    entities_for,
    record_of,
)
from shared.dip.phone import normalize_number
from shared.dip.readmodel import ReadModelWriter
from shared.settings import load_settings, with_local_settings

__all__ = ["LoadReport", "Rejected", "load_rows", "main", "parse_rows"]

REQUIRED_COLUMNS = ("customerId", "phone", "tier", "isVip")
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}
# A Table transaction holds at most 100 operations, all in one partition.
_BATCH = 100
_PARALLEL_BATCHES = 8


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
        return Rejected(line, f"isVip must be true or false, got {text('isVip')!r}", row)
    phones: list[str] = []
    for raw in filter(None, (p.strip() for p in text("phone").split(";"))):
        number = normalize_number(raw, region)
        if number is None:
            return Rejected(line, f"phone {raw!r} is not a phone number", row)
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


def _entities(customers: Sequence[Customer]) -> dict[str, dict[str, dict[str, Any]]]:
    """The export's entities by partition and RowKey; a later row for a key wins, as a
    re-run of the export would."""
    by_partition: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for customer in customers:
        for entity in entities_for(customer.record, customer.phones):
            by_partition[entity["PartitionKey"]][entity["RowKey"]] = entity
    return by_partition


async def _submit(
    table: TableClient, batches: list[list[tuple[Any, ...]]], count: int, progress: bool
) -> None:
    gate = asyncio.Semaphore(_PARALLEL_BATCHES)
    with tqdm(total=count, unit="entity", disable=not progress, file=sys.stderr) as bar:

        async def submit(batch: list[tuple[Any, ...]]) -> None:
            async with gate:
                await table.submit_transaction(batch)
            bar.update(len(batch))

        await asyncio.gather(*(submit(b) for b in batches))


def _batches(by_partition: dict[str, list[tuple[Any, ...]]]) -> list[list[tuple[Any, ...]]]:
    # A Table transaction holds at most 100 operations, all in one partition.
    return [
        ops[i : i + _BATCH] for ops in by_partition.values() for i in range(0, len(ops), _BATCH)
    ]


async def load_rows(
    table: TableClient, customers: Sequence[Customer], *, progress: bool = True
) -> int:
    """Upsert every customer's entities in partition-sized transactions; return the count."""
    await ensure_table(table)
    by_partition = _entities(customers)
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


async def replace_rows(
    table: TableClient,
    customers: Sequence[Customer],
    *,
    max_delete: float,
    force: bool = False,
    progress: bool = True,
) -> tuple[int, list[LookupKey]]:
    """Make the table match the export: upsert it, then delete keys it no longer has.

    Refuses (ReplaceRefused, nothing changed) to delete more than ``max_delete`` of the
    table's keys unless ``force``. Deletes come after the upserts, so a number that moved
    to another customer is never missing in between. Returns the upserted count and the
    keys removed.
    """
    await ensure_table(table)
    wanted = _entities(customers)
    present = await existing_keys(table)
    gone = {pk: sorted(rows - set(wanted.get(pk, {}))) for pk, rows in present.items()}
    gone = {pk: rows for pk, rows in gone.items() if rows}
    total = sum(len(rows) for rows in present.values())
    removing = sum(len(rows) for rows in gone.values())
    if total and removing > max_delete * total and not force:
        raise ReplaceRefused(
            f"the export would remove {removing} of the table's {total} keys "
            f"({removing / total:.0%}, more than {max_delete:.0%}): is it truncated? "
            "Nothing was changed; pass --force to remove them"
        )
    upserted = await load_rows(table, customers, progress=progress)
    deletes = {
        pk: [(TransactionOperation.DELETE, {"PartitionKey": pk, "RowKey": rk}) for rk in rows]
        for pk, rows in gone.items()
    }
    await _submit(table, _batches(deletes), removing, progress)
    removed = [key for rows in gone.values() for rk in rows if (key := decode_key(rk))]
    return upserted, removed


def answers_of(customers: Sequence[Customer]) -> list[tuple[LookupKey, CustomerRecord]]:
    """Each lookup key of the export with the answer it should give (a later row wins)."""
    answers: list[tuple[LookupKey, CustomerRecord]] = []
    for rows in _entities(customers).values():
        for entity in rows.values():
            key = decode_key(entity["RowKey"])
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
    *,
    progress: bool = True,
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
    answers = answers_of(good)
    announced: frozenset[str] = frozenset()
    if read_model is not None:
        # Filters first, then the table: a new customer is never "absent" meanwhile.
        try:
            announced = await read_model.announce([key for key, _ in answers])
        except REDIS_ERRORS as exc:
            report.redis_error = f"{type(exc).__name__}: {exc}"
    if replace:
        report.entities, removed = await replace_rows(
            table, good, max_delete=max_delete, force=force, progress=progress
        )
        report.removed = len(removed)
    else:
        report.entities = await load_rows(table, good, progress=progress)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.dip.loader",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("csv", type=Path, help="CRM export to load")
    parser.add_argument("--table", help="table name (default: CUSTOMER_TABLE)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="make the table match the export: remove keys it no longer has",
    )
    parser.add_argument(
        "--max-delete",
        type=float,
        default=0.1,
        metavar="SHARE",
        help="with --replace, refuse to remove more than this share of the "
        "table's keys (default 0.1)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --replace, remove however many keys the export drops",
    )
    parser.add_argument(
        "--no-write-through",
        action="store_true",
        help="leave Redis alone; the next warm picks the changes up (until then, while a "
        "fresh warm answers for absent callers, a new customer is answered as unknown)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.max_delete <= 1:
        parser.error("--max-delete must be a share from 0 to 1")
    settings = load_settings(with_local_settings())
    if not args.csv.exists():
        print(f"loader: {args.csv} does not exist", file=sys.stderr)
        return 1

    async def run() -> LoadReport:
        redis = None if args.no_write_through else make_redis(settings, bulk=True)
        writer = (
            None
            if redis is None
            else ReadModelWriter(
                redis,
                max_age_s=settings.read_model_max_age_seconds,
                stale_ttl_s=settings.stale_ttl_seconds,
            )
        )
        try:
            async with make_table_client(settings, args.table or settings.customer_table) as table:
                return await load_file(
                    args.csv,
                    table,
                    settings.default_region,
                    progress=not args.no_progress,
                    read_model=writer,
                    replace=args.replace,
                    max_delete=args.max_delete,
                    force=args.force,
                )
        finally:
            if redis is not None:
                await redis.aclose()

    try:
        report = asyncio.run(run())
    except ReplaceRefused as exc:
        print(f"loader: {args.csv}: refused: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"loader: {args.csv}: {exc}", file=sys.stderr)
        return 1
    for r in report.rejected:
        print(f"loader: {args.csv}:{r.line}: rejected: {r.reason}", file=sys.stderr)
    removed = f"; removed {report.removed} keys the export no longer has" if args.replace else ""
    print(
        f"loader: loaded {report.customers} customers ({report.entities} entities); "
        f"rejected {len(report.rejected)} rows{removed}",
        file=sys.stderr,
    )
    if report.redis_error is not None:
        print(
            f"loader: Redis could not be reached ({report.redis_error}): the table is "
            "loaded, and the next warm brings the read model up to date; until then new "
            "customers may be answered as unknown, so run python -m shared.dip.warm once "
            "Redis is back",
            file=sys.stderr,
        )
    elif not args.no_write_through:
        print(f"loader: wrote {report.written_through} answers through to Redis", file=sys.stderr)
    if report.rejected:
        print(
            f"loader: rejected rows written to {args.csv.with_suffix('.rejects.csv')}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
