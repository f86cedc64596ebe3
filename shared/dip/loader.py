"""Load a CRM export into the customer table: ``python -m shared.dip.loader PATH.csv``.

Columns: ``customerId,phone,tier,isVip[,preferredLanguage]``. ``phone`` is optional and
may hold several numbers separated by ``;``; they are normalised like ANIs. Each customer
becomes one entity findable by id plus one per number (see ``customers``).

Bad rows are reported with their line numbers and written to ``<input>.rejects.csv``
while the good rows still load. Upserts are idempotent, so a re-run is safe.
Exit code: 0 when every row loaded, 2 when rows were rejected, 1 when loading failed.
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

from shared.clients import ensure_table, make_table_client
from shared.dip.customers import CustomerRecord, entities_for
from shared.dip.phone import normalize_number
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


async def load_rows(
    table: TableClient, customers: Sequence[Customer], *, progress: bool = True
) -> int:
    """Upsert every customer's entities in partition-sized transactions; return the count."""
    await ensure_table(table)
    by_partition: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for customer in customers:
        for entity in entities_for(customer.record, customer.phones):
            # A later row for the same key wins, as a re-run of the export would.
            by_partition[entity["PartitionKey"]][entity["RowKey"]] = entity
    batches = [
        list(entities.values())[i : i + _BATCH]
        for entities in by_partition.values()
        for i in range(0, len(entities), _BATCH)
    ]
    total = sum(len(b) for b in batches)
    gate = asyncio.Semaphore(_PARALLEL_BATCHES)
    with tqdm(total=total, unit="entity", disable=not progress, file=sys.stderr) as bar:

        async def submit(batch: list[dict[str, Any]]) -> None:
            async with gate:
                await table.submit_transaction(
                    [(TransactionOperation.UPSERT, e, {"mode": "replace"}) for e in batch]
                )
            bar.update(len(batch))

        await asyncio.gather(*(submit(b) for b in batches))
    return total


def _write_rejects(path: Path, rejected: list[Rejected], header: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "reason", *header])
        for r in rejected:
            writer.writerow([r.line, r.reason, *(r.row.get(h, "") for h in header)])


async def load_file(
    path: Path, table: TableClient, region: str, *, progress: bool = True
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
    report.entities = await load_rows(table, good, progress=progress)
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
    args = parser.parse_args(argv)
    settings = load_settings(with_local_settings())
    if not args.csv.exists():
        print(f"loader: {args.csv} does not exist", file=sys.stderr)
        return 1

    async def run() -> LoadReport:
        async with make_table_client(settings, args.table or settings.customer_table) as table:
            return await load_file(
                args.csv, table, settings.default_region, progress=not args.no_progress
            )

    try:
        report = asyncio.run(run())
    except ValueError as exc:
        print(f"loader: {args.csv}: {exc}", file=sys.stderr)
        return 1
    for r in report.rejected:
        print(f"loader: {args.csv}:{r.line}: rejected: {r.reason}", file=sys.stderr)
    print(
        f"loader: loaded {report.customers} customers ({report.entities} entities); "
        f"rejected {len(report.rejected)} rows",
        file=sys.stderr,
    )
    if report.rejected:
        print(
            f"loader: rejected rows written to {args.csv.with_suffix('.rejects.csv')}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
