"""Surge requests and the scale settings of the surge tests: a schedule that asks for 5
always-ready instances at NOON, a request body with overrides, and the headers App Service
Authentication sets for a signed-in operator."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from shared.scale.principal import Operator
from tests.support.fake_arm import SUBSCRIPTION

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # Wednesday, business hours

SCHEDULE = {
    "timezone": "America/New_York",
    "default": {"alwaysReady": 1},
    "windows": [
        {
            "name": "business-hours",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "07:00",
            "end": "22:00",
            "alwaysReady": 5,
        }
    ],
}


def scale_env(base_env: dict[str, str], schedule: dict[str, Any] = SCHEDULE) -> dict[str, str]:
    return {
        **base_env,
        "SCALE_SCHEDULE": json.dumps(schedule),
        "SCALE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "SCALE_RESOURCE_GROUP": "rg-dip",
        "SCALE_SITE_NAME": "dip-app",
        # As App Service sets it in an app with App Service Authentication on.
        "WEBSITE_AUTH_ENABLED": "True",
    }


def body(**values: Any) -> bytes:
    return json.dumps(
        {"alwaysReady": 20, "minutes": 30, "reason": "recall announced", **values}
    ).encode()


# An operator as Entra ID and App Service Authentication describe one.
OPERATOR_OID = "5f0c1e2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f"
OPERATOR_NAME = "Ada Operator"
OID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
ROLE_CLAIM_TYPE = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
NAME_CLAIM_TYPE = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"


def principal(
    roles: tuple[str, ...] = ("Surge.Operate",),
    *,
    oid: str = OPERATOR_OID,
    name: str = OPERATOR_NAME,
    extra: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """The decoded X-MS-CLIENT-PRINCIPAL of an Entra ID user token, roles in ``roles``."""
    claims = [
        {"typ": "aud", "val": "api://dipguard-operator"},
        {"typ": OID_CLAIM, "val": oid},
        {"typ": "name", "val": name},
        {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": "tenant"},
        *({"typ": "roles", "val": role} for role in roles),
        *({"typ": typ, "val": val} for typ, val in extra),
    ]
    return {
        "auth_typ": "aad",
        "claims": claims,
        "name_typ": NAME_CLAIM_TYPE,
        "role_typ": ROLE_CLAIM_TYPE,
    }


def encoded(value: dict[str, Any] | str) -> str:
    raw = value if isinstance(value, str) else json.dumps(value)
    return base64.b64encode(raw.encode()).decode()


def principal_headers(roles: tuple[str, ...] = ("Surge.Operate",), **kwargs: Any) -> dict[str, str]:
    """The headers App Service Authentication sets for a signed-in caller."""
    decoded = principal(roles, **kwargs)
    claims = {c["typ"]: c["val"] for c in decoded["claims"]}
    return {
        "X-MS-CLIENT-PRINCIPAL": encoded(decoded),
        "X-MS-CLIENT-PRINCIPAL-ID": claims[OID_CLAIM],
        "X-MS-CLIENT-PRINCIPAL-NAME": claims["name"],
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    }


OPERATOR = principal_headers()
# The same operator as the surge store records it.
ADA = Operator(OPERATOR_OID, OPERATOR_NAME)
