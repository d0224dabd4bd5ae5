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
    # True for the few errors whose request must still leave a trace: a failed login's
    # throttling count and security event are committed although the request fails.
    keeps_changes: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param

    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After``, ``WWW-Authenticate``)."""
        return {}

    def body(self) -> dict[str, Any]:
        return error_body(
            error_type=self.error_type, code=self.code, message=self.message, param=self.param
        )


def error_body(*, error_type: str, code: str, message: str, param: str | None) -> dict[str, Any]:
    """The single error shape of the API."""
    return {"error": {"type": error_type, "code": code, "message": message, "param": param}}


class AuthenticationRequired(AmplyError):
    """No valid credentials: missing, unknown, expired or revoked."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "authentication_required"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="amply"'}


class LoginFailed(AuthenticationRequired):
    """Wrong login or password; the failure is counted and logged even though the request fails."""

    default_code = "invalid_credentials"
    keeps_changes = True


class PermissionDenied(AmplyError):
    """Authenticated, but not allowed to do this."""

    status_code = 403
    error_type = "permission_error"
    default_code = "forbidden"


class RateLimited(AmplyError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class LoginThrottled(RateLimited):
    """Too many failed logins; the refused attempt is still logged."""

    default_code = "login_throttled"
    keeps_changes = True


class InvalidInput(AmplyError):
    """Well-formed input that a business rule rejects (a weak password, an unknown country)."""

    status_code = 422
    default_code = "parameter_invalid"


class WrongPassword(InvalidInput):
    """A signed-in user's current password was wrong: counted against the account's limit."""

    default_code = "invalid_credentials"
    keeps_changes = True


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


class PaymentProviderError(AmplyError):
    """Stripe refused or failed a call; its message is passed on when it is the client's."""

    status_code = 502
    error_type = "api_error"
    default_code = "payment_provider_error"


class LedgerIntegrityError(ServiceUnavailable):
    """The stored chain does not extend what Amply signed before: someone altered it. Amply
    refuses to sign or serve a checkpoint until an operator has looked."""

    default_code = "ledger_integrity_failure"


class SigningKeyNotInstalled(ServiceUnavailable):
    """The configured checkpoint key is not the active one in the database: only the schema
    owner installs keys (``amply serve`` after migrating, or ``amply keys install``)."""

    default_code = "signing_key_not_installed"


class BodyTooLarge(AmplyError):
    """A request body over the configured limit, refused before it is read whole."""

    status_code = 413
    default_code = "body_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than {limit} bytes, the most this API accepts."
        )
