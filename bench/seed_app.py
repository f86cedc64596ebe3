"""The seed's data dip, rebuilt as a baseline: ``python -m devhost --script bench/seed_app.py``.

This is what dipguard replaced, kept faithful on purpose so the benchmark can compare:

* the cache is keyed by conversation id and holds ``str(result)`` for 60 s, so a caller's
  second call (a new conversation) never hits it;
* the valve is ``INCR db_qps:{int(time.time())}`` then a separate ``EXPIRE key 2``: a fixed
  window on the instance clock, two round trips, shed when the count passes MAX_DB_QPS;
* no deadline, no in-flight cap, no stale copy, no breaker: a Redis error is a 500, and a
  database read waits as long as the Table client's own timeouts allow;
* its Redis client is redis-py's default (``from_url``: a pool without a cap and
  without timeouts), not dipguard's tuned one.

It reuses dipguard's request parsing, Table key design and clients, so the only
differences measured are the seed's algorithms, and its answers have dipguard's JSON
shape so the benchmark can count sources.
"""

from __future__ import annotations

import ast
import json
import time
from typing import Any

import azure.functions as func
import redis.asyncio as aioredis

from app.settings import load_settings
from shared.clients import TABLE_CLIENT_OPTIONS, make_table_client
from shared.dip.contract import Answer, ContractError, parse_dip_request
from shared.dip.customers import DatabaseUnavailable, TableCustomerStore
from shared.dip.keys import LookupKeys
from shared.dip.lookup import caller_of

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

settings = load_settings()
core, dip = settings.core, settings.dip
# The seed read the table by the caller's key; the table now holds keyed hashes.
_keys = LookupKeys(dip.lookup_key_secret)
# The seed had no deadline of its own: a read lasts as long as the client's timeouts.
_READ_TIMEOUT_S = float(TABLE_CLIENT_OPTIONS["read_timeout"])
_redis: aioredis.Redis | None = None
_store: TableCustomerStore | None = None


def _clients() -> tuple[aioredis.Redis, TableCustomerStore]:
    global _redis, _store
    if _redis is None or _store is None:
        _redis = aioredis.Redis.from_url(core.redis_url)
        _store = TableCustomerStore(make_table_client(core, core.customer_table))
    return _redis, _store


def _degraded() -> dict[str, Any]:
    return Answer.unknown(dip.degraded_tier, "degraded").body()


async def seed_lookup(body: bytes, content_type: str | None) -> dict[str, Any]:
    request = parse_dip_request(body, content_type)
    redis, store = _clients()
    cache_key = f"cache:{request.conversation_id}"
    cached = await redis.get(cache_key)
    if cached is not None:
        text = cached.decode() if isinstance(cached, bytes) else str(cached)
        result: dict[str, Any] = ast.literal_eval(text)
        result["source"] = "cache"
        return result
    caller = caller_of(request, dip.default_region)
    if caller is None:
        return Answer.unknown(dip.degraded_tier, "none").body()
    key = _keys.key(*caller)
    bucket = f"db_qps:{int(time.time())}"
    count = await redis.incr(bucket)
    await redis.expire(bucket, 2)
    if count > dip.max_db_qps:
        return _degraded()
    try:
        record = await store.get(key, _READ_TIMEOUT_S)
    except DatabaseUnavailable:
        return _degraded()
    if record is None:
        result = Answer.unknown(dip.degraded_tier, "database").body()
    else:
        result = Answer(
            True,
            record.customer_id,
            record.tier or dip.degraded_tier,
            record.is_vip,
            record.preferred_language,
            "database",
        ).body()
    await redis.setex(cache_key, 60, str(result))
    return result


@app.function_name("ivr_lookup")
@app.route(route="lookup", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def ivr_lookup(req: func.HttpRequest) -> func.HttpResponse:
    try:
        result = await seed_lookup(req.get_body(), req.headers.get("content-type"))
    except ContractError as exc:
        return func.HttpResponse(
            json.dumps(exc.body()), status_code=exc.status, mimetype="application/json"
        )
    return func.HttpResponse(json.dumps(result, separators=(",", ":")), mimetype="application/json")
