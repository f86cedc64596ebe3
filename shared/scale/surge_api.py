"""The surge switch's HTTP face: who is asking, validate, store, and apply at once.

Every request is an operator's: the principal App Service Authentication signed in
(shared.scale.principal) must hold the app role Surge.Operate, or the answer is a 401 (no
principal, or one that cannot be read, or no App Service Authentication in front of the
app) or a 403 (no role). The operator's object id and name go on the surge row and into
its log line: ``surge <id> started by <object id> "<name>": alwaysReady <n> for <m> min:
<reason>`` and ``surge <id> ended early by <object id> "<name>"``.

Kept apart from surge.py (storage only, no ARM) and tick.py (ARM, no HTTP), because a
POST does both: it stores the surge, then runs one scale tick inside the request so the
operator learns straight away whether ARM took it. If ARM is slow or refuses, the surge is
still stored and the timer applies it on its next tick.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from shared.http import ApiResponse, error_response
from shared.scale import surge as store
from shared.scale.arm import ArmGateway, GatewayFactory
from shared.scale.principal import Operator, PrincipalRefused, operator_from_headers
from shared.scale.retry import RetryPolicy
from shared.scale.settings import ScaleSettings
from shared.scale.tick import TickReport, run_tick

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

__all__ = ["SURGE_APPLY_TIMEOUT_SECONDS", "SurgeApi"]

LOG = logging.getLogger("dipguard.surge")

# The in-request tick gets this long; the Functions front end allows far more, but an
# operator with a recall in 30 minutes should not stare at a spinner.
SURGE_APPLY_TIMEOUT_SECONDS = 25.0
# Retries inside the request stay well inside that.
_REQUEST_RETRY = RetryPolicy(
    attempts=3, backoff_base=0.5, backoff_max=4.0, retry_after_max=8.0, budget_seconds=15.0
)


class SurgeApi:
    """GET lists active surges (or one by id), POST starts one, DELETE /{id} ends one.

    The in-request tick builds its ARM gateway with ``gateway_factory``, or uses
    ``gateway`` when one is given ready (tests). ``on_start``, when given, runs once a surge
    is stored (the Runtime starts a warm of the dip's read model there), and what it says
    goes into the answer as ``warm``.
    """

    def __init__(
        self,
        settings: ScaleSettings,
        table: TableClient,
        *,
        gateway_factory: GatewayFactory | None = None,
        gateway: ArmGateway | None = None,
        apply_timeout: float = SURGE_APPLY_TIMEOUT_SECONDS,
        retry: RetryPolicy = _REQUEST_RETRY,
        on_start: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.settings = settings
        self.table = table
        self.gateway_factory = gateway_factory
        self.gateway = gateway
        self.apply_timeout = apply_timeout
        self.retry = retry
        self.on_start = on_start

    async def handle(
        self,
        method: str,
        surge_id: str | None,
        body: bytes,
        *,
        headers: Mapping[str, str],
        now: datetime | None = None,
    ) -> ApiResponse:
        """Answer one request; ``headers`` are the request's, App Service's principal
        among them."""
        try:
            operator = operator_from_headers(headers, trusted=self.settings.principal_trusted)
        except PrincipalRefused as refused:
            # The refusal's code and, for a 403, whose: never what the header held.
            who = "" if refused.identity is None else f" by {refused.identity.object_id}"
            LOG.warning("surge_refused %d %s%s", refused.status, refused.code, who)
            return refused.response()
        verb = method.upper()
        surge_id = (surge_id or "").strip() or None
        if surge_id is not None and not store.valid_id(surge_id):
            return error_response(
                400, "invalid_id", "a surge id is 32 lowercase hex characters", "id"
            )
        try:
            if verb == "GET":
                return await self._get(surge_id, now)
            if verb == "POST":
                if surge_id is not None:
                    return error_response(
                        405, "method_not_allowed", "start a surge with POST /api/surge"
                    )
                return await self._post(body, operator, now)
            if verb == "DELETE":
                if surge_id is None:
                    return error_response(
                        400, "missing_field", "end a surge with DELETE /api/surge/{id}", "id"
                    )
                return await self._delete(surge_id, operator, now)
        except AzureError as exc:
            LOG.exception("surge storage failed")
            return error_response(
                503,
                "storage_unavailable",
                f"the surge table could not be reached: {type(exc).__name__}",
            )
        return error_response(
            405, "method_not_allowed", f"{verb} is not supported; use GET, POST or DELETE"
        )

    async def _get(self, surge_id: str | None, now: datetime | None) -> ApiResponse:
        if surge_id is not None:
            found = await store.get_surge(self.table, surge_id)
            if found is None:
                return error_response(404, "not_found", f"no surge {surge_id}", "id")
            return ApiResponse(200, {"surge": store.surge_json(found, now=now)})
        active = await store.list_active(self.table, now=now)
        return ApiResponse(
            200, {"surges": [store.surge_json(s, now=now) for s in active], "count": len(active)}
        )

    async def _post(self, body: bytes, operator: Operator, now: datetime | None) -> ApiResponse:
        settings = self.settings
        try:
            request = store.parse_surge_request(
                body,
                zone_redundant=settings.scale_zone_redundant,
                max_burst_limit=settings.scale_max_burst_limit,
            )
        except store.SurgeInputError as exc:
            return exc.response()
        created = await store.create_surge(self.table, request, operator, now=now)
        LOG.warning(
            "surge %s started by %s: alwaysReady %d for %d min: %s",
            created.id,
            _who(operator),
            created.always_ready,
            request.minutes,
            created.reason,
        )
        report = await self._apply(now)
        answer = {"surge": store.surge_json(created, now=now), **_applied(report)}
        if self.on_start is not None:
            answer["warm"] = await self.on_start()
        return ApiResponse(201, answer)

    async def _delete(self, surge_id: str, operator: Operator, now: datetime | None) -> ApiResponse:
        ended = await store.end_surge(self.table, surge_id, operator, now=now)
        if ended is None:
            return error_response(404, "not_found", f"no surge {surge_id}", "id")
        LOG.warning("surge %s ended early by %s", surge_id, _who(operator))
        report = await self._apply(now)
        return ApiResponse(200, {"surge": store.surge_json(ended, now=now), **_applied(report)})

    async def _apply(self, now: datetime | None) -> TickReport:
        return await run_tick(
            self.settings,
            now=now,
            surge_table=self.table,
            gateway_factory=self.gateway_factory,
            gateway=self.gateway,
            retry=self.retry,
            timeout=self.apply_timeout,
        )


def _who(operator: Operator) -> str:
    # The name quoted as JSON: whatever it holds, the line stays one line and parseable.
    return f"{operator.object_id} {json.dumps(operator.name, ensure_ascii=False)}"


def _applied(report: TickReport) -> dict[str, Any]:
    reason = None
    if not report.applied:
        detail = "; ".join(report.errors) or report.outcome
        reason = f"{detail} (the surge is stored; the scale timer will apply it)"
    return {
        "applied": report.applied,
        "outcome": report.outcome,
        "reason": reason,
        "desired": report.desired,
        "changed": report.changed,
    }
