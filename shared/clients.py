"""Lazily created, reused clients: the Redis pool and Table Storage clients.

One set per worker process. Warmup opens them on a new Premium instance, but nothing
relies on warmup having run: it fires only on scale-out, never on restarts.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables.aio import TableClient
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException

from shared.settings import CoreSettings

__all__ = [
    "BULK_REDIS_TIMEOUT_S",
    "REDIS_ERRORS",
    "Clients",
    "RedisClient",
    "ensure_table",
    "is_table_missing",
    "make_redis",
    "make_table_client",
]

# A plain client for Enterprise-clustered or single-node Redis; a cluster-aware one for the
# OSS cluster policy, where each key lives on the shard that owns its slot.
RedisClient = aioredis.Redis | RedisCluster

# What a Redis call can raise when Redis is unreachable, slow or resharding. The cluster
# client's own errors do not all derive from RedisError.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    aioredis.RedisError,
    RedisClusterException,
    OSError,
    TimeoutError,
)

# The Table SDK retries 10 times with 300 s socket timeouts by default, which is fatal to
# a 2.5 s deadline. dipguard retries nothing itself on the hot path: the stale copy is
# the retry. Each call still passes its own timeouts from the remaining budget.
TABLE_CLIENT_OPTIONS: dict[str, Any] = {
    "retry_total": 0,
    "retry_connect": 0,
    "retry_read": 0,
    "retry_status": 0,
    "connection_timeout": 2,
    "read_timeout": 2,
    # With env settings on, aiohttp looks up proxy variables and ~/.netrc on a worker thread
    # for every request: a thread hop per dip that showed up in profiles under load. Function
    # apps reach Table Storage directly, not through an environment-configured proxy.
    "use_env_settings": False,
}

# Entra ID tokens for Azure Managed Redis are requested for this scope.
REDIS_ENTRA_SCOPE = "https://redis.azure.com/.default"


# Bulk writers (the warm, the loader's write-through) send pipelines of a thousand entries,
# which a busy Redis can take far longer than a dip's REDIS_TIMEOUT_MS to answer; they have
# no caller waiting, so they get a client of their own with a longer timeout and a small pool.
BULK_REDIS_TIMEOUT_S = 10.0
_BULK_CONNECTIONS = 8


def make_redis(settings: CoreSettings, *, bulk: bool = False) -> RedisClient:
    """A pooled async Redis client with short timeouts; Entra ID when rediss:// has no password.

    The single-node pool blocks (briefly) when every connection is busy instead of raising:
    at 10x a burst of dips can outnumber the pool, and "too many connections" would
    otherwise count as a Redis failure and open the breaker on a healthy Redis. ``bulk``
    gives the bulk writers' client (BULK_REDIS_TIMEOUT_S).
    """
    timeout = BULK_REDIS_TIMEOUT_S if bulk else settings.redis_timeout_ms / 1000
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": max(settings.redis_timeout_ms / 1000, 0.5),
        "health_check_interval": 30,
        "max_connections": _BULK_CONNECTIONS if bulk else 128,
    }
    parts = urlsplit(settings.redis_url)
    if parts.scheme == "rediss" and not parts.password:
        from redis_entraid.cred_provider import create_from_default_azure_credential

        provider = create_from_default_azure_credential((REDIS_ENTRA_SCOPE,))
        options["credential_provider"] = provider
    if settings.redis_cluster:
        # The dip's deadline is the retry budget: a resharding cluster is a miss, not a wait.
        return RedisCluster.from_url(settings.redis_url, retry=Retry(NoBackoff(), 1), **options)
    pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, timeout=timeout, **options)
    # from_pool hands the pool to the client, so closing the client closes its connections.
    return aioredis.Redis.from_pool(pool)


def make_table_client(settings: CoreSettings, table_name: str) -> TableClient:
    """An async TableClient: connection string locally, endpoint plus identity in Azure."""
    if settings.storage_connection_string is not None:
        return TableClient.from_connection_string(
            settings.storage_connection_string, table_name=table_name, **TABLE_CLIENT_OPTIONS
        )
    from azure.identity.aio import DefaultAzureCredential

    assert settings.storage_table_uri is not None
    return TableClient(
        endpoint=settings.storage_table_uri,
        table_name=table_name,
        credential=DefaultAzureCredential(),
        **TABLE_CLIENT_OPTIONS,
    )


def is_table_missing(exc: ResourceNotFoundError) -> bool:
    """A 404 for the table itself, as opposed to a missing entity."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code)) == "TableNotFound"


async def ensure_table(table: TableClient) -> None:
    """Create a table if it is missing (the loader, the surge table).

    One request, and a 409 when the table exists; its callers run once per load or once per
    surge operation, so nothing is remembered between calls.
    """
    try:
        await table.create_table()
    except ResourceExistsError:
        pass


class Clients:
    """The worker's shared clients, created on first use and closed together."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self._redis: RedisClient | None = None
        self._bulk_redis: RedisClient | None = None
        self._tables: dict[str, TableClient] = {}

    @property
    def redis(self) -> RedisClient:
        if self._redis is None:
            self._redis = make_redis(self.settings)
        return self._redis

    @property
    def bulk_redis(self) -> RedisClient:
        """The warm's client: the same Redis, with a bulk writer's timeout."""
        if self._bulk_redis is None:
            self._bulk_redis = make_redis(self.settings, bulk=True)
        return self._bulk_redis

    def table(self, name: str) -> TableClient:
        client = self._tables.get(name)
        if client is None:
            client = self._tables[name] = make_table_client(self.settings, name)
        return client

    async def probe(self, timeout: float = 1.0) -> dict[str, str]:
        """Reach Redis and the customer table now; each is "ok" or "unavailable: <why>".

        Warmup calls it to open the Redis pool and the Table connection on a new instance;
        health calls it to report them. It never raises: a failure is a status.
        """
        redis_status, table_status = await asyncio.gather(
            self._probe_redis(timeout), self._probe_table(timeout)
        )
        return {"redis": redis_status, "table": table_status}

    async def _probe_redis(self, timeout: float) -> str:
        try:
            await asyncio.wait_for(self.redis.ping(), timeout)
        except Exception as exc:
            return f"unavailable: {type(exc).__name__}"
        return "ok"

    async def _probe_table(self, timeout: float) -> str:
        # A point read of a key that never exists opens the connection and proves the
        # identity can read, without writing anything.
        table = self.table(self.settings.customer_table)
        try:
            await asyncio.wait_for(table.get_entity("probe", "probe"), timeout)
        except ResourceNotFoundError as exc:
            return "unavailable: TableNotFound" if is_table_missing(exc) else "ok"
        except Exception as exc:
            return f"unavailable: {type(exc).__name__}"
        return "ok"

    async def close(self) -> None:
        for redis in (self._redis, self._bulk_redis):
            if redis is not None:
                await redis.aclose()
        self._redis = self._bulk_redis = None
        for client in self._tables.values():
            await client.close()
        self._tables.clear()
