"""The surge switch's HTTP face: validate, store, and apply at once.

Kept apart from shared/surge.py (storage only, no ARM) and shared/scaler.py (ARM, no
HTTP), because a POST does both: it stores the surge, then runs one scale tick inside the
request so the operator learns straight away whether ARM took it. If ARM is slow or
refuses, the surge is still stored and the timer applies it on its next tick.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from shared import surge as store
from shared.http import error_body
from shared.scaler import ArmGateway, RetryPolicy, TickReport, run_tick
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

__all__ = ["SURGE_APPLY_TIMEOUT_SECONDS", "ApiResponse", "handle"]

LOG = logging.getLogger("dipguard.surge")

# The in-request tick gets this long; the Functions front end allows far more, but an
# operator with a recall in 30 minutes should not stare at a spinner.
SURGE_APPLY_TIMEOUT_SECONDS = 25.0
# Retries inside the request stay well inside that.
_REQUEST_RETRY = RetryPolicy(attempts=3, backoff_base=0.5, backoff_max=4.0,
                             retry_after_max=8.0, budget_seconds=15.0)


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any]


def _error(status: int, code: str, message: str, field: str | None = None) -> ApiResponse:
    return ApiResponse(status, error_body(code, message, field))


async def handle(
    method: str,
    surge_id: str | None,
    body: bytes,
    *,
    settings: Settings | None = None,
    table: TableClient | None = None,
    gateway: ArmGateway | None = None,
    now: datetime | None = None,
    apply_timeout: float = SURGE_APPLY_TIMEOUT_SECONDS,
    retry: RetryPolicy | None = None,
) -> ApiResponse:
    """GET lists active surges (or one by id), POST starts one, DELETE /{id} ends one."""
    if settings is None or table is None:
        from shared.runtime import runtime

        rt = runtime()
        settings = settings or rt.settings
        table = table or rt.clients.table(settings.surge_table)
    verb = method.upper()
    surge_id = (surge_id or "").strip() or None
    if surge_id is not None and not store.valid_id(surge_id):
        return _error(400, "invalid_id", "a surge id is 32 lowercase hex characters", "id")
    try:
        if verb == "GET":
            return await _get(table, surge_id, now)
        if verb == "POST":
            if surge_id is not None:
                return _error(405, "method_not_allowed", "start a surge with POST /api/surge")
            return await _post(settings, table, body, gateway, now, apply_timeout, retry)
        if verb == "DELETE":
            if surge_id is None:
                return _error(400, "missing_field", "end a surge with DELETE /api/surge/{id}",
                              "id")
            return await _delete(settings, table, surge_id, gateway, now, apply_timeout, retry)
    except AzureError as exc:
        LOG.exception("surge storage failed")
        return _error(503, "storage_unavailable",
                      f"the surge table could not be reached: {type(exc).__name__}")
    return _error(405, "method_not_allowed", f"{verb} is not supported; use GET, POST or DELETE")


async def _get(table: TableClient, surge_id: str | None, now: datetime | None) -> ApiResponse:
    if surge_id is not None:
        found = await store.get_surge(table, surge_id)
        if found is None:
            return _error(404, "not_found", f"no surge {surge_id}", "id")
        return ApiResponse(200, {"surge": store.surge_json(found, now=now)})
    active = await store.list_active(table, now=now)
    return ApiResponse(200, {"surges": [store.surge_json(s, now=now) for s in active],
                             "count": len(active)})


async def _post(settings: Settings, table: TableClient, body: bytes,
                gateway: ArmGateway | None, now: datetime | None, apply_timeout: float,
                retry: RetryPolicy | None) -> ApiResponse:
    try:
        request = store.parse_surge_request(body, zone_redundant=settings.scale_zone_redundant,
                                            max_burst_limit=settings.scale_max_burst_limit)
    except store.SurgeInputError as exc:
        return ApiResponse(exc.status, exc.as_json())
    created = await store.create_surge(table, request, now=now)
    LOG.warning("surge %s started: alwaysReady %d for %d min: %s", created.id,
                created.always_ready, request.minutes, created.reason)
    report = await _apply(settings, table, gateway, now, apply_timeout, retry)
    return ApiResponse(201, {"surge": store.surge_json(created, now=now), **_applied(report)})


async def _delete(settings: Settings, table: TableClient, surge_id: str,
                  gateway: ArmGateway | None, now: datetime | None, apply_timeout: float,
                  retry: RetryPolicy | None) -> ApiResponse:
    ended = await store.end_surge(table, surge_id, now=now)
    if ended is None:
        return _error(404, "not_found", f"no surge {surge_id}", "id")
    LOG.warning("surge %s ended early", surge_id)
    report = await _apply(settings, table, gateway, now, apply_timeout, retry)
    return ApiResponse(200, {"surge": store.surge_json(ended, now=now), **_applied(report)})


async def _apply(settings: Settings, table: TableClient, gateway: ArmGateway | None,
                 now: datetime | None, apply_timeout: float, retry: RetryPolicy | None
                 ) -> TickReport:
    return await run_tick(settings, now=now, gateway=gateway, surge_table=table,
                          retry=retry or _REQUEST_RETRY, timeout=apply_timeout)


def _applied(report: TickReport) -> dict[str, Any]:
    reason = None
    if not report.applied:
        detail = "; ".join(report.errors) or report.outcome
        reason = f"{detail} (the surge is stored; the scale timer will apply it)"
    return {"applied": report.applied, "outcome": report.outcome, "reason": reason,
            "desired": report.desired, "changed": report.changed}
