"""The payment gateway: Stripe Connect, or the local sandbox when no Stripe keys are set.

Both answer the same questions (create a connected account and its onboarding link, create a
PaymentIntent on an organisation's account, tell a charge's processing fee, refund), so the
donation service never asks which one it has. Stripe's answers to *what happened* arrive as
events (``services/stripe_events.py``); the sandbox makes the same events itself
(``services/sandbox.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import stripe
from stripe._base_address import BaseAddresses

from amply.config import Settings
from amply.errors import AmplyError, Conflict, PaymentProviderError, ServiceUnavailable
from amply.lib.ids import sandbox_id
from amply.lib.money import fee_for, stripe_currency

logger = logging.getLogger(__name__)

Provider = Literal["stripe", "sandbox"]
RefundReason = Literal["requested_by_customer", "duplicate", "fraudulent"]

# The sandbox's stand-in for Stripe's processing fee: 2.9% (half up) plus 30 minor units,
# Stripe's standard card pricing in the US, so that sandbox ledgers show a realistic fee.
SANDBOX_FEE_BASIS_POINTS: Final = 290
SANDBOX_FEE_FIXED: Final = 30


@dataclass(frozen=True, slots=True)
class AccountState:
    account_id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool


@dataclass(frozen=True, slots=True)
class AccountLink:
    url: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class CreatedPayment:
    payment_intent_id: str
    client_secret: str | None


@dataclass(frozen=True, slots=True)
class ProcessingFee:
    fee: int
    currency: str
    balance_transaction_id: str | None


@dataclass(frozen=True, slots=True)
class CreatedRefund:
    refund_id: str
    status: str


class PaymentGateway(Protocol):
    provider: Provider
    publishable_key: str | None

    def owns_account(self, account_id: str) -> bool:
        """Whether ``account_id`` is an account of this gateway (sandbox or Stripe)."""
        ...

    async def create_account(self, *, organisation_id: str, country: str) -> AccountState: ...

    async def retrieve_account(self, *, account_id: str) -> AccountState: ...

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> AccountLink: ...

    async def create_payment(
        self,
        *,
        account_id: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedPayment: ...

    async def retrieve_payment_intent(
        self, *, account_id: str, payment_intent_id: str
    ) -> dict[str, Any]: ...

    async def processing_fee(
        self, *, account_id: str, charge_id: str, amount: int, currency: str
    ) -> ProcessingFee | None:
        """Stripe's fee on a charge, or None while Stripe has not settled it yet."""
        ...

    async def create_refund(
        self,
        *,
        account_id: str,
        payment_intent_id: str,
        amount: int,
        reason: RefundReason,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedRefund: ...


class PaymentRefused(AmplyError):
    """Stripe refused the request as invalid (an over-refund, say): the client can act on it."""

    status_code = 409
    default_code = "payment_provider_refused"


def _translate(error: stripe.StripeError) -> AmplyError:
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return ServiceUnavailable(
            "Stripe could not be reached; try again shortly.", code="payment_provider_unavailable"
        )
    if isinstance(error, stripe.IdempotencyError):
        return PaymentRefused(
            "Stripe saw this Idempotency-Key with a different request; use a new key.",
            code="idempotency_key_reused",
        )
    if isinstance(error, stripe.InvalidRequestError | stripe.CardError):
        message = error.user_message or "Stripe refused the request."
        return PaymentRefused(message, code=error.code or None)
    logger.error("Stripe call failed: %s", error)
    return PaymentProviderError("Stripe failed to process the request; try again later.")


@contextmanager
def _calling_stripe() -> Iterator[None]:
    """Stripe's exceptions, as Amply's errors."""
    try:
        yield
    except stripe.StripeError as error:
        raise _translate(error) from error


class StripeGateway:
    """Stripe Connect with direct charges on the organisation's own account, no fee."""

    provider: Provider = "stripe"

    def __init__(self, settings: Settings) -> None:
        assert settings.stripe_secret_key is not None
        base = settings.stripe_api_base
        addresses: BaseAddresses = {"api": base, "connect": base} if base else {}
        self.publishable_key = settings.stripe_publishable_key
        self._client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses=addresses,
            http_client=stripe.HTTPXClient(
                timeout=settings.stripe_timeout_seconds, allow_sync_methods=False
            ),
            max_network_retries=2,
        )

    def owns_account(self, account_id: str) -> bool:
        return not account_id.startswith("acct_sandbox_")

    async def create_account(self, *, organisation_id: str, country: str) -> AccountState:
        with _calling_stripe():
            account = await self._client.v1.accounts.create_async(
                params={
                    "type": "standard",
                    "country": country,
                    "metadata": {"organisation_id": organisation_id},
                },
                options={"idempotency_key": f"account:{organisation_id}"},
            )
        return _account_state(account)

    async def retrieve_account(self, *, account_id: str) -> AccountState:
        with _calling_stripe():
            account = await self._client.v1.accounts.retrieve_async(account_id)
        return _account_state(account)

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> AccountLink:
        with _calling_stripe():
            link = await self._client.v1.account_links.create_async(
                params={
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            )
        return AccountLink(url=link.url, expires_at=link.expires_at)

    async def create_payment(
        self,
        *,
        account_id: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedPayment:
        # A direct charge: created on the connected account (Stripe-Account header), with no
        # application_fee_amount, so the organisation receives everything but Stripe's fee.
        with _calling_stripe():
            intent = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": amount,
                    "currency": stripe_currency(currency),
                    "metadata": metadata,
                },
                options={"stripe_account": account_id, "idempotency_key": idempotency_key},
            )
        return CreatedPayment(payment_intent_id=intent.id, client_secret=intent.client_secret)

    async def retrieve_payment_intent(
        self, *, account_id: str, payment_intent_id: str
    ) -> dict[str, Any]:
        with _calling_stripe():
            intent = await self._client.v1.payment_intents.retrieve_async(
                payment_intent_id, options={"stripe_account": account_id}
            )
        return intent.to_dict()

    async def processing_fee(
        self, *, account_id: str, charge_id: str, amount: int, currency: str
    ) -> ProcessingFee | None:
        with _calling_stripe():
            charge = await self._client.v1.charges.retrieve_async(
                charge_id,
                params={"expand": ["balance_transaction"]},
                options={"stripe_account": account_id},
            )
        transaction = charge.balance_transaction
        if transaction is None or isinstance(transaction, str):
            return None
        return ProcessingFee(
            fee=transaction.fee,
            currency=transaction.currency.upper(),
            balance_transaction_id=transaction.id,
        )

    async def create_refund(
        self,
        *,
        account_id: str,
        payment_intent_id: str,
        amount: int,
        reason: RefundReason,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedRefund:
        with _calling_stripe():
            refund = await self._client.v1.refunds.create_async(
                params={
                    "payment_intent": payment_intent_id,
                    "amount": amount,
                    "reason": reason,
                    "metadata": metadata,
                },
                options={"stripe_account": account_id, "idempotency_key": idempotency_key},
            )
        return CreatedRefund(refund_id=refund.id, status=refund.status or "pending")


def _account_state(account: stripe.Account) -> AccountState:
    return AccountState(
        account_id=account.id,
        charges_enabled=bool(account.charges_enabled),
        payouts_enabled=bool(account.payouts_enabled),
        details_submitted=bool(account.details_submitted),
    )


class SandboxGateway:
    """Local stand-ins for Stripe: accounts are ready at once, payments wait for the
    sandbox endpoints (``/v1/sandbox/payments/{id}/succeed``) to say what happened.
    """

    provider: Provider = "sandbox"
    publishable_key: str | None = None

    def owns_account(self, account_id: str) -> bool:
        return account_id.startswith("acct_sandbox_")

    async def create_account(self, *, organisation_id: str, country: str) -> AccountState:
        return AccountState(
            account_id=sandbox_id("acct"),
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
        )

    async def retrieve_account(self, *, account_id: str) -> AccountState:
        return AccountState(
            account_id=account_id,
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
        )

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> AccountLink:
        # Nothing to fill in: the sandbox account is onboarded already.
        return AccountLink(url=return_url, expires_at=0)

    async def create_payment(
        self,
        *,
        account_id: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedPayment:
        return CreatedPayment(payment_intent_id=sandbox_id("pi"), client_secret=None)

    async def retrieve_payment_intent(
        self, *, account_id: str, payment_intent_id: str
    ) -> dict[str, Any]:
        # Sandbox events come only from the sandbox endpoints, which never skip ahead of a
        # payment's success, so no sandbox handler ever needs to look a payment up.
        raise Conflict(
            "Sandbox payments are driven through /v1/sandbox/payments.", code="sandbox_payment"
        )

    async def processing_fee(
        self, *, account_id: str, charge_id: str, amount: int, currency: str
    ) -> ProcessingFee | None:
        return ProcessingFee(
            fee=fee_for(amount, basis_points=SANDBOX_FEE_BASIS_POINTS) + SANDBOX_FEE_FIXED,
            currency=currency,
            balance_transaction_id=None,
        )

    async def create_refund(
        self,
        *,
        account_id: str,
        payment_intent_id: str,
        amount: int,
        reason: RefundReason,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedRefund:
        return CreatedRefund(refund_id=sandbox_id("re"), status="pending")


def gateway_for(settings: Settings) -> PaymentGateway:
    if settings.sandbox_mode:
        return SandboxGateway()
    return StripeGateway(settings)
