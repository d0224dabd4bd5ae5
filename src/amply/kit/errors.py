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


# --- The catalogue of error codes, as OpenAPI documents them --------------------------------
#
# Every `error.code` the API sends, with what it means for the caller. ``ERROR_STATUSES``
# says, per HTTP status, what the status means and the codes any route answering it may
# carry; route-specific codes (a 409's `slug_taken`) are in this catalogue, which the API
# description lists in full. tests/test_openapi_document.py keeps it complete.
ERROR_CODES: dict[str, str] = {
    # 400
    "invalid_request": "the request is malformed",
    "body_invalid_json": "the body is not valid JSON (or not UTF-8)",
    "idempotency_key_invalid": "the Idempotency-Key header is not 16-255 visible ASCII characters",
    "webhook_invalid": "the webhook request cannot be read",
    "webhook_payload_invalid": "the event lacks a field every event has",
    "webhook_signature_invalid": "the Stripe-Signature header does not verify",
    # 401
    "authentication_required": "no credentials were sent; sign in or send an API key",
    "authorization_malformed": "the Authorization header is not `Bearer <token>`",
    "token_invalid": "the bearer token is neither a session token nor an API key",
    "session_invalid": "no such session (signed out, or never existed)",
    "session_expired": "the session reached its idle or absolute lifetime; sign in again",
    "session_revoked": "the session was revoked (signed out elsewhere, password changed)",
    "api_key_invalid": "no such API key, or it was revoked",
    "api_key_wrong_mode": "a test key on a live server, or a live key on a test one",
    "invalid_credentials": "wrong login or password",
    # 403
    "forbidden": "authenticated, but not allowed to do this",
    "csrf_token_missing": "a cookie session sent no X-CSRF-Token header on a write",
    "csrf_token_invalid": "the X-CSRF-Token header is not this session's token",
    "role_insufficient": "your role in the organisation does not allow this",
    "session_required": "only a signed-in member may do this; API keys cannot",
    "api_key_required": "only the organisation's API key may do this",
    "api_key_read_only": "this API key is read-only",
    # 404
    "resource_missing": "no such resource, or it is not yours to see",
    "chain_missing": "no such ledger chain",
    "checkpoint_missing": "no checkpoint has been signed for this chain yet",
    "metrics_disabled": "metrics are turned off (AMPLY_METRICS_ENABLED)",
    "request_not_found": "no such money request",
    "sandbox_disabled": "the sandbox is off: this server has Stripe keys",
    "transaction_not_found": "no such transaction in your wallet",
    "transfer_not_found": "no such transfer",
    "user_not_found": "no such user",
    "wallet_missing": "no such wallet",
    "method_not_allowed": "this path does not take this method (405)",
    # 409
    "conflict": "the request conflicts with the resource's current state",
    "idempotency_key_reused": "this Idempotency-Key was used with a different request",
    "already_member": "the user is already a member",
    "card_removed": "the card was removed",
    "chain_exists": "the chain exists already",
    "deposit_not_refundable": "this deposit cannot be refunded",
    "donation_not_completed": "the donation's payment has not succeeded",
    "donation_refunded": "the donation is refunded in full",
    "donation_disputed": "the donation's payment is disputed: Stripe refuses its refunds",
    "email_taken": "an account has this email address",
    "username_taken": "an account has this username",
    "fund_closed": "the fund is closed",
    "fund_name_taken": "the organisation has a fund of this name",
    "last_owner": "the organisation would be left with no owner",
    "organisation_not_accepting_donations": "the organisation cannot take donations yet",
    "payment_already_succeeded": "the payment succeeded already",
    "payment_method_not_card": "the payment method is not a card",
    "payment_mismatch": "the payment does not match what was asked",
    "payment_not_pending": "the payment is no longer pending",
    "payment_provider_busy": "Stripe is still running an earlier attempt; retry shortly",
    "payment_provider_refused": "the payment provider refused",
    "request_expired": "the money request expired",
    "request_not_pending": "the money request is no longer pending",
    "request_payment_in_progress": "the money request is being paid",
    "sandbox_payment": "a sandbox payment cannot do this",
    "setup_intent_already_succeeded": "the card was saved already",
    "setup_intent_not_succeeded": "the card's set-up has not succeeded",
    "slug_taken": "an organisation has this slug",
    "stripe_account_missing": "the organisation has no Stripe account yet",
    "transfer_expired": "the held transfer expired",
    "wallet_restricted": "a refunded or charged-back deposit left the wallet owing money",
    "transfer_not_pending": "the transfer is no longer waiting for confirmation",
    "withdrawal_not_pending": "the withdrawal is no longer pending",
    "withdrawal_provider_mismatch": "the withdrawal belongs to another payment provider",
    # 413
    "body_too_large": "the body is larger than AMPLY_REQUEST_BODY_MAX_BYTES",
    # 422
    "parameter_invalid": "a parameter is missing or invalid; `param` names it",
    "amount_too_small": "the amount is below the minimum",
    "amount_too_large": "the amount is above the maximum",
    "bank_deposits_unavailable": "bank deposits are not available here",
    "currency_mismatch": "the currency is not the one expected",
    "insufficient_funds": "the wallet's available balance is too low",
    "no_default_card": "the wallet has no default card",
    "password_too_weak": "the password is too weak (docs/authentication.md#passwords)",
    "refund_exceeds_remaining": "the refund is larger than what remains of the donation",
    "self_request": "you cannot request money from yourself",
    "self_transfer": "you cannot send money to yourself",
    # 429
    "rate_limited": "too many requests; retry after Retry-After seconds",
    "login_throttled": "too many failed logins; retry after Retry-After seconds",
    "checkout_rate_limited": "too many checkouts from this client; retry later",
    # 500
    "internal_error": "a bug on our side; it has been logged",
    # 502
    "payment_provider_error": "Stripe refused or failed the call",
    # 503
    "service_unavailable": "a dependency is unavailable; retry shortly",
    "database_unavailable": "the database is unreachable; retry after Retry-After",
    "not_ready": "the service is not ready (database or schema)",
    "event_out_of_order": "an event arrived before one it depends on; Stripe retries it",
    "ledger_integrity_failure": "the stored chain does not extend what Amply signed",
    "payment_provider_unavailable": "Stripe cannot be reached; retry shortly",
    "stripe_read_unavailable": "Stripe's word on the event could not be read; Stripe retries it",
    "payouts_unavailable": "payouts are not available here",
    "signing_key_not_installed": "the checkpoint key is not installed (amply keys install)",
    "webhooks_not_configured": "no webhook secret is configured",
}

# Per status: what it means, and the codes any route that answers it may send.
ERROR_STATUSES: dict[int, tuple[str, tuple[str, ...]]] = {
    400: (
        "The request cannot be read.",
        ("invalid_request", "body_invalid_json", "parameter_invalid", "idempotency_key_invalid"),
    ),
    401: (
        "No valid credentials: send a session token or API key as `Authorization: Bearer`, "
        "or the session cookie.",
        (
            "authentication_required",
            "authorization_malformed",
            "token_invalid",
            "session_invalid",
            "session_expired",
            "session_revoked",
            "api_key_invalid",
            "api_key_wrong_mode",
            "invalid_credentials",
        ),
    ),
    403: (
        "Authenticated, but not allowed.",
        (
            "forbidden",
            "csrf_token_missing",
            "csrf_token_invalid",
            "role_insufficient",
            "session_required",
            "api_key_read_only",
        ),
    ),
    404: (
        "Not found, or not yours to see (another organisation's resources answer 404).",
        ("resource_missing",),
    ),
    409: (
        "The request conflicts with the current state; the code names which rule (see the "
        "error catalogue in the API description).",
        ("conflict", "idempotency_key_reused"),
    ),
    413: ("The request body is too large.", ("body_too_large",)),
    422: (
        "Well-formed input that a rule rejects; `param` names the parameter at fault.",
        ("parameter_invalid", "amount_too_small", "amount_too_large", "insufficient_funds"),
    ),
    429: (
        "Too many requests: retry after the `Retry-After` header's seconds.",
        ("rate_limited", "login_throttled", "checkout_rate_limited"),
    ),
    500: ("A bug on our side.", ("internal_error",)),
    502: ("The payment provider refused or failed the call.", ("payment_provider_error",)),
    503: (
        "Temporarily unavailable: retry after the `Retry-After` header's seconds.",
        ("service_unavailable", "database_unavailable", "payment_provider_unavailable"),
    ),
}
