"""dipguard's two error families.

``CallerError``: a request the caller got wrong, answered with a 4xx and the one error body
(shared.http.error_body). Its message says what was wrong and never echoes the caller's
values. The dip's ContractError and the surge switch's SurgeInputError derive from it.

``DependencyUnavailable``: a dependency (Redis, Table Storage) did not answer in time or
failed. The dip answers from what it still has; the message names why (an exception's
type, "breaker is open"), never a caller's data.
"""

from __future__ import annotations

from typing import Any

from shared.http import ApiResponse, error_body

__all__ = ["CallerError", "DependencyUnavailable"]


class CallerError(Exception):
    """A request the caller got wrong: a 4xx with ``{"error", "message", "field"}``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.field)

    def response(self) -> ApiResponse:
        return ApiResponse(self.status, self.body())


class DependencyUnavailable(Exception):
    """A dependency did not answer in time, failed, or is held off by a breaker."""
