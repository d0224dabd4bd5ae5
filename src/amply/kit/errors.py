"""Domain errors. Services raise these; one handler renders them as SPEC.md §3's error shape.

``{"error": {"type": ..., "code": ..., "message": ..., "param": ...}}``
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar


class AmplyError(Exception):
    """Base of every error a client can cause or must be told about."""

    status_code: ClassVar[int] = 400
    error_type: ClassVar[str] = "invalid_request_error"
    default_code: ClassVar[str] = "invalid_request"
    # True for the few errors whose request must still leave a trace: a failed login's
    # throttling count and security event are committed although the request fails.
    keeps_changes: ClassVar[bool] = False
    # True only for an error that passes on the payment provider's own code (Stripe's
    # `card_declined`), which no registry of Amply's can list; every other code must be an
    # :class:`ErrorCode` of the error's status.
    passes_provider_codes: ClassVar[bool] = False

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        registered = ErrorCode.of(self.code)
        if self.passes_provider_codes and self.code != self.default_code:
            return  # the provider's own code, in the provider's namespace
        if registered is None:
            raise ValueError(f"error code {self.code!r} is not an ErrorCode")
        if self.status_code not in registered.statuses:
            raise ValueError(
                f"error code {self.code!r} is registered for {registered.statuses}, "
                f"not {self.status_code}"
            )

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


# --- The registry of error codes ------------------------------------------------------------
#
# Every `error.code` the API sends, each defined once with the HTTP status(es) it is sent
# with and what it means for the caller. ``AmplyError`` refuses any other code, and
# tests/kit/test_error_registry.py checks every code written in src against its error's
# status. Routes name the codes they can answer in ``responses=``
# (``amply.kit.error_responses.error_responses``); the API description lists them all.


class ErrorCode(StrEnum):
    """A registered error code: its value is what ``error.code`` carries."""

    status: int
    statuses: tuple[int, ...]
    meaning: str

    def __new__(cls, value: str, meaning: str, *statuses: int) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        member.status = statuses[0]
        member.statuses = statuses
        return member

    @staticmethod
    def of(code: str) -> ErrorCode | None:
        """The registered code ``code``, or None when it is not one."""
        return _BY_VALUE.get(code)

    # 400
    INVALID_REQUEST = "invalid_request", "the request is malformed", 400
    BODY_INVALID_JSON = "body_invalid_json", "the body is not valid JSON (or not UTF-8)", 400
    IDEMPOTENCY_KEY_INVALID = (
        "idempotency_key_invalid",
        "the Idempotency-Key header is not 16-255 visible ASCII characters",
        400,
    )
    WEBHOOK_INVALID = "webhook_invalid", "the webhook request cannot be read", 400
    WEBHOOK_PAYLOAD_INVALID = (
        "webhook_payload_invalid",
        "the event lacks a field every event has",
        400,
    )
    WEBHOOK_SIGNATURE_INVALID = (
        "webhook_signature_invalid",
        "the Stripe-Signature header does not verify",
        400,
    )
    # 401
    AUTHENTICATION_REQUIRED = (
        "authentication_required",
        "no credentials were sent; sign in or send an API key",
        401,
    )
    AUTHORIZATION_MALFORMED = (
        "authorization_malformed",
        "the Authorization header is not `Bearer <token>`",
        401,
    )
    TOKEN_INVALID = (
        "token_invalid",
        "the bearer token is neither a session token nor an API key",
        401,
    )
    SESSION_INVALID = "session_invalid", "no such session (signed out, or never existed)", 401
    SESSION_EXPIRED = (
        "session_expired",
        "the session reached its idle or absolute lifetime; sign in again",
        401,
    )
    SESSION_REVOKED = (
        "session_revoked",
        "the session was revoked (signed out elsewhere, password changed)",
        401,
    )
    API_KEY_INVALID = "api_key_invalid", "no such API key, or it was revoked", 401
    API_KEY_WRONG_MODE = (
        "api_key_wrong_mode",
        "a test key on a live server, or a live key on a test one",
        401,
    )
    INVALID_CREDENTIALS = (
        "invalid_credentials",
        "wrong login or password (401); a wrong current password (422)",
        401,
        422,
    )
    # 403
    FORBIDDEN = "forbidden", "authenticated, but not allowed to do this", 403
    CSRF_TOKEN_MISSING = (
        "csrf_token_missing",
        "a cookie session sent no X-CSRF-Token header on a write",
        403,
    )
    CSRF_TOKEN_INVALID = (
        "csrf_token_invalid",
        "the X-CSRF-Token header is not this session's token",
        403,
    )
    ROLE_INSUFFICIENT = (
        "role_insufficient",
        "your role in the organisation does not allow this",
        403,
    )
    SESSION_REQUIRED = (
        "session_required",
        "only a signed-in person may do this; API keys cannot (403, or 401 where the route "
        "takes no API key at all)",
        403,
        401,
    )
    API_KEY_REQUIRED = "api_key_required", "only the organisation's API key may do this", 403
    API_KEY_READ_ONLY = "api_key_read_only", "this API key is read-only", 403
    # 404
    RESOURCE_MISSING = "resource_missing", "no such resource, or it is not yours to see", 404
    CHAIN_MISSING = "chain_missing", "no such ledger chain", 404
    CHECKPOINT_MISSING = (
        "checkpoint_missing",
        "no checkpoint has been signed for this chain yet",
        404,
    )
    METRICS_DISABLED = (
        "metrics_disabled",
        "metrics are turned off (AMPLY_METRICS_ENABLED)",
        404,
    )
    REQUEST_NOT_FOUND = "request_not_found", "no such money request", 404
    SANDBOX_DISABLED = (
        "sandbox_disabled",
        "the sandbox is off: this server has Stripe keys",
        404,
    )
    TRANSACTION_NOT_FOUND = "transaction_not_found", "no such transaction in your wallet", 404
    TRANSFER_NOT_FOUND = "transfer_not_found", "no such transfer", 404
    USER_NOT_FOUND = "user_not_found", "no such user", 404
    WALLET_MISSING = "wallet_missing", "no such wallet", 404
    METHOD_NOT_ALLOWED = (
        "method_not_allowed",
        "this path does not take this method (405)",
        405,
    )
    # 409
    CONFLICT = "conflict", "the request conflicts with the resource's current state", 409
    IDEMPOTENCY_KEY_REUSED = (
        "idempotency_key_reused",
        "this Idempotency-Key was used with a different request",
        409,
    )
    ALREADY_MEMBER = "already_member", "the user is already a member", 409
    CARD_REMOVED = "card_removed", "the card was removed", 409
    CHAIN_EXISTS = "chain_exists", "the chain exists already", 409
    DEPOSIT_NOT_REFUNDABLE = "deposit_not_refundable", "this deposit cannot be refunded", 409
    DONATION_NOT_COMPLETED = (
        "donation_not_completed",
        "the donation's payment has not succeeded",
        409,
    )
    DONATION_REFUNDED = "donation_refunded", "the donation is refunded in full", 409
    DONATION_DISPUTED = (
        "donation_disputed",
        "the donation's payment is disputed: Stripe refuses its refunds",
        409,
    )
    EMAIL_TAKEN = "email_taken", "an account has this email address", 409
    USERNAME_TAKEN = "username_taken", "an account has this username", 409
    FUND_CLOSED = "fund_closed", "the fund is closed", 409
    FUND_NAME_TAKEN = "fund_name_taken", "the organisation has a fund of this name", 409
    LAST_OWNER = "last_owner", "the organisation would be left with no owner", 409
    ORGANISATION_NOT_ACCEPTING_DONATIONS = (
        "organisation_not_accepting_donations",
        "the organisation cannot take donations yet",
        409,
    )
    PAYMENT_ALREADY_SUCCEEDED = (
        "payment_already_succeeded",
        "the payment succeeded already",
        409,
    )
    PAYMENT_METHOD_NOT_CARD = "payment_method_not_card", "the payment method is not a card", 409
    PAYMENT_MISMATCH = "payment_mismatch", "the payment does not match what was asked", 409
    PAYMENT_NOT_PENDING = "payment_not_pending", "the payment is no longer pending", 409
    PAYMENT_PROVIDER_BUSY = (
        "payment_provider_busy",
        "Stripe is still running an earlier attempt; retry shortly",
        409,
    )
    PAYMENT_PROVIDER_REFUSED = (
        "payment_provider_refused",
        "the payment provider refused (the code may instead be Stripe's own, "
        "such as `card_declined`)",
        409,
    )
    PAYOUT_SETTLED = "payout_settled", "the sandbox payout is settled already", 409
    REQUEST_EXPIRED = "request_expired", "the money request expired", 409
    REQUEST_NOT_PENDING = "request_not_pending", "the money request is no longer pending", 409
    REQUEST_PAYMENT_IN_PROGRESS = (
        "request_payment_in_progress",
        "the money request is being paid",
        409,
    )
    SANDBOX_PAYMENT = "sandbox_payment", "a sandbox payment cannot do this", 409
    SETUP_INTENT_ALREADY_SUCCEEDED = (
        "setup_intent_already_succeeded",
        "the card was saved already",
        409,
    )
    SETUP_INTENT_NOT_SUCCEEDED = (
        "setup_intent_not_succeeded",
        "the card's set-up has not succeeded",
        409,
    )
    SLUG_TAKEN = "slug_taken", "an organisation has this slug", 409
    STRIPE_ACCOUNT_MISSING = (
        "stripe_account_missing",
        "the organisation has no Stripe account yet",
        409,
    )
    TRANSFER_EXPIRED = "transfer_expired", "the held transfer expired", 409
    WALLET_RESTRICTED = (
        "wallet_restricted",
        "a refunded or charged-back deposit left the wallet owing money",
        409,
    )
    TRANSFER_NOT_PENDING = (
        "transfer_not_pending",
        "the transfer is no longer waiting for confirmation",
        409,
    )
    WITHDRAWAL_NOT_PENDING = (
        "withdrawal_not_pending",
        "the withdrawal is no longer pending",
        409,
    )
    WITHDRAWAL_PROVIDER_MISMATCH = (
        "withdrawal_provider_mismatch",
        "the withdrawal belongs to another payment provider",
        409,
    )
    # 413
    BODY_TOO_LARGE = (
        "body_too_large",
        "the body is larger than AMPLY_REQUEST_BODY_MAX_BYTES",
        413,
    )
    # 415
    UNSUPPORTED_MEDIA_TYPE = (
        "unsupported_media_type",
        "the body's Content-Type is not one this route reads",
        415,
    )
    # 422
    PARAMETER_INVALID = (
        "parameter_invalid",
        "a parameter is missing or invalid; `param` names it (400 when it cannot be read at all)",
        422,
        400,
    )
    AMOUNT_TOO_SMALL = "amount_too_small", "the amount is below the minimum", 422
    AMOUNT_TOO_LARGE = "amount_too_large", "the amount is above the maximum", 422
    BANK_DEPOSITS_UNAVAILABLE = (
        "bank_deposits_unavailable",
        "bank deposits are not available here",
        422,
    )
    CURRENCY_MISMATCH = "currency_mismatch", "the currency is not the one expected", 422
    INSUFFICIENT_FUNDS = (
        "insufficient_funds",
        "the wallet's available balance is too low",
        422,
    )
    NO_DEFAULT_CARD = "no_default_card", "the wallet has no default card", 422
    PASSWORD_TOO_WEAK = (
        "password_too_weak",
        "the password is too weak (docs/authentication.md#passwords)",
        422,
    )
    PAYOUT_EXCEEDS_BALANCE = (
        "payout_exceeds_balance",
        "the sandbox payout is larger than the organisation's sandbox balance",
        422,
    )
    REFUND_EXCEEDS_REMAINING = (
        "refund_exceeds_remaining",
        "the refund is larger than what remains of the donation",
        422,
    )
    SELF_REQUEST = "self_request", "you cannot request money from yourself", 422
    SELF_TRANSFER = "self_transfer", "you cannot send money to yourself", 422
    # 429
    RATE_LIMITED = "rate_limited", "too many requests; retry after Retry-After seconds", 429
    LOGIN_THROTTLED = (
        "login_throttled",
        "too many failed logins; retry after Retry-After seconds",
        429,
    )
    CHECKOUT_RATE_LIMITED = (
        "checkout_rate_limited",
        "too many checkouts from this client; retry later",
        429,
    )
    # 500
    INTERNAL_ERROR = "internal_error", "a bug on our side; it has been logged", 500
    LEDGER_REJECTED = (
        "ledger_rejected",
        "the ledger refused a journal: a bug, answered as `internal_error`",
        500,
    )
    # 502
    PAYMENT_PROVIDER_ERROR = "payment_provider_error", "Stripe refused or failed the call", 502
    # 503
    SERVICE_UNAVAILABLE = (
        "service_unavailable",
        "a dependency is unavailable; retry shortly",
        503,
    )
    DATABASE_UNAVAILABLE = (
        "database_unavailable",
        "the database is unreachable; retry after Retry-After",
        503,
    )
    NOT_READY = "not_ready", "the service is not ready (database or schema)", 503
    EVENT_OUT_OF_ORDER = (
        "event_out_of_order",
        "an event arrived before one it depends on; Stripe retries it",
        503,
    )
    LEDGER_INTEGRITY_FAILURE = (
        "ledger_integrity_failure",
        "the stored chain does not extend what Amply signed",
        503,
    )
    PAYMENT_PROVIDER_UNAVAILABLE = (
        "payment_provider_unavailable",
        "Stripe cannot be reached; retry shortly",
        503,
    )
    STRIPE_READ_UNAVAILABLE = (
        "stripe_read_unavailable",
        "Stripe's word on the event could not be read; Stripe retries it",
        503,
    )
    PAYOUTS_UNAVAILABLE = (
        "payouts_unavailable",
        "payouts are not available here (409 for a sandbox organisation without a "
        "sandbox Stripe account)",
        503,
        409,
    )
    SIGNING_KEY_NOT_INSTALLED = (
        "signing_key_not_installed",
        "the checkpoint key is not installed (amply keys install)",
        503,
    )
    WEBHOOKS_NOT_CONFIGURED = "webhooks_not_configured", "no webhook secret is configured", 503


_BY_VALUE: dict[str, ErrorCode] = {code.value: code for code in ErrorCode}

# Code -> meaning, in the registry's order: the API description's catalogue.
ERROR_CODES: Mapping[str, str] = MappingProxyType({code.value: code.meaning for code in ErrorCode})

# Per status: what it means, and the codes any route that answers it may send (a route adds
# its own codes to these in ``responses=``).
ERROR_STATUSES: Mapping[int, tuple[str, tuple[ErrorCode, ...]]] = MappingProxyType(
    {
        400: (
            "The request cannot be read.",
            (
                ErrorCode.INVALID_REQUEST,
                ErrorCode.BODY_INVALID_JSON,
                ErrorCode.PARAMETER_INVALID,
            ),
        ),
        401: (
            "No valid credentials: send a session token or API key as `Authorization: "
            "Bearer`, or the session cookie.",
            (
                ErrorCode.AUTHENTICATION_REQUIRED,
                ErrorCode.AUTHORIZATION_MALFORMED,
                ErrorCode.TOKEN_INVALID,
                ErrorCode.SESSION_INVALID,
                ErrorCode.SESSION_EXPIRED,
                ErrorCode.SESSION_REVOKED,
                ErrorCode.API_KEY_INVALID,
                ErrorCode.API_KEY_WRONG_MODE,
                ErrorCode.SESSION_REQUIRED,
            ),
        ),
        403: (
            "Authenticated, but not allowed.",
            (ErrorCode.FORBIDDEN, ErrorCode.CSRF_TOKEN_MISSING, ErrorCode.CSRF_TOKEN_INVALID),
        ),
        404: (
            "Not found, or not yours to see (another organisation's resources answer 404).",
            (ErrorCode.RESOURCE_MISSING,),
        ),
        405: ("This path does not take this method.", (ErrorCode.METHOD_NOT_ALLOWED,)),
        409: ("The request conflicts with the current state; the code names which rule.", ()),
        413: ("The request body is too large.", (ErrorCode.BODY_TOO_LARGE,)),
        415: ("The body's media type is not accepted.", (ErrorCode.UNSUPPORTED_MEDIA_TYPE,)),
        422: (
            "Well-formed input that a rule rejects; `param` names the parameter at fault.",
            (ErrorCode.PARAMETER_INVALID,),
        ),
        429: (
            "Too many requests: retry after the `Retry-After` header's seconds.",
            (ErrorCode.RATE_LIMITED,),
        ),
        500: ("A bug on our side.", (ErrorCode.INTERNAL_ERROR,)),
        502: (
            "The payment provider refused or failed the call.",
            (ErrorCode.PAYMENT_PROVIDER_ERROR,),
        ),
        503: (
            "Temporarily unavailable: retry after the `Retry-After` header's seconds.",
            (ErrorCode.DATABASE_UNAVAILABLE,),
        ),
    }
)

# Codes any route may answer whether or not it declares them: a bug, the database gone, a
# body over the limit (refused before routing).
UNIVERSAL_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.INTERNAL_ERROR,
        ErrorCode.DATABASE_UNAVAILABLE,
        ErrorCode.BODY_TOO_LARGE,
        ErrorCode.METHOD_NOT_ALLOWED,
    }
)
