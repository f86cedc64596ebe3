"""Session-wide real services: one redis-server and one Azurite for the whole run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from azure.data.tables.aio import TableClient

from devhost.worker import Worker
from tests.support.keys import SECRET
from tests.support.services import ROOT, Azurite, RedisServer, free_port


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    # A port of its own: a second test run on the machine must not stop this run's Azurite.
    server = Azurite(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test module: a warm leaves a marker that makes misses
    authoritative, and that must not reach the session's Redis and other modules' dips."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def table_name() -> str:
    """A fresh table name per test, so tests never see each other's rows."""
    return "t" + uuid.uuid4().hex[:20]


@pytest.fixture
def base_env(azurite: Azurite, redis_server: RedisServer, table_name: str) -> dict[str, str]:
    """Settings pointing at the session's real Redis and Azurite."""
    return {
        "REDIS_URL": redis_server.url,
        "CustomerStorage": azurite.connection_string,
        "LOOKUP_KEY_SECRET": SECRET,
        "CUSTOMER_TABLE": table_name,
        "SURGE_TABLE": table_name + "s",
    }


@pytest.fixture(scope="session")
def app_worker(azurite: Azurite, redis_server: RedisServer) -> Iterator[Worker]:
    """Microsoft's worker library with function_app.py indexed and loaded, once a session.

    The worker keeps the indexed app in module-level state, as it does in Azure, where one
    worker process serves one app: so one per test process. function_app.py parses the
    settings when it is imported, hence the environment around the start; tests then
    install a Runtime of their own with set_runtime.
    """
    worker = Worker(ROOT / "function_app.py")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REDIS_URL", redis_server.url)
        env.setenv("CustomerStorage", azurite.connection_string)
        env.setenv("LOOKUP_KEY_SECRET", SECRET)
        asyncio.run(worker.start())
    yield worker
    worker.stop()


@pytest.fixture
async def redis(own_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the module's own redis-server, emptied first. Modules that work on the
    session's Redis define a `redis` fixture of their own."""
    client = aioredis.Redis.from_url(own_redis.url)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
async def table(azurite: Azurite, table_name: str) -> AsyncIterator[TableClient]:
    """A fresh table on the session's Azurite, deleted afterwards."""
    async with TableClient.from_connection_string(azurite.connection_string, table_name) as t:
        yield t
        await t.delete_table()
