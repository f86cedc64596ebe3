"""Operator surges: "hold at least N always-ready instances for M minutes, because ...".

Stored in Table Storage so they outlive restarts and every instance (and the one timer)
sees the same ones. One partition: surges are a handful a year, and one partition keeps
"list the active ones" a single-partition query. Rows are kept after they end, as the
record of who raised what and why: each row holds the Entra object id and display name of
the operator who raised it (RaisedByObjectId, RaisedByName) and of the one who ended it
early (EndedByObjectId, EndedByName). Rows written before operators signed in have none,
and read as raised by nobody known.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.clients import ensure_table
from shared.errors import CallerError
from shared.http import BodyError, decode_json
from shared.scale.principal import Operator
from shared.scale.schedule import ALWAYS_READY_MAX, MAX_BURST_MAX, ZONE_REDUNDANT_MIN, Surge

__all__ = [
    "MAX_MINUTES",
    "SurgeInputError",
    "SurgeRecord",
    "SurgeRequest",
    "create_surge",
    "end_surge",
    "get_surge",
    "list_active",
    "parse_surge_request",
    "surge_json",
    "valid_id",
]

PARTITION = "surge"
MAX_MINUTES = 24 * 60
MAX_REASON = 500
# A surge request is three short fields; the dip's 8 KiB cap is ample.
MAX_BODY_BYTES = 8 * 1024
_ID = re.compile(r"^[0-9a-f]{32}$")

# Every operation first makes sure the table exists (shared.clients.ensure_table: one
# request, answered 409 when it does); nothing is remembered between calls.


class SurgeInputError(CallerError):
    """A surge request the operator got wrong: a 4xx with ``{"error", "message", "field"}``."""


@dataclass(frozen=True)
class SurgeRecord(Surge):
    """A stored surge: what the schedule sees, and which operators raised and ended it."""

    raised_by: Operator | None = None
    ended_by: Operator | None = None


@dataclass(frozen=True)
class SurgeRequest:
    always_ready: int
    minutes: int
    reason: str


_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z_]{0,39}")


def _whole(body: dict[str, Any], name: str, lo: int, hi: int, unit: str) -> int:
    if name not in body:
        raise SurgeInputError(400, "missing_field", f"{name} is required", name)
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise SurgeInputError(400, "invalid_type", f"{name} must be a whole number", name)
    if not lo <= value <= hi:
        raise SurgeInputError(400, "out_of_range", f"{name} must be {lo} to {hi} {unit}", name)
    return value


def parse_surge_request(
    raw: bytes | str, *, zone_redundant: bool = False, max_burst_limit: int = MAX_BURST_MAX
) -> SurgeRequest:
    """Validate a POST body: {"alwaysReady": n, "minutes": m, "reason": "..."}.

    ``max_burst_limit`` is SCALE_MAX_BURST_LIMIT: the plan maximum never goes below
    always-ready, so a surge above the region's limit would be a plan update ARM refuses.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_BODY_BYTES:
        raise SurgeInputError(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        body = decode_json(data)
    except BodyError as exc:
        raise SurgeInputError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SurgeInputError(
            400,
            "invalid_body",
            "the body must be a JSON object with alwaysReady, minutes and reason",
        )
    for key in body:
        if key not in {"alwaysReady", "minutes", "reason"}:
            # An error never echoes what it was sent; a key that reads as a field name is
            # named, anything else (a number, a long string) is not.
            named = key if _FIELD_NAME.fullmatch(key) else None
            raise SurgeInputError(
                400,
                "unknown_field",
                "unknown field (expected alwaysReady, minutes, reason)",
                named,
            )
    lo = ZONE_REDUNDANT_MIN if zone_redundant else 1
    hi = min(ALWAYS_READY_MAX, max_burst_limit)
    unit = (
        "instances"
        if hi == ALWAYS_READY_MAX
        else ("instances (SCALE_MAX_BURST_LIMIT, the plan's maximum-burst limit)")
    )
    always_ready = _whole(body, "alwaysReady", lo, hi, unit)
    minutes = _whole(body, "minutes", 1, MAX_MINUTES, "minutes (24 hours at most)")
    reason = body.get("reason")
    if reason is None or (isinstance(reason, str) and not reason.strip()):
        raise SurgeInputError(
            400,
            "missing_field",
            "reason is required: say why, for the next person on call",
            "reason",
        )
    if not isinstance(reason, str):
        raise SurgeInputError(400, "invalid_type", "reason must be a string", "reason")
    if len(reason) > MAX_REASON:
        raise SurgeInputError(
            400, "out_of_range", f"reason must be at most {MAX_REASON} characters", "reason"
        )
    return SurgeRequest(always_ready, minutes, reason.strip())


def valid_id(surge_id: str) -> bool:
    return bool(_ID.match(surge_id))


def _operator(entity: dict[str, Any], prefix: str) -> Operator | None:
    object_id = entity.get(f"{prefix}ObjectId")
    if not isinstance(object_id, str) or not object_id:
        return None
    return Operator(object_id, str(entity.get(f"{prefix}Name") or ""))


def _operator_columns(prefix: str, operator: Operator) -> dict[str, str]:
    return {f"{prefix}ObjectId": operator.object_id, f"{prefix}Name": operator.name}


def _from_entity(entity: dict[str, Any]) -> SurgeRecord:
    return SurgeRecord(
        id=str(entity["RowKey"]),
        always_ready=int(entity["AlwaysReady"]),
        starts_at=_utc(entity["StartsAt"]),
        expires_at=_utc(entity["ExpiresAt"]),
        reason=str(entity.get("Reason", "")),
        raised_by=_operator(entity, "RaisedBy"),
        ended_by=_operator(entity, "EndedBy"),
    )


def _utc(value: datetime) -> datetime:
    # The Table SDK returns its own datetime subclass; keep plain aware UTC datetimes.
    v = value.astimezone(UTC) if value.tzinfo is not None else value
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, tzinfo=UTC)


def _now(now: datetime | None) -> datetime:
    # Expiry is reckoned in UTC, so instances in any zone and any DST state agree.
    return (now or datetime.now(UTC)).astimezone(UTC)


async def create_surge(
    table: TableClient,
    request: SurgeRequest,
    raised_by: Operator,
    *,
    now: datetime | None = None,
) -> SurgeRecord:
    start = _now(now)
    surge = SurgeRecord(
        id=uuid.uuid4().hex,
        always_ready=request.always_ready,
        starts_at=start,
        expires_at=start + timedelta(minutes=request.minutes),
        reason=request.reason,
        raised_by=raised_by,
    )
    await ensure_table(table)
    await table.create_entity(
        {
            "PartitionKey": PARTITION,
            "RowKey": surge.id,
            "AlwaysReady": surge.always_ready,
            "Minutes": request.minutes,
            "Reason": surge.reason,
            "StartsAt": surge.starts_at,
            "ExpiresAt": surge.expires_at,
            **_operator_columns("RaisedBy", raised_by),
        }
    )
    return surge


async def list_active(table: TableClient, *, now: datetime | None = None) -> list[SurgeRecord]:
    """Surges not yet expired or ended, earliest expiry first."""
    at = _now(now)
    await ensure_table(table)
    found: list[SurgeRecord] = []
    # Parameters, not f-strings: the SDK quotes them (and each must be a whole token).
    entities = table.query_entities(
        "PartitionKey eq @pk and ExpiresAt gt @now", parameters={"pk": PARTITION, "now": at}
    )
    async for entity in entities:
        surge = _from_entity(dict(entity))
        if surge.starts_at <= at < surge.expires_at:
            found.append(surge)
    return sorted(found, key=lambda s: (s.expires_at, s.id))


async def get_surge(table: TableClient, surge_id: str) -> SurgeRecord | None:
    await ensure_table(table)
    try:
        entity = await table.get_entity(PARTITION, surge_id)
    except ResourceNotFoundError:
        return None
    return _from_entity(dict(entity))


async def end_surge(
    table: TableClient, surge_id: str, ended_by: Operator, *, now: datetime | None = None
) -> SurgeRecord | None:
    """End a surge now (its expiry becomes now), recording who ended it; None if there is
    no such surge. One that has already ended is returned as it is."""
    at = _now(now)
    surge = await get_surge(table, surge_id)
    if surge is None:
        return None
    if surge.expires_at <= at:
        return surge
    await table.update_entity(
        {
            "PartitionKey": PARTITION,
            "RowKey": surge_id,
            "ExpiresAt": at,
            "EndedAt": at,
            **_operator_columns("EndedBy", ended_by),
        },
        mode=UpdateMode.MERGE,
    )
    return dataclasses.replace(surge, expires_at=at, ended_by=ended_by)


def surge_json(surge: SurgeRecord, *, now: datetime | None = None) -> dict[str, Any]:
    at = _now(now)
    return {
        "id": surge.id,
        "alwaysReady": surge.always_ready,
        "reason": surge.reason,
        "startsAt": surge.starts_at.isoformat(timespec="seconds"),
        "expiresAt": surge.expires_at.isoformat(timespec="seconds"),
        "active": surge.starts_at <= at < surge.expires_at,
        # null on rows written before operators signed in, and on surges not ended early.
        "raisedBy": None if surge.raised_by is None else surge.raised_by.as_json(),
        "endedBy": None if surge.ended_by is None else surge.ended_by.as_json(),
    }
