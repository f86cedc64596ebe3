"""Session-wide real services: one redis-server and one Azurite for the whole run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.services import Azurite, RedisServer


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    server = Azurite()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
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
        "CUSTOMER_TABLE": table_name,
        "SURGE_TABLE": table_name + "s",
    }
