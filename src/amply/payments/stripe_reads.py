"""What an event's effects read from Stripe, read before the transaction that applies them.

No network call runs inside a database transaction or while a lock is held (SPEC.md). A
Stripe event's handler sometimes needs Stripe's word on something the event does not carry:
the fee on a charge (its balance transaction), whether a PaymentIntent has succeeded (a
dispute that overtook the success event), a saved card's brand and last digits. The webhook
reads these first, with no transaction open, from what the event names (:func:`read_ahead`),
and hands the handlers a :class:`ReadAhead` gateway that answers from those reads and never
calls out. A read that failed is raised only if a handler asks for it, so an event whose
handler needs nothing (a duplicate, a donation already complete) is not refused because
Stripe was briefly unreachable; a read the handler asks for but the event did not name is a
503, so Stripe delivers the event again, never a call under a lock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, Unpack

from amply.kit.errors import AmplyError, ServiceUnavailable
from amply.payments.gateway import (
    AccountLink,
    AccountLinkRequest,
    AccountRequest,
    AccountState,
    CardCharge,
    CardDetails,
    CreatedPayment,
    CreatedRefund,
    CreatedSetupIntent,
    FeeRequest,
    PaymentGateway,
    PaymentIntentState,
    PaymentRequest,
    ProcessingFee,
    RefundRequest,
    SetupIntentState,
)
from amply.payments.stripe_objects import (
    ChargeState,
    DisputeState,
    MalformedStripeObject,
    StripeEvent,
)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class NotReadAhead(ServiceUnavailable):
    """A handler needed Stripe's word on something the event did not name."""

    default_code = "stripe_read_unavailable"


@dataclass
class Reads:
    """Stripe's answers (or the errors it gave), by what was asked."""

    fees: dict[tuple[str, str], ProcessingFee | AmplyError | None] = field(default_factory=dict)
    intents: dict[tuple[str, str], PaymentIntentState | AmplyError] = field(default_factory=dict)
    cards: dict[str, CardDetails | AmplyError] = field(default_factory=dict)


async def _attempt(call: Awaitable[T]) -> T | AmplyError:
    try:
        return await call
    except AmplyError as error:
        return error


async def read_ahead(gateway: PaymentGateway, *, event: StripeEvent) -> Reads:
    """Read from Stripe what the handler of this event may need; call with no transaction open.

    An event whose object is malformed reads nothing: its handler refuses it (400) anyway."""
    reads = Reads()
    try:
        if event.account is not None:
            await _read_payment_facts(reads, gateway, event=event, account=event.account)
        elif event.type == "setup_intent.succeeded":
            intent = SetupIntentState.parse(event.object)
            method = intent.payment_method_id if intent is not None else None
            if method is not None:
                reads.cards[method] = await _attempt(
                    gateway.retrieve_card(payment_method_id=method)
                )
    except MalformedStripeObject:
        return Reads()
    return reads


async def _read_payment_facts(
    reads: Reads, gateway: PaymentGateway, *, event: StripeEvent, account: str
) -> None:
    charge: str | None = None
    amount: int | None = None
    currency: str | None = None
    if event.type == "payment_intent.succeeded":
        paid = PaymentIntentState.parse(event.object)
        charge, amount, currency = paid.latest_charge_id, paid.amount, paid.currency
    elif event.type in ("charge.updated", "charge.refunded"):
        charged = ChargeState.parse(event.object)
        charge, amount, currency = charged.id, charged.amount, charged.currency
    elif event.type.startswith("charge.dispute."):
        intent_id = DisputeState.payment_intent_of(event.object)
        if intent_id is None:
            return
        # The dispute's own amount and currency, as its handler reads them later.
        amount, currency = _dispute_amount(event)
        intent = await _attempt(
            gateway.retrieve_payment_intent(account_id=account, payment_intent_id=intent_id)
        )
        reads.intents[(account, intent_id)] = intent
        if isinstance(intent, PaymentIntentState):
            charge = intent.latest_charge_id
    if charge is not None:
        reads.fees[(account, charge)] = await _attempt(
            gateway.processing_fee(
                account_id=account,
                charge_id=charge,
                amount=amount if amount is not None else 0,
                currency=currency.upper() if currency is not None else "",
            )
        )


def _dispute_amount(event: StripeEvent) -> tuple[int | None, str | None]:
    """A dispute's amount and currency, if it is well formed (a malformed one is refused by its
    handler, once it knows whose payment it is about)."""
    try:
        dispute = DisputeState.parse(event.object)
    except MalformedStripeObject:
        return None, None
    return dispute.amount, dispute.currency


def _answer(reads: Mapping[K, V | AmplyError], key: K, *, what: str) -> V:
    if key not in reads:
        raise NotReadAhead(
            f"Stripe's {what} was not read before the event was applied; deliver it again."
        )
    found = reads[key]
    if isinstance(found, AmplyError):
        raise found
    return found


class ReadAhead:
    """A gateway for applying an event: Stripe's answers read beforehand, and no calls."""

    def __init__(self, gateway: PaymentGateway, reads: Reads) -> None:
        self._gateway = gateway
        self._reads = reads
        self.provider = gateway.provider
        self.publishable_key = gateway.publishable_key
        self.live_mode = gateway.live_mode

    def owns_account(self, account_id: str) -> bool:
        return self._gateway.owns_account(account_id)

    def customer_of(self, *, wallet_id: str, stored: str | None) -> str | None:
        return self._gateway.customer_of(wallet_id=wallet_id, stored=stored)

    async def processing_fee(self, **charge: Unpack[FeeRequest]) -> ProcessingFee | None:
        charge_id = charge["charge_id"]
        return _answer(
            self._reads.fees, (charge["account_id"], charge_id), what=f"fee on charge {charge_id}"
        )

    async def retrieve_payment_intent(
        self, *, account_id: str, payment_intent_id: str
    ) -> PaymentIntentState:
        return _answer(
            self._reads.intents,
            (account_id, payment_intent_id),
            what=f"PaymentIntent {payment_intent_id}",
        )

    async def retrieve_card(self, *, payment_method_id: str) -> CardDetails:
        return _answer(self._reads.cards, payment_method_id, what=f"card {payment_method_id}")

    # Everything else calls out or writes: never while an event is being applied.

    async def create_account(self, **_: Unpack[AccountRequest]) -> AccountState:
        raise _no_calls("create an account")

    async def retrieve_account(self, *, account_id: str) -> AccountState:
        raise _no_calls("read an account")

    async def create_account_link(self, **_: Unpack[AccountLinkRequest]) -> AccountLink:
        raise _no_calls("create an account link")

    async def create_payment(self, **_: Unpack[PaymentRequest]) -> CreatedPayment:
        raise _no_calls("create a payment")

    async def create_refund(self, **_: Unpack[RefundRequest]) -> CreatedRefund:
        raise _no_calls("create a refund")

    async def create_customer(self, *, wallet_id: str) -> str:
        raise _no_calls("create a customer")

    async def create_setup_intent(self, *, customer_id: str, wallet_id: str) -> CreatedSetupIntent:
        raise _no_calls("create a SetupIntent")

    async def retrieve_setup_intent(self, *, setup_intent_id: str) -> SetupIntentState:
        raise _no_calls("read a SetupIntent")

    async def charge_saved_card(self, **_: Unpack[CardCharge]) -> CreatedPayment:
        raise _no_calls("charge a card")

    async def detach_payment_method(self, *, payment_method_id: str) -> None:
        raise _no_calls("detach a card")


def _no_calls(what: str) -> NotReadAhead:
    return NotReadAhead(f"An event's effects never {what} at Stripe; deliver the event again.")
