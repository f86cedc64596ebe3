"""Who is calling the surge switch: the operator App Service Authentication signed in.

In Azure, App Service Authentication on the operator app validates the caller's Entra ID
token and passes its claims to the app in request headers that "external requests aren't
allowed to set" ("Work with user identities in Azure App Service authentication",
ms.date 07/02/2025):

- ``X-MS-CLIENT-PRINCIPAL``: Base64-encoded JSON ``{"auth_typ", "name_typ", "role_typ",
  "claims": [{"typ", "val"}]}``, the full set of claims after App Service's claim mapping;
- ``X-MS-CLIENT-PRINCIPAL-ID`` and ``X-MS-CLIENT-PRINCIPAL-NAME``: the caller's identifier
  and a readable name, as the identity provider sets them.

Those headers are trustworthy only behind App Service Authentication: anywhere else anyone
can send them. App Service sets ``WEBSITE_AUTH_ENABLED`` in an app with authentication on
("Read-only. Injected into a Windows or Linux app to indicate whether App Service
authentication is enabled": "Environment variables and app settings in Azure App Service",
ms.date 09/14/2023), and ``ScaleSettings.principal_trusted`` is true only with it, or with
SURGE_TRUST_LOCAL_PRINCIPAL, which an app in Azure refuses at start-up.

An operator is whoever holds the app role ``Surge.Operate`` in the token's ``roles``. The
object id and display name identify the operator on each surge row and its log line; they
are the operator's, never a caller's. Nothing read from the header is echoed in an answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import CallerError

__all__ = [
    "PRINCIPAL_HEADER",
    "SURGE_ROLE",
    "Operator",
    "PrincipalRefused",
    "operator_from_headers",
]

PRINCIPAL_HEADER = "X-MS-CLIENT-PRINCIPAL"
PRINCIPAL_ID_HEADER = "X-MS-CLIENT-PRINCIPAL-ID"
PRINCIPAL_NAME_HEADER = "X-MS-CLIENT-PRINCIPAL-NAME"

# The app role the operator app's Entra registration defines and assigns to operators.
SURGE_ROLE = "Surge.Operate"

# A principal is a few kilobytes (one claim per group, role and token field); anything
# far larger is not App Service's.
MAX_PRINCIPAL_BYTES = 64 * 1024
MAX_NAME = 128

# Claim types as App Service maps them: Entra's short names, or the WS-Federation URIs
# claim mapping gives some of them.
_ROLE_TYPES = frozenset({"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
_OID_TYPES = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_NAME_TYPES = ("name",)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Operator:
    """The signed-in operator: Entra object id (a GUID) and display name ("" if none)."""

    object_id: str
    name: str

    def as_json(self) -> dict[str, str]:
        return {"objectId": self.object_id, "name": self.name}


class PrincipalRefused(CallerError):
    """No operator: 401 (no principal, or one that cannot be read) or 403 (no role).

    ``identity`` is the signed-in identity a 403 refused, for the refusal's log line.
    """

    identity: Operator | None = None


def _unauthenticated(message: str) -> PrincipalRefused:
    return PrincipalRefused(401, "unauthenticated", message, PRINCIPAL_HEADER)


def _malformed() -> PrincipalRefused:
    return PrincipalRefused(
        401,
        "invalid_principal",
        f"the {PRINCIPAL_HEADER} header is not a principal App Service Authentication sets",
        PRINCIPAL_HEADER,
    )


def _decode(raw: str) -> dict[str, Any]:
    text = raw.strip()
    if not text or len(text) > MAX_PRINCIPAL_BYTES:
        raise _malformed()
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        decoded = json.loads(data.decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        raise _malformed() from None
    if not isinstance(decoded, dict):
        raise _malformed()
    return decoded


def _claims(principal: dict[str, Any]) -> list[tuple[str, str]]:
    claims = principal.get("claims")
    if not isinstance(claims, list):
        raise _malformed()
    found: list[tuple[str, str]] = []
    for claim in claims:
        if not isinstance(claim, dict):
            raise _malformed()
        typ, val = claim.get("typ"), claim.get("val")
        if not isinstance(typ, str) or not isinstance(val, str):
            raise _malformed()
        found.append((typ, val))
    return found


def _first(claims: list[tuple[str, str]], types: tuple[str, ...]) -> str:
    for wanted in types:
        for typ, val in claims:
            if typ == wanted and val.strip():
                return val.strip()
    return ""


def _display_name(name: str) -> str:
    # Stored on the surge row and written in a log line: one line, bounded.
    return _CONTROL.sub(" ", name).strip()[:MAX_NAME]


def operator_from_headers(headers: Mapping[str, str], *, trusted: bool) -> Operator:
    """The operator App Service Authentication signed in, or PrincipalRefused.

    ``trusted``: App Service Authentication stands in front of the app (or a local-only
    setting says to act as if it did). Without it no header is believed, and every
    request is a 401.
    """
    if not trusted:
        raise _unauthenticated(
            "App Service Authentication is not on for this app, so no operator can be "
            "identified: sign in with Entra ID through the operator app"
        )
    lower = {name.lower(): value for name, value in headers.items()}
    raw = lower.get(PRINCIPAL_HEADER.lower())
    if raw is None:
        raise _unauthenticated(
            f"sign in with Entra ID: the surge switch needs an operator holding {SURGE_ROLE}"
        )
    principal = _decode(raw)
    claims = _claims(principal)
    role_type = principal.get("role_typ")
    role_types = _ROLE_TYPES | ({role_type} if isinstance(role_type, str) else set())
    object_id = _first(claims, _OID_TYPES) or lower.get(PRINCIPAL_ID_HEADER.lower(), "").strip()
    if not _GUID.match(object_id):
        raise _malformed()
    name_type = principal.get("name_typ")
    name_types = _NAME_TYPES + ((name_type,) if isinstance(name_type, str) else ())
    name = _first(claims, name_types) or lower.get(PRINCIPAL_NAME_HEADER.lower(), "")
    operator = Operator(object_id.lower(), _display_name(name))
    if not any(typ in role_types and val == SURGE_ROLE for typ, val in claims):
        refused = PrincipalRefused(
            403, "forbidden", f"the signed-in identity does not hold the app role {SURGE_ROLE}"
        )
        refused.identity = operator
        raise refused
    return operator
