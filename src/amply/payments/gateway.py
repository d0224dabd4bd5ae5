"""The payment gateway: Stripe Connect, or the local sandbox when no Stripe keys are set.

Both answer the same questions (create a connected account and its onboarding link, create a
PaymentIntent on an organisation's account, tell a charge's processing fee, refund; and for
wallets: a Customer per wallet, SetupIntents that save its cards, PaymentIntents on the
platform account that charge a saved card), so the services never ask which one they have.
Stripe's answers to *what happened* arrive as events (``webhooks/stripe_events.py``); the
sandbox makes the same events itself (``webhooks/sandbox.py``).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal, NotRequired, Protocol, TypedDict, Unpack

import stripe
from stripe._base_address import BaseAddresses
from stripe.params import PaymentIntentCreateParams, SetupIntentCreateParams

from amply.kit.errors import (
    AmplyError,
    Conflict,
    NotFound,
    PaymentProviderError,
    ServiceUnavailable,
)
from amply.kit.ids import base62, sandbox_id
from amply.kit.money import fee_for, stripe_currency
from amply.kit.settings import Settings
from amply.models.enums import Provider as Provider
from amply.models.enums import RefundReason as RefundReason

# Stripe's objects as Amply reads them (``payments/stripe_objects.py``), named here too, as
# what the gateway answers with.
from amply.payments.stripe_objects import AccountState as AccountState
from amply.payments.stripe_objects import BalanceMove as BalanceMove
from amply.payments.stripe_objects import CardDetails as CardDetails
from amply.payments.stripe_objects import PaymentIntentState as PaymentIntentState
from amply.payments.stripe_objects import SetupIntentState as SetupIntentState

logger = logging.getLogger(__name__)


# The sandbox's stand-in for Stripe's processing fee: 2.9% (half up) plus 30 minor units,
# Stripe's standard card pricing in the US, so that sandbox ledgers show a realistic fee.
SANDBOX_FEE_BASIS_POINTS: Final = 290
SANDBOX_FEE_FIXED: Final = 30


LinkPurpose = Literal["onboarding", "update"]


@dataclass(frozen=True, slots=True)
class AccountLink:
    url: str
    expires_at: int
    purpose: LinkPurpose = "onboarding"


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


@dataclass(frozen=True, slots=True)
class CreatedSetupIntent:
    setup_intent_id: str
    client_secret: str | None


SandboxCard = Literal["visa", "mastercard", "amex"]
# The sandbox's test cards, as Stripe's test cards of those brands (4242…4242, 5555…4444,
# 3782…0005) would be saved.
SANDBOX_CARDS: Final[dict[str, CardDetails]] = {
    "visa": CardDetails(brand="visa", last4="4242", exp_month=12, exp_year=2034),
    "mastercard": CardDetails(brand="mastercard", last4="4444", exp_month=12, exp_year=2034),
    "amex": CardDetails(brand="amex", last4="0005", exp_month=12, exp_year=2034),
}
_SANDBOX_TOKEN_SPACE: Final = 62**24
# A sandbox SetupIntent names its wallet (the 24 characters after ``wal_``), so that the
# sandbox needs no store of its own; a sandbox payment method names its test card.
_SANDBOX_SETUP_INTENT: Final = re.compile(r"^seti_sandbox_([0-9A-Za-z]{24})[0-9A-Za-z]{24}$")
_SANDBOX_PAYMENT_METHOD: Final = re.compile(r"^pm_sandbox_(visa|mastercard|amex)_[0-9A-Za-z]{24}$")


def _sandbox_token() -> str:
    return base62(secrets.randbelow(_SANDBOX_TOKEN_SPACE), length=24)


def sandbox_customer_id(wallet_id: str) -> str:
    """The sandbox's Customer of a wallet: derived from its id, never stored, so that a
    database that later gets Stripe keys can still store the wallet's real Customer."""
    return f"cus_sandbox_{wallet_id.removeprefix('wal_')}"


def sandbox_setup_intent_wallet(setup_intent_id: str) -> str | None:
    """The wallet a sandbox SetupIntent was made for, or None if it is no sandbox one."""
    match = _SANDBOX_SETUP_INTENT.match(setup_intent_id)
    return f"wal_{match.group(1)}" if match else None


def sandbox_payment_method_id(card: SandboxCard) -> str:
    """A new sandbox payment method for one of the test cards."""
    return f"pm_sandbox_{card}_{_sandbox_token()}"


class AccountRequest(TypedDict):
    """:meth:`PaymentGateway.create_account`'s keyword arguments."""

    organisation_id: str
    country: str
    replacing: NotRequired[str | None]


class AccountLinkRequest(TypedDict):
    """:meth:`PaymentGateway.create_account_link`'s keyword arguments."""

    account_id: str
    refresh_url: str
    return_url: str
    purpose: LinkPurpose


class PaymentRequest(TypedDict):
    """:meth:`PaymentGateway.create_payment`'s keyword arguments."""

    account_id: str
    amount: int
    currency: str
    metadata: dict[str, str]
    idempotency_key: str


class FeeRequest(TypedDict):
    """:meth:`PaymentGateway.processing_fee`'s keyword arguments."""

    account_id: str
    charge_id: str
    amount: int
    currency: str


class RefundRequest(TypedDict):
    """:meth:`PaymentGateway.create_refund`'s keyword arguments."""

    account_id: str
    payment_intent_id: str
    amount: int
    reason: RefundReason
    metadata: dict[str, str]
    idempotency_key: str


class CardCharge(TypedDict):
    """:meth:`PaymentGateway.charge_saved_card`'s keyword arguments."""

    customer_id: str
    payment_method_id: str
    amount: int
    currency: str
    metadata: dict[str, str]
    idempotency_key: str


class PaymentGateway(Protocol):
    provider: Provider
    publishable_key: str | None
    # Whether its keys are live keys: an account made in one mode does not count in the other.
    live_mode: bool

    def owns_account(self, account_id: str) -> bool:
        """Whether ``account_id`` is an account of this gateway (sandbox or Stripe)."""
        ...

    async def create_account(self, **account: Unpack[AccountRequest]) -> AccountState:
        """A new connected account; ``replacing`` names the account it replaces (one of the
        other mode, or one that disconnected), so that a retry returns the same new one."""
        ...

    async def retrieve_account(self, *, account_id: str) -> AccountState: ...

    async def create_account_link(self, **link: Unpack[AccountLinkRequest]) -> AccountLink:
        """A link to Stripe's hosted onboarding: to finish it, or (``update``) to give what
        Stripe asks for later, including what will be due."""
        ...

    async def create_payment(self, **payment: Unpack[PaymentRequest]) -> CreatedPayment: ...

    async def retrieve_payment_intent(
        self, *, account_id: str, payment_intent_id: str
    ) -> PaymentIntentState:
        """The PaymentIntent on ``account_id``, as Stripe has it now."""
        ...

    async def processing_fee(self, **charge: Unpack[FeeRequest]) -> ProcessingFee | None:
        """Stripe's fee on a charge, or None while Stripe has not settled it yet."""
        ...

    async def create_refund(self, **refund: Unpack[RefundRequest]) -> CreatedRefund: ...

    # --- Saved cards and deposits: all on the platform account (no Stripe-Account) ---

    def customer_of(self, *, wallet_id: str, stored: str | None) -> str | None:
        """The wallet's Customer in this mode (``stored``: the one the wallet row holds),
        or None if it has none yet."""
        ...

    async def create_customer(self, *, wallet_id: str) -> str:
        """A Customer for the wallet; the same one for the same wallet on a retry."""
        ...

    async def create_setup_intent(
        self, *, customer_id: str, wallet_id: str
    ) -> CreatedSetupIntent: ...

    async def retrieve_setup_intent(self, *, setup_intent_id: str) -> SetupIntentState:
        """The SetupIntent, or 404 if there is no such one."""
        ...

    async def retrieve_card(self, *, payment_method_id: str) -> CardDetails: ...

    async def charge_saved_card(self, **charge: Unpack[CardCharge]) -> CreatedPayment:
        """Create and confirm, off session, a PaymentIntent on the platform account. Its
        outcome arrives as ``payment_intent.succeeded`` or ``…payment_failed``."""
        ...

    async def detach_payment_method(self, *, payment_method_id: str) -> None:
        """Forget the card at the provider (a card detached already is no error)."""
        ...


class PaymentRefused(AmplyError):
    """Stripe refused the request as invalid (an over-refund, say): the client can act on it."""

    status_code = 409
    default_code = "payment_provider_refused"
    passes_provider_codes = True  # Stripe's own code, such as `card_declined`


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
    # The library keeps a 409's code only in the error object it parsed.
    if (error.error.code if error.error is not None else error.code) == "idempotency_key_in_use":
        # Stripe is still running an earlier attempt of this very request (409).
        return Conflict(
            "An earlier attempt of this request is still running at Stripe; retry shortly.",
            code="payment_provider_busy",
        )
    if isinstance(error, stripe.InvalidRequestError | stripe.CardError):
        message = error.user_message or "Stripe refused the request."
        return PaymentRefused(message, code=error.code or None)
    logger.error("Stripe call failed: %s", error)
    return PaymentProviderError("Stripe failed to process the request; try again later.")


@contextmanager
def _calling_stripe(*, missing: str | None = None, param: str | None = None) -> Iterator[None]:
    """Stripe's exceptions, as Amply's errors; with ``missing``, Stripe's ``resource_missing``
    is a 404 with that message (an id the client sent that Stripe does not know)."""
    try:
        yield
    except stripe.InvalidRequestError as error:
        if missing is not None and error.code == "resource_missing":
            raise NotFound(missing, param=param) from error
        raise _translate(error) from error
    except stripe.StripeError as error:
        raise _translate(error) from error


class StripeGateway:
    """Stripe Connect with direct charges on the organisation's own account, no fee."""

    provider: Provider = Provider.STRIPE

    def __init__(self, settings: Settings) -> None:
        assert settings.stripe_secret_key is not None
        self.live_mode = settings.live_mode
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

    async def create_account(self, **request: Unpack[AccountRequest]) -> AccountState:
        organisation_id, replacing = request["organisation_id"], request.get("replacing")
        key = f"account:{organisation_id}" + (f":after:{replacing}" if replacing else "")
        with _calling_stripe():
            account = await self._client.v1.accounts.create_async(
                params={
                    # What Stripe's Connect docs recommend instead of the legacy `type:
                    # standard`, for a platform whose organisations use their own full
                    # Dashboard, pay Stripe's fees on their direct charges, answer their own
                    # disputes, and give their details to Stripe itself.
                    "controller": {
                        "fees": {"payer": "account"},
                        "losses": {"payments": "stripe"},
                        "requirement_collection": "stripe",
                        "stripe_dashboard": {"type": "full"},
                    },
                    "country": request["country"],
                    "metadata": {"organisation_id": organisation_id},
                },
                options={"idempotency_key": key},
            )
        return AccountState.from_stripe(account)

    async def retrieve_account(self, *, account_id: str) -> AccountState:
        with _calling_stripe():
            account = await self._client.v1.accounts.retrieve_async(account_id)
        return AccountState.from_stripe(account)

    async def create_account_link(self, **link: Unpack[AccountLinkRequest]) -> AccountLink:
        # Stripe makes `account_update` links only for accounts whose platform collects
        # their details; an account with its own Dashboard updates them through onboarding.
        purpose = link["purpose"]
        updating = purpose == "update"
        with _calling_stripe():
            created = await self._client.v1.account_links.create_async(
                params={
                    "account": link["account_id"],
                    "refresh_url": link["refresh_url"],
                    "return_url": link["return_url"],
                    "type": "account_onboarding",
                    "collection_options": {
                        "fields": "eventually_due" if updating else "currently_due",
                        "future_requirements": "include" if updating else "omit",
                    },
                }
            )
        return AccountLink(url=created.url, expires_at=created.expires_at, purpose=purpose)

    async def create_payment(self, **payment: Unpack[PaymentRequest]) -> CreatedPayment:
        # A direct charge: created on the connected account (Stripe-Account header), with no
        # application_fee_amount, so the organisation receives everything but Stripe's fee.
        with _calling_stripe():
            intent = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": payment["amount"],
                    "currency": stripe_currency(payment["currency"]),
                    "metadata": payment["metadata"],
                },
                options={
                    "stripe_account": payment["account_id"],
                    "idempotency_key": payment["idempotency_key"],
                },
            )
        return CreatedPayment(payment_intent_id=intent.id, client_secret=intent.client_secret)

    async def retrieve_payment_intent(
        self, *, account_id: str, payment_intent_id: str
    ) -> PaymentIntentState:
        with _calling_stripe():
            intent = await self._client.v1.payment_intents.retrieve_async(
                payment_intent_id, options={"stripe_account": account_id}
            )
        return PaymentIntentState.from_stripe(intent)

    async def processing_fee(self, **charge: Unpack[FeeRequest]) -> ProcessingFee | None:
        with _calling_stripe():
            charged = await self._client.v1.charges.retrieve_async(
                charge["charge_id"],
                params={"expand": ["balance_transaction"]},
                options={"stripe_account": charge["account_id"]},
            )
        transaction = charged.balance_transaction
        if transaction is None or isinstance(transaction, str):
            return None
        return ProcessingFee(
            fee=transaction.fee,
            currency=transaction.currency.upper(),
            balance_transaction_id=transaction.id,
        )

    async def create_refund(self, **refund: Unpack[RefundRequest]) -> CreatedRefund:
        with _calling_stripe():
            created = await self._client.v1.refunds.create_async(
                params={
                    "payment_intent": refund["payment_intent_id"],
                    "amount": refund["amount"],
                    "reason": refund["reason"],
                    "metadata": refund["metadata"],
                },
                options={
                    "stripe_account": refund["account_id"],
                    "idempotency_key": refund["idempotency_key"],
                },
            )
        return CreatedRefund(refund_id=created.id, status=created.status or "pending")

    def customer_of(self, *, wallet_id: str, stored: str | None) -> str | None:
        return stored

    async def create_customer(self, *, wallet_id: str) -> str:
        # No name or email: Stripe needs neither to keep a wallet's cards.
        with _calling_stripe():
            customer = await self._client.v1.customers.create_async(
                params={"metadata": {"wallet_id": wallet_id}},
                options={"idempotency_key": f"customer:{wallet_id}"},
            )
        return customer.id

    async def create_setup_intent(self, *, customer_id: str, wallet_id: str) -> CreatedSetupIntent:
        params: SetupIntentCreateParams = {
            "customer": customer_id,
            "usage": "off_session",
            "allowed_payment_method_types": _CARDS_ONLY,
            "metadata": {"wallet_id": wallet_id},
        }
        with _calling_stripe():
            intent = await self._client.v1.setup_intents.create_async(params=params)
        return CreatedSetupIntent(setup_intent_id=intent.id, client_secret=intent.client_secret)

    async def retrieve_setup_intent(self, *, setup_intent_id: str) -> SetupIntentState:
        with _calling_stripe(missing="No such SetupIntent.", param="setup_intent_id"):
            intent = await self._client.v1.setup_intents.retrieve_async(setup_intent_id)
        return SetupIntentState.from_stripe(intent)

    async def retrieve_card(self, *, payment_method_id: str) -> CardDetails:
        with _calling_stripe(missing="No such card.", param="setup_intent_id"):
            method = await self._client.v1.payment_methods.retrieve_async(payment_method_id)
        # A StripeObject has no attribute for a key its JSON lacks: other types have no card.
        card = method.card if method.type == "card" and "card" in method else None
        if card is None:
            raise PaymentRefused(
                "This payment method is not a card.", code="payment_method_not_card"
            )
        return CardDetails.from_stripe(card)

    async def charge_saved_card(self, **charge: Unpack[CardCharge]) -> CreatedPayment:
        # On the platform account (no Stripe-Account header): the money is Amply's to hold
        # for the wallet. Confirmed at once, off session: the user is not there to act.
        params: PaymentIntentCreateParams = {
            "amount": charge["amount"],
            "currency": stripe_currency(charge["currency"]),
            "customer": charge["customer_id"],
            "payment_method": charge["payment_method_id"],
            "allowed_payment_method_types": _CARDS_ONLY,
            "confirm": True,
            "off_session": True,
            "metadata": charge["metadata"],
        }
        with _calling_stripe():
            intent = await self._client.v1.payment_intents.create_async(
                params=params, options={"idempotency_key": charge["idempotency_key"]}
            )
        return CreatedPayment(payment_intent_id=intent.id, client_secret=None)

    async def detach_payment_method(self, *, payment_method_id: str) -> None:
        try:
            with _calling_stripe():
                await self._client.v1.payment_methods.detach_async(payment_method_id)
        except PaymentRefused as error:
            # Only the id is sent: Stripe refuses it only when the card is gone already
            # (detached before, or deleted), which is what was asked.
            logger.warning("payment method %s was detached already: %s", payment_method_id, error)


# Cards only: no redirect-based method can be offered, so a saved card is confirmed off
# session without a ``return_url``. ``allowed_payment_method_types``, because the pinned API
# version (2026-09-30.endive and later) refuses ``payment_method_types`` with 400
# ``payment_method_types_no_longer_supported``.
_CARDS_ONLY: Final[list[str]] = ["card"]


class SandboxGateway:
    """Local stand-ins for Stripe: accounts are ready at once, payments wait for the
    sandbox endpoints (``/v1/sandbox/payments/{id}/succeed``) to say what happened.
    """

    provider: Provider = Provider.SANDBOX
    publishable_key: str | None = None
    live_mode = False

    def owns_account(self, account_id: str) -> bool:
        return account_id.startswith("acct_sandbox_")

    async def create_account(self, **account: Unpack[AccountRequest]) -> AccountState:
        return await self.retrieve_account(account_id=sandbox_id("acct"))

    async def retrieve_account(self, *, account_id: str) -> AccountState:
        # Every sandbox account is onboarded at once.
        return AccountState(
            account_id=account_id,
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
        )

    async def create_account_link(self, **link: Unpack[AccountLinkRequest]) -> AccountLink:
        # Nothing to fill in: the sandbox account is onboarded already.
        return AccountLink(url=link["return_url"], expires_at=0, purpose=link["purpose"])

    async def create_payment(self, **payment: Unpack[PaymentRequest]) -> CreatedPayment:
        return _sandbox_payment()

    async def retrieve_payment_intent(
        self, *, account_id: str, payment_intent_id: str
    ) -> PaymentIntentState:
        # Sandbox events come only from the sandbox endpoints, which never skip ahead of a
        # payment's success, so no sandbox handler ever needs to look a payment up.
        raise Conflict(
            "Sandbox payments are driven through /v1/sandbox/payments.", code="sandbox_payment"
        )

    async def processing_fee(self, **charge: Unpack[FeeRequest]) -> ProcessingFee | None:
        return ProcessingFee(
            fee=fee_for(charge["amount"], basis_points=SANDBOX_FEE_BASIS_POINTS)
            + SANDBOX_FEE_FIXED,
            currency=charge["currency"],
            balance_transaction_id=None,
        )

    async def create_refund(self, **refund: Unpack[RefundRequest]) -> CreatedRefund:
        return CreatedRefund(refund_id=sandbox_id("re"), status="pending")

    def customer_of(self, *, wallet_id: str, stored: str | None) -> str | None:
        return sandbox_customer_id(wallet_id)

    async def create_customer(self, *, wallet_id: str) -> str:
        return sandbox_customer_id(wallet_id)

    async def create_setup_intent(self, *, customer_id: str, wallet_id: str) -> CreatedSetupIntent:
        # It succeeds when POST /v1/sandbox/setup-intents/{id}/succeed says so.
        setup_intent_id = f"seti_sandbox_{wallet_id.removeprefix('wal_')}{_sandbox_token()}"
        return CreatedSetupIntent(
            setup_intent_id=setup_intent_id,
            client_secret=f"{setup_intent_id}_secret_{_sandbox_token()}",
        )

    async def retrieve_setup_intent(self, *, setup_intent_id: str) -> SetupIntentState:
        # A sandbox SetupIntent's success saves its card at once (through the same
        # ``setup_intent.succeeded`` handling as Stripe's event), so one that is looked up
        # because no card holds it has not succeeded.
        wallet_id = sandbox_setup_intent_wallet(setup_intent_id)
        if wallet_id is None:
            raise NotFound("No such SetupIntent.", param="setup_intent_id")
        return SetupIntentState(
            setup_intent_id=setup_intent_id,
            status="requires_payment_method",
            customer_id=sandbox_customer_id(wallet_id),
            payment_method_id=None,
            wallet_id=wallet_id,
        )

    async def retrieve_card(self, *, payment_method_id: str) -> CardDetails:
        match = _SANDBOX_PAYMENT_METHOD.match(payment_method_id)
        if match is None:
            raise NotFound("No such card.", param="setup_intent_id")
        return SANDBOX_CARDS[match.group(1)]

    async def charge_saved_card(self, **charge: Unpack[CardCharge]) -> CreatedPayment:
        return _sandbox_payment()

    async def detach_payment_method(self, *, payment_method_id: str) -> None:
        return None


def _sandbox_payment() -> CreatedPayment:
    """A new sandbox PaymentIntent: pending until ``POST /v1/sandbox/payments/{id}/succeed``
    (or ``…/fail``) says what happened to it."""
    return CreatedPayment(payment_intent_id=sandbox_id("pi"), client_secret=None)


def gateway_for(settings: Settings) -> PaymentGateway:
    if settings.sandbox_mode:
        return SandboxGateway()
    return StripeGateway(settings)
