"""The warm command, run as an operator runs it: killed in the middle of a warm, then run
again, it resumes where it stopped. Against a real Azurite and a redis-server of this
module's own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

import redis.asyncio as aioredis
from azure.data.tables.aio import TableClient

from shared.dip.breaker import Breaker
from shared.dip.cache import RedisCache
from shared.dip.customers import PARTITIONS
from shared.dip.readmodel import CURSOR_KEY
from tests.support.customers import keys_of, load
from tests.support.keys import SECRET
from tests.support.services import ROOT, Azurite, RedisServer


async def start_warm(
    env: dict[str, str], *args: str, stderr: int = subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.warm",
        "--no-progress",
        *args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def report_of(stderr: bytes) -> dict[str, Any]:
    """The warm's one log line, ``cache_warm {json}``, as a dict."""
    lines = [line for line in stderr.decode().splitlines() if line.startswith("cache_warm {")]
    assert len(lines) == 1, stderr.decode()[-2000:]
    report: dict[str, Any] = json.loads(lines[0].removeprefix("cache_warm "))
    return report


async def test_a_killed_warm_resumes_where_it_stopped(
    redis: aioredis.Redis, table: TableClient, own_redis: RedisServer, azurite: Azurite
) -> None:
    people = await load(table, 300)
    env = {
        **os.environ,
        "CustomerStorage": azurite.connection_string,
        "LOOKUP_KEY_SECRET": SECRET,
        "CUSTOMER_TABLE": table.table_name,
        "REDIS_URL": own_redis.url,
        # A share of 10 pages a second: 256 pages take about 26 s, so the kill lands
        # in the middle of the warm.
        "MAX_DB_QPS": "40",
        "LOCAL_DB_QPS": "10",
    }
    proc = await start_warm(env, "--lease-seconds", "2")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pages = await redis.hget(CURSOR_KEY, "pages")
            if pages is not None and int(pages) >= 20:
                break
            await asyncio.sleep(0.1)
    finally:
        proc.kill()
        await asyncio.wait_for(proc.wait(), 10)
    done_before = int(await redis.hget(CURSOR_KEY, "pages") or 0)
    assert 20 <= done_before < PARTITIONS
    await asyncio.sleep(2.1)  # the killed warm's lease runs out
    # Run again with a share of 500 pages a second, so the rest takes well under a second.
    again = await start_warm({**env, "MAX_DB_QPS": "2000"}, stderr=subprocess.PIPE)
    _, stderr = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 0, stderr.decode()[-2000:]
    report = report_of(stderr)
    assert report["completed"] and report["resumed"]
    # The pages read before the kill were not read again (a page in flight may be).
    assert report["pagesThisRun"] <= PARTITIONS - done_before + 4
    assert report["pages"] >= PARTITIONS
    assert report["entities"] == 600
    reader = RedisCache(redis, Breaker(5, 5), fresh_ttl_s=60, stale_ttl_s=600, negative_ttl_s=30)
    for person in people:
        cached = await reader.get(keys_of(person)[1].cache_key, 1.0)
        assert cached is not None and cached.record == person.record
