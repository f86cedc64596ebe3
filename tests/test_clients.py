"""How the worker's clients are built: Entra ID for Azure Redis, no retries for Table reads."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient
from redis.asyncio.connection import SSLConnection
from redis_entraid.cred_provider import EntraIdCredentialsProvider

from shared import clients
from shared.clients import TABLE_CLIENT_OPTIONS, Clients, make_redis, make_table_client
from shared.dip.customers import DatabaseUnavailable, TableCustomerStore
from shared.settings import load_core_settings
from tests.support.keys import KEYS, SECRET
from tests.support.services import Azurite, RedisServer

BASE = {"CustomerStorage": "UseDevelopmentStorage=true", "LOOKUP_KEY_SECRET": SECRET}


async def test_rediss_without_a_password_uses_entra_id() -> None:
    settings = load_core_settings(
        {**BASE, "REDIS_URL": "rediss://amr.eastus.redis.azure.net:10000/0"}
    )
    client = make_redis(settings)
    assert isinstance(client, aioredis.Redis)
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert isinstance(kwargs["credential_provider"], EntraIdCredentialsProvider)
        assert client.connection_pool.connection_class is SSLConnection
        assert kwargs["port"] == 10000
    finally:
        await client.aclose()


async def test_a_password_in_the_url_is_used_as_is() -> None:
    settings = load_core_settings({**BASE, "REDIS_URL": "rediss://:local-secret@cache:6380/0"})
    client = make_redis(settings)
    assert isinstance(client, aioredis.Redis)
    try:
        assert "credential_provider" not in client.connection_pool.connection_kwargs
    finally:
        await client.aclose()


async def test_redis_commands_time_out_at_the_configured_budget() -> None:
    settings = load_core_settings({**BASE, "REDIS_TIMEOUT_MS": "75"})
    client = make_redis(settings)
    assert isinstance(client, aioredis.Redis)
    try:
        assert client.connection_pool.connection_kwargs["socket_timeout"] == pytest.approx(0.075)
    finally:
        await client.aclose()


async def test_table_reads_are_never_retried_on_the_hot_path() -> None:
    """The SDK's default is 10 retries; against a busy table each dip makes one request."""
    hits = 0

    async def busy(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=503, text="Server busy")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", busy)
    async with TestServer(app, host="127.0.0.1") as server:
        conn = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            f"TableEndpoint=http://127.0.0.1:{server.port}/devstoreaccount1;"
        )
        settings = load_core_settings({"CustomerStorage": conn})
        table = make_table_client(settings, "customers")
        try:
            with pytest.raises(DatabaseUnavailable):
                await TableCustomerStore(table).get(KEYS.key("customerId", "C-1"), 1.0)
        finally:
            await table.close()
    assert hits == 1
    assert TABLE_CLIENT_OPTIONS["retry_total"] == 0


async def test_identity_based_storage_builds_an_endpoint_client() -> None:
    settings = load_core_settings(
        {"CustomerStorage__tableServiceUri": "https://acct.table.core.windows.net"}
    )
    clients = Clients(settings)
    try:
        table = clients.table("customers")
        assert table.url.startswith("https://acct.table.core.windows.net")
        assert clients.table("customers") is table  # created once, reused
    finally:
        await clients.close()


async def test_ensure_table_creates_a_missing_table_and_accepts_an_existing_one(
    azurite: Azurite, table_name: str
) -> None:
    async with TableClient.from_connection_string(
        azurite.connection_string, table_name, retry_total=0
    ) as table:
        await clients.ensure_table(table)
        await table.upsert_entity({"PartitionKey": "x", "RowKey": "y"})
        await clients.ensure_table(table)  # an existing table is left as it is
        assert (await table.get_entity("x", "y"))["RowKey"] == "y"
        await table.delete_table()
        await clients.ensure_table(table)  # nothing remembered: a deleted table comes back
        with pytest.raises(ResourceNotFoundError) as caught:
            await table.get_entity("x", "y")
        assert not clients.is_table_missing(caught.value)  # the table is back, empty
        await table.delete_table()


async def test_probe_tells_a_missing_table_from_a_missing_entity(
    azurite: Azurite, redis_server: RedisServer, table_name: str
) -> None:
    env = {
        "CustomerStorage": azurite.connection_string,
        "LOOKUP_KEY_SECRET": SECRET,
        "REDIS_URL": redis_server.url,
        "CUSTOMER_TABLE": table_name,
    }
    probing = Clients(load_core_settings(env))
    try:
        assert await probing.probe() == {"redis": "ok", "table": "unavailable: TableNotFound"}
        await clients.ensure_table(probing.table(table_name))
        assert await probing.probe() == {"redis": "ok", "table": "ok"}
    finally:
        await probing.table(table_name).delete_table()
        await probing.close()
