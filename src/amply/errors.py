"""Domain errors. Services raise these; one handler renders them as SPEC.md §3's error shape.

``{"error": {"type": ..., "code": ..., "message": ..., "param": ...}}``
"""

from __future__ import annotations

from typing import Any, ClassVar


class AmplyError(Exception):
    """Base of every error a client can cause or must be told about."""

    status_code: ClassVar[int] = 400
    error_type: ClassVar[str] = "invalid_request_error"
    default_code: ClassVar[str] = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param

    def body(self) -> dict[str, Any]:
        return error_body(
            error_type=self.error_type, code=self.code, message=self.message, param=self.param
        )


def error_body(*, error_type: str, code: str, message: str, param: str | None) -> dict[str, Any]:
    """The single error shape of the API."""
    return {"error": {"type": error_type, "code": code, "message": message, "param": param}}


class NotFound(AmplyError):
    status_code = 404
    default_code = "resource_missing"


class Conflict(AmplyError):
    status_code = 409
    default_code = "conflict"


class InsufficientFunds(AmplyError):
    status_code = 422
    default_code = "insufficient_funds"


class ServiceUnavailable(AmplyError):
    status_code = 503
    error_type = "api_error"
    default_code = "service_unavailable"
