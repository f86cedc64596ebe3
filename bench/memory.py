"""Measure the warm read model's Redis memory: ``python -m bench.memory [--customers N]``.

Loads the benchmark's synthetic population (bench/population.py: one or two numbers per
customer, so about 2.45 lookup keys each) into Azurite through the loader, warms it into a
redis-server of its own with the app's own warm (shared/dip/warm.py), and reads Redis's
``used_memory`` before and after. What the warm adds is split into:

  answers   one cached answer per lookup key (customer id and each number), measured;
  filters   the 256 Bloom filters that prove a caller absent, sized by
            ``bloom_bits_for`` and measured with MEMORY USAGE.

From the measured bytes per lookup key it prints the sizing table docs/readmodel.md quotes:
100k, 1M and 5M customers -> Redis memory -> the smallest Azure Managed Redis Balanced SKU
with at least twice that memory (a SKU reserves about 20% of its memory for replication and other
work, and the table grows). Exit code 0, or 2 when the warm does not complete.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from azure.data.tables.aio import TableClient

from app.runtime import Runtime
from app.settings import load_settings
from bench.population import Population, ensure_loaded
from bench.procs import Azurite, RedisServer, port_open, table_connection_string
from shared.dip.cache import ANSWER_PREFIX
from shared.dip.customers import PARTITIONS
from shared.dip.keys import LOCAL_SECRET
from shared.dip.readmodel import bloom_bits_for
from tools.capacity import KEYS_PER_CUSTOMER, redis_sku

__all__ = ["main", "measure", "sizing"]


def sizing(
    bytes_per_key: float, keys_per_customer: float = KEYS_PER_CUSTOMER
) -> list[dict[str, Any]]:
    """The sizing table: answers at the measured rate plus the filters bloom_bits_for sizes."""
    rows = []
    for customers in (100_000, 1_000_000, 5_000_000):
        keys = customers * keys_per_customer
        filters = bloom_bits_for(round(keys)) * PARTITIONS / 8
        total = keys * bytes_per_key + filters
        rows.append(
            {
                "customers": customers,
                "lookupKeys": round(keys),
                "answersMB": round(keys * bytes_per_key / 1e6, 1),
                "filtersMB": round(filters / 1e6, 1),
                "totalMB": round(total / 1e6, 1),
                "sku": redis_sku(total),
            }
        )
    return rows


async def _used(redis: aioredis.Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def _keys(redis: aioredis.Redis, prefix: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]


async def measure(customers: int, azurite_port: int, table: str) -> dict[str, Any]:
    population = Population.build(customers)
    redis_server = RedisServer()
    azurite = None if port_open(azurite_port) else Azurite(azurite_port)
    if azurite is not None:
        azurite.start()
    redis_server.start()
    try:
        async with TableClient.from_connection_string(
            table_connection_string(azurite_port), table_name=table
        ) as client:
            with tempfile.TemporaryDirectory() as work:
                await ensure_loaded(client, population, Path(work), progress=False)
        env = {
            "REDIS_URL": redis_server.url,
            "CustomerStorage": table_connection_string(azurite_port),
            "CUSTOMER_TABLE": table,
            "LOOKUP_KEY_SECRET": LOCAL_SECRET,
        }
        rt = Runtime(load_settings(env))
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            before = await _used(redis)
            report = await rt.warm().run()
            after = await _used(redis)
            answers = len(await _keys(redis, ANSWER_PREFIX))
            filters = await _keys(redis, "dipguard:readmodel:bloom:")
            filter_bytes = 0
            for key in filters:
                filter_bytes += int(await redis.memory_usage(key) or 0)
        finally:
            await redis.aclose()
            await rt.close()
    finally:
        redis_server.stop()
        if azurite is not None:
            azurite.stop()
    answer_bytes = after - before - filter_bytes
    per_key = answer_bytes / answers
    keys_per_customer = answers / (customers + 1)  # the population's marker row is one more
    return {
        "customers": customers,
        "warmCompleted": report.completed,
        "entities": report.entities,
        "answerKeys": answers,
        "keysPerCustomer": round(keys_per_customer, 2),
        "usedMemoryBefore": before,
        "usedMemoryAfter": after,
        "filterKeys": len(filters),
        "filterBytes": filter_bytes,
        "bytesPerLookupKey": round(per_key, 1),
        "bytesPerCustomer": round(per_key * keys_per_customer, 1),
        "sizing": sizing(per_key, keys_per_customer),
    }


def _table(result: dict[str, Any]) -> str:
    lines = [
        "| Customers | Lookup keys | Answers | Filters | Redis memory | SKU (2x headroom) |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["sizing"]:
        lines.append(
            f"| {row['customers']:,} | {row['lookupKeys']:,} | {row['answersMB']:,} MB "
            f"| {row['filtersMB']:,} MB | {row['totalMB']:,} MB | {row['sku']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000, help="population to warm")
    parser.add_argument("--azurite-port", type=int, default=10002)
    parser.add_argument("--table", default="benchmemory", help="Azurite table (kept)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.customers < 1_000:
        parser.error("--customers: at least 1000, or Redis's own overhead dominates")
    result = asyncio.run(measure(args.customers, args.azurite_port, args.table))
    print(
        f"warmed {result['customers']:,} customers: {result['answerKeys']:,} answers "
        f"({result['keysPerCustomer']} per customer), {result['bytesPerLookupKey']} bytes per "
        f"lookup key, {result['bytesPerCustomer']} per customer; filters "
        f"{result['filterBytes'] / 1e6:.1f} MB in {result['filterKeys']} keys"
    )
    print(_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["warmCompleted"] else 2


if __name__ == "__main__":
    sys.exit(main())
