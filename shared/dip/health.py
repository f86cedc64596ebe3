"""GET /api/health: is this worker alive, and can it reach Redis and Table Storage?

It reports reachability only, never URLs, keys, secrets or connection strings. A dependency that
is down makes the status "degraded", not a failure: dips still answer without it.
"""

from __future__ import annotations

from typing import Any

from shared.clients import Clients
from shared.dip.breaker import Breaker
from shared.dip.lookup import DipService

__all__ = ["health_report"]


async def health_report(clients: Clients, breaker: Breaker, dips: DipService) -> dict[str, Any]:
    reach = await clients.probe()
    healthy = reach["redis"] == "ok" and reach["table"] == "ok"
    return {
        "status": "ok" if healthy else "degraded",
        **reach,
        "redisBreaker": "open" if breaker.is_open else "closed",
        "inflightDbReads": dips.inflight_reads,
        # How many lookup key secrets this instance holds: 2 during a rotation, once its
        # settings carry LOOKUP_KEY_SECRET_PREVIOUS. A count, never the secrets.
        "lookupKeySecrets": dips.keys.secret_count,
    }
