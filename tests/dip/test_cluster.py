"""The valve and the cache on a real OSS-policy Redis cluster (Azure Managed Redis OSSCluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from shared.clients import make_redis
from shared.dip.breaker import Breaker
from shared.dip.cache import RedisCache
from shared.dip.customers import CustomerRecord
from shared.dip.valve import VALVE_KEY, RedisValve
from shared.settings import load_core_settings
from tests.support.keys import SECRET
from tests.support.services import RedisClusterServers


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers()
    servers.start()
    yield servers
    servers.stop()


@pytest.fixture
async def client(cluster: RedisClusterServers) -> AsyncIterator[RedisCluster]:
    settings = load_core_settings(
        {
            "CustomerStorage": "UseDevelopmentStorage=true",
            "LOOKUP_KEY_SECRET": SECRET,
            "REDIS_URL": cluster.url,
            "REDIS_CLUSTER": "true",
            "REDIS_TIMEOUT_MS": "500",
        }
    )
    redis = make_redis(settings)
    assert isinstance(redis, RedisCluster)
    yield redis
    await redis.aclose()


async def test_the_valve_admits_exactly_the_budget_on_a_cluster(client: RedisCluster) -> None:
    await client.delete(VALVE_KEY)
    valve = RedisValve(client, limit=30, window_s=5.0)
    results = await asyncio.gather(*(valve.admit(2.0) for _ in range(120)))
    assert sum(results) == 30


async def test_cached_answers_spread_over_every_shard(client: RedisCluster) -> None:
    cache = RedisCache(client, Breaker(3, 5), fresh_ttl_s=60, stale_ttl_s=600, negative_ttl_s=30)
    records = {f"c|C-{n}": CustomerRecord(f"C-{n}", "Gold", n % 2 == 0) for n in range(60)}
    for key, record in records.items():
        await cache.put(key, record, 1.0, as_of=1.0)
    for key, record in records.items():
        hit = await cache.get(key, 1.0)
        assert hit is not None and hit.fresh and hit.record == record
    slots = {RedisCluster.keyslot(client, "dipguard:answer:" + k) for k in records}
    nodes = [client.get_node_from_key("dipguard:answer:" + k) for k in records]
    owners = {node.name for node in nodes if node is not None}
    assert len(slots) > 1 and len(owners) == 3


async def test_a_multi_key_script_needs_the_hash_tag(
    client: RedisCluster, cluster: RedisClusterServers
) -> None:
    """Why the valve's keys carry {valve}: without a shared tag, a script spanning two
    keys is refused by the server with CROSSSLOT on the OSS cluster policy."""
    script = client.register_script("return redis.call('EXISTS', KEYS[1], KEYS[2])")
    assert await script(keys=["dipguard:{valve}:a", "dipguard:{valve}:b"]) == 0
    node = aioredis.Redis(port=cluster.ports[0])
    try:
        # Redis says CROSSSLOT in the error code; redis-py shows the message after it.
        with pytest.raises(ResponseError, match="don't hash to the same slot"):
            await node.eval("return 1", 2, "dipguard:a", "dipguard:zz")
    finally:
        await node.aclose()
