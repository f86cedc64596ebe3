"""The Runtime's own behaviour: a surge warms a read model that is old or missing, in the
background, and never fails because Redis cannot be looked at. Real Redis, real Azurite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from azure.data.tables.aio import TableClient

from app.runtime import Runtime
from app.settings import load_settings
from shared.dip.readmodel import LEASE_KEY, MARKER_KEY, Marker, read_marker
from tests.support.customers import load
from tests.support.keys import SECRET
from tests.support.services import Azurite, RedisServer


@pytest.fixture
async def env(
    own_redis: RedisServer, azurite: Azurite, table_name: str
) -> AsyncIterator[dict[str, str]]:
    async with aioredis.Redis.from_url(own_redis.url) as client:
        await client.flushall()
    settings = {
        "REDIS_URL": own_redis.url,
        "CustomerStorage": azurite.connection_string,
        "LOOKUP_KEY_SECRET": SECRET,
        "CUSTOMER_TABLE": table_name,
        "SURGE_WARM_AFTER_SECONDS": "3600",
    }
    async with TableClient.from_connection_string(azurite.connection_string, table_name) as t:
        await load(t, 50)
        yield settings
        await t.delete_table()


async def wait_for_marker(url: str, seconds: float = 30.0) -> Marker:
    async with aioredis.Redis.from_url(url) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if (marker := await read_marker(client)) is not None:
                return marker
            await asyncio.sleep(0.1)
    raise AssertionError("no warm completed")


async def test_a_surge_with_no_warm_on_record_starts_one_in_the_background(
    env: dict[str, str],
) -> None:
    rt = Runtime(load_settings(env))
    try:
        said = await rt.warm_for_surge()
        assert said == {"started": True, "lastCompleteAgeSeconds": None, "reason": None}
        marker = await wait_for_marker(env["REDIS_URL"])
        assert marker.entities == 100  # 50 customers: an id and a number each
    finally:
        await rt.close()


async def test_a_surge_after_an_old_warm_starts_a_new_one(env: dict[str, str]) -> None:
    rt = Runtime(load_settings(env))
    try:
        assert (await rt.warm().run()).completed
        async with aioredis.Redis.from_url(env["REDIS_URL"]) as client:
            marker = await read_marker(client)
            assert marker is not None
            old = Marker(marker.generation, time.time() - 7200, marker.entities, marker.bloom_bits)
            await client.set(MARKER_KEY, old.to_json())
        said = await rt.warm_for_surge()
        assert said["started"] is True and said["lastCompleteAgeSeconds"] >= 7200
        for _ in range(300):
            if (fresh := await wait_for_marker(env["REDIS_URL"])).generation != old.generation:
                break
            await asyncio.sleep(0.1)
        assert fresh.generation != old.generation and fresh.age(time.time()) < 60
    finally:
        await rt.close()


async def test_a_surge_after_a_recent_warm_starts_nothing(env: dict[str, str]) -> None:
    rt = Runtime(load_settings(env))
    try:
        assert (await rt.warm().run()).completed
        said = await rt.warm_for_surge()
        assert said["started"] is False and said["lastCompleteAgeSeconds"] < 60
        assert "recent" in said["reason"]
    finally:
        await rt.close()


async def test_a_surge_while_another_warm_holds_the_lease_says_so(env: dict[str, str]) -> None:
    rt = Runtime(load_settings(env))
    try:
        async with aioredis.Redis.from_url(env["REDIS_URL"]) as client:
            await client.set(LEASE_KEY, "the timer's warm", px=30_000)
        said = await rt.warm_for_surge()
        assert said == {
            "started": False,
            "lastCompleteAgeSeconds": None,
            "reason": "a warm is already running",
        }
        assert not rt._warms  # nothing was started in the background
    finally:
        await rt.close()


async def test_a_surge_with_redis_down_says_so_and_does_not_raise(env: dict[str, str]) -> None:
    rt = Runtime(load_settings({**env, "REDIS_URL": "redis://127.0.0.1:1/0"}))
    try:
        said = await rt.warm_for_surge()
        assert said["started"] is False and said["reason"].startswith("redis unavailable")
    finally:
        await rt.close()


def test_the_surge_switch_is_wired_to_the_warm(env: dict[str, str]) -> None:
    rt = Runtime(load_settings(env))
    assert rt.surge_api.on_start == rt.warm_for_surge
