"""Fixtures the dip tests share."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tests.support.dips import seed


@pytest.fixture
async def env(base_env: dict[str, str]) -> dict[str, str]:
    """A seeded table and an empty Redis (the valve's log included): cached answers from
    other tests must not leak in."""
    await seed(base_env)
    async with aioredis.Redis.from_url(base_env["REDIS_URL"]) as client:
        await client.flushdb()
    return base_env
