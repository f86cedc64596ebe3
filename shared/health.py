"""GET /api/health: is this worker alive, and can it reach Redis and Table Storage?

It reports reachability only, never URLs, keys or connection strings. A dependency that
is down makes the status "degraded", not a failure: dips still answer without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.customers import is_table_missing
from shared.runtime import Runtime

__all__ = ["health_report"]

_PROBE_TIMEOUT_S = 1.0


async def _redis_status(rt: Runtime) -> str:
    try:
        await asyncio.wait_for(rt.clients.redis.ping(), _PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure is a status to report, not an error to raise
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def _table_status(rt: Runtime) -> str:
    table = rt.clients.table(rt.settings.customer_table)
    try:
        await asyncio.wait_for(table.get_entity("health", "health"), _PROBE_TIMEOUT_S)
    except ResourceNotFoundError as exc:
        if is_table_missing(exc):
            return "unavailable: TableNotFound"
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def health_report(rt: Runtime) -> dict[str, Any]:
    redis_status, table_status = await asyncio.gather(_redis_status(rt), _table_status(rt))
    healthy = redis_status == "ok" and table_status == "ok"
    return {
        "status": "ok" if healthy else "degraded",
        "redis": redis_status,
        "table": table_status,
        "redisBreaker": "open" if rt.redis_breaker.is_open else "closed",
        "inflightDbReads": rt.dips.inflight_reads,
    }
