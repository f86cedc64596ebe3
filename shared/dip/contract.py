"""The dip's wire contract: request parsing and validation, the answer, the error body.

Genesys Architect can only bind flat outputs, and any non-2xx goes down a Failure path
that cannot read why. So only a caller's own malformed request is answered with a 4xx,
always with a JSON body that says what was wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from shared.errors import CallerError
from shared.http import BodyError, decode_json

__all__ = [
    "MAX_BODY_BYTES",
    "Answer",
    "ContractError",
    "DipRequest",
    "MatchedBy",
    "Source",
    "parse_dip_request",
]

MAX_BODY_BYTES = 8 * 1024

Source = Literal["database", "cache", "stale", "degraded", "none"]
# How the answer's customer was identified: by the caller's number, or by a customer id the
# caller gave (keyed in, so unverified); None when no customer was named.
MatchedBy = Literal["ani", "customerId"]

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MAX_ANI_CHARS = 256
_MAX_DNIS_CHARS = 256


class ContractError(CallerError):
    """A dip request the caller got wrong: a 4xx with ``{"error", "message", "field"}``."""


@dataclass(frozen=True)
class DipRequest:
    conversation_id: str
    ani: str | None
    customer_id: str | None
    dnis: str | None


@dataclass(frozen=True)
class Answer:
    """The flat answer Genesys binds to Architect variables."""

    customer_found: bool
    customer_id: str
    customer_tier: str
    is_vip: bool
    preferred_language: str
    source: Source
    matched_by: MatchedBy | None = None

    def body(self) -> dict[str, Any]:
        return {
            "customerFound": self.customer_found,
            "customerId": self.customer_id,
            "customerTier": self.customer_tier,
            "isVip": self.is_vip,
            "preferredLanguage": self.preferred_language,
            "source": self.source,
            "matchedBy": self.matched_by,
        }

    @classmethod
    def unknown(cls, tier: str, source: Source) -> Answer:
        """No customer could be named: an unknown caller, or a degraded default."""
        return cls(False, "", tier, False, "", source)


def _is_json_media_type(content_type: str | None) -> bool:
    if content_type is None or not content_type.strip():
        # Some HTTP clients omit the header; the body decides.
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json":
        return True
    return media.startswith("application/") and media.endswith("+json")


def _optional_text(payload: dict[str, Any], field: str, limit: int) -> str | None:
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContractError(400, "invalid_field", f"{field} must be a string", field)
    if len(value) > limit:
        raise ContractError(
            400, "invalid_field", f"{field} is longer than {limit} characters", field
        )
    return value


def parse_dip_request(body: bytes, content_type: str | None) -> DipRequest:
    """Validate a dip request body; raise ContractError for anything the caller got wrong."""
    if not _is_json_media_type(content_type):
        raise ContractError(415, "unsupported_media_type", "expected application/json", None)
    if len(body) > MAX_BODY_BYTES:
        raise ContractError(
            413, "body_too_large", f"request body is over {MAX_BODY_BYTES} bytes", None
        )
    try:
        payload = decode_json(body)
    except BodyError as exc:
        raise ContractError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ContractError(400, "not_an_object", "request body must be a JSON object")

    conversation_id = payload.get("conversationId")
    if conversation_id is None:
        raise ContractError(400, "missing_field", "conversationId is required", "conversationId")
    if not isinstance(conversation_id, str) or not _UUID.match(conversation_id):
        raise ContractError(
            400, "invalid_field", "conversationId must be a UUID string", "conversationId"
        )

    ani = _optional_text(payload, "ani", _MAX_ANI_CHARS)
    dnis = _optional_text(payload, "dnis", _MAX_DNIS_CHARS)
    customer_id = _optional_text(payload, "customerId", 64)
    if customer_id is not None:
        customer_id = customer_id.strip()
        if customer_id == "":
            # Genesys renders an unset optional input as an empty string.
            customer_id = None
        elif not _CUSTOMER_ID.match(customer_id):
            raise ContractError(
                400,
                "invalid_field",
                "customerId must be 1-64 characters of letters, digits, '_' or '-'",
                "customerId",
            )

    if "ani" not in payload and "customerId" not in payload:
        raise ContractError(400, "missing_field", "give ani, customerId or both", "ani")
    return DipRequest(conversation_id.lower(), ani, customer_id, dnis)
