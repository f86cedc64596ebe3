"""Load a CRM export into the customer table: ``python -m tools.load PATH.csv``.

Columns: ``customerId,phone,tier,isVip[,preferredLanguage]``. ``phone`` is optional and
may hold several numbers separated by ``;``; they are normalised like ANIs.

Bad rows are reported with their line numbers and written to ``<input>.rejects.csv``
while the good rows still load. Upserts are idempotent, so a re-run is safe.

Every loaded answer is also written through to the read model in Redis, so a changed tier
or a number that moved to another customer answers right away, not after the next warm.
When Redis cannot be reached the table still loads, and the next warm catches up.

``--replace`` makes the table match the export, as a full CRM snapshot is meant to: keys
no longer in it (a number that left a customer, a deleted customer) are answered "no
customer" in Redis and then removed from the table. It refuses, unless ``--force``, to
remove more than ``--max-delete`` of the keys (10% by default), so a truncated export cannot
wipe the table. It needs Redis, since a removed key's cached answer must go with its rows:
without it (or with ``--no-write-through``) it refuses and changes nothing.

A line the CSV reader cannot read (a field over 4096 characters) is rejected like a bad
row. The rejects file is readable by its owner only, and a cell that a spreadsheet would
run as a formula is written with a leading ``'``.

The loader reads what the table holds first and writes only the rows that change. A
transaction that fails is retried; if it still fails, what was written of the customers it
held is put back as it was, those customers are listed by line and id, and loading the same
export again finishes the job.

Exit code: 0 when every row loaded, 2 when rows were rejected, 1 when loading failed (a
transaction failed after its retries) or a replace was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from azure.core.exceptions import AzureError
from tqdm import tqdm

from app.settings import load_settings
from shared.clients import make_redis, make_table_client
from shared.dip.keys import LookupKeys
from shared.dip.loader import LoadReport, ReplaceRefused, load_file
from shared.dip.readmodel import ReadModelWriter
from shared.settings import with_local_settings

__all__ = ["entity_bar", "main"]


@contextlib.contextmanager
def entity_bar(total: int) -> Iterator[Callable[[int], object]]:
    """A progress bar on stderr over one pass of ``total`` entities (a loader ``Progress``)."""
    with tqdm(total=total, unit="entity", file=sys.stderr) as bar:
        yield bar.update


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.load",
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
    if args.replace and args.no_write_through:
        # A refusal, exit 1 as every refusal: 2 means rows were rejected.
        print(
            f"loader: {args.csv}: refused: --replace needs the write-through: the answers "
            "Redis holds for the keys the export drops must be replaced when their rows go. "
            "Nothing was changed",
            file=sys.stderr,
        )
        return 1
    settings = load_settings(with_local_settings())
    if not args.csv.exists():
        print(f"loader: {args.csv} does not exist", file=sys.stderr)
        return 1

    async def run() -> LoadReport:
        redis = None if args.no_write_through else make_redis(settings.core, bulk=True)
        writer = (
            None
            if redis is None
            else ReadModelWriter(
                redis,
                max_age_s=settings.dip.read_model_max_age_seconds,
                stale_ttl_s=settings.dip.stale_ttl_seconds,
                negative_ttl_s=settings.dip.negative_ttl_seconds,
            )
        )
        try:
            async with make_table_client(
                settings.core, args.table or settings.core.customer_table
            ) as table:
                return await load_file(
                    args.csv,
                    table,
                    settings.dip.default_region,
                    LookupKeys(
                        settings.dip.lookup_key_secret, settings.dip.lookup_key_secret_previous
                    ),
                    progress=None if args.no_progress else entity_bar,
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
    except (AzureError, OSError) as exc:
        # The type and status only: an Azure error's message may hold a request's URL.
        status = getattr(exc, "status_code", None)
        what = f"{type(exc).__name__}{f' {status}' if status else ''}"
        print(f"loader: {args.csv}: failed ({what})", file=sys.stderr)
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
            "customers may be answered as unknown, so run python -m tools.warm once "
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
    if report.write_error is not None:
        for u in report.unwritten:
            state = "not loaded, left as it was" if u.undone else "partly written"
            print(f"loader: {args.csv}:{u.line}: customer {u.customer_id} {state}", file=sys.stderr)
        partly = sum(1 for u in report.unwritten if not u.undone)
        unremoved = (
            f", and {report.unremoved} keys the export no longer has were not removed"
            if report.unremoved
            else ""
        )
        print(
            f"loader: writing failed after retries ({report.write_error}): "
            f"{len(report.unwritten)} customers not loaded ({partly} of them partly "
            f"written){unremoved}. Loading the same export again is safe (every write is an "
            "idempotent upsert or delete) and finishes the job",
            file=sys.stderr,
        )
        return 1
    return 2 if report.rejected else 0


if __name__ == "__main__":
    raise SystemExit(main())
