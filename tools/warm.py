"""Warm the read model now: ``python -m tools.warm [--no-progress]``.

Pages the whole customer table into Redis in the dip's own entry format and builds the
Bloom filter that answers unknown numbers without a read, as the ``cache_warm`` timer does
(shared/dip/warm.py): within the warm's share of the valve, resumable, one warm at a time.
Run it before an announced spike, or once Redis is back after a load could not write
through to it.

Exit code: 0 when the warm completed, 1 when it stopped early (the next warm resumes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from tqdm import tqdm

from app.settings import load_settings
from shared.clients import make_redis, make_table_client
from shared.dip.customers import PARTITIONS
from shared.dip.warm import Warm, WarmReport, warm_valve
from shared.settings import with_local_settings

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.warm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--table", help="table name (default: CUSTOMER_TABLE)")
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=60.0,
        help="how long a warm that is killed keeps others out (default 60)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    settings = load_settings(with_local_settings())

    async def run() -> WarmReport:
        redis = make_redis(settings.core, bulk=True)
        bar = tqdm(total=PARTITIONS, unit="partition", disable=args.no_progress, file=sys.stderr)

        def progress(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

        try:
            async with make_table_client(
                settings.core, args.table or settings.core.customer_table
            ) as t:
                warm = Warm(
                    redis,
                    t,
                    warm_valve(redis, settings.dip),
                    max_age_s=settings.dip.read_model_max_age_seconds,
                    stale_ttl_s=settings.dip.stale_ttl_seconds,
                    share=settings.dip.warm_share,
                    lease_s=args.lease_seconds,
                    progress=progress,
                )
                return await warm.run()
        finally:
            bar.close()
            await redis.aclose()

    report = asyncio.run(run())
    return 0 if report.completed else 1


if __name__ == "__main__":
    raise SystemExit(main())
