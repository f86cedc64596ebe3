"""GET /api/health: is this worker alive, and can it reach Redis and Table Storage?

It reports reachability only, never URLs, keys or connection strings. A dependency that
is down makes the status "degraded", not a failure: dips still answer without it.
"""

from __future__ import annotations

from typing import Any

from shared.runtime import Runtime

__all__ = ["health_report"]


async def health_report(rt: Runtime) -> dict[str, Any]:
    reach = await rt.clients.probe()
    healthy = reach["redis"] == "ok" and reach["table"] == "ok"
    return {
        "status": "ok" if healthy else "degraded",
        **reach,
        "redisBreaker": "open" if rt.redis_breaker.is_open else "closed",
        "inflightDbReads": rt.dips.inflight_reads,
    }
