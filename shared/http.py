"""What every dipguard endpoint shares: the answer, the 4xx error body, the JSON decoder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ApiResponse", "BodyError", "decode_json", "error_body", "error_response"]


@dataclass(frozen=True)
class ApiResponse:
    """An endpoint's answer: function_app.py turns it into the HTTP response."""

    status: int
    body: dict[str, Any]


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The one 4xx body every dipguard endpoint answers with."""
    return {"error": code, "message": message, "field": field}


def error_response(status: int, code: str, message: str, field: str | None = None) -> ApiResponse:
    return ApiResponse(status, error_body(code, message, field))


class BodyError(ValueError):
    """A request body that is not JSON this service can read; the message says why."""


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def decode_json(body: bytes) -> Any:
    """The JSON value of a request body, or BodyError.

    Python's decoder fails in more ways than JSONDecodeError: ValueError for an integer
    past the int/str conversion limit (4,300 digits), RecursionError for arrays or objects
    nested thousands deep, UnicodeDecodeError for bytes that are no Unicode text. Each is
    the caller's malformed body, so each becomes a BodyError. It also refuses NaN and
    Infinity, which Python accepts and JSON (RFC 8259) does not.
    """
    try:
        return json.loads(body, parse_constant=_no_constants)
    except RecursionError:
        raise BodyError("the body is nested too deeply") from None
    except UnicodeDecodeError:
        raise BodyError("the body is not UTF-8, UTF-16 or UTF-32 text") from None
    except json.JSONDecodeError as exc:
        raise BodyError(str(exc)) from None
    except ValueError as exc:
        # The only other ValueError the decoder raises: the int/str conversion limit.
        message = str(exc)
        if "digits" in message:
            message = "a number in the body has too many digits"
        raise BodyError(message) from None
