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
from typing import Any, TypeVar

from amply.kit.errors import AmplyError, ServiceUnavailable
from amply.payments.gateway import (
    AccountLink,
    AccountState,
    CardDetails,
    CreatedPayment,
    CreatedRefund,
    CreatedSetupIntent,
    LinkPurpose,
    PaymentGateway,
    ProcessingFee,
    RefundReason,
    SetupIntentState,
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
    intents: dict[tuple[str, str], dict[str, Any] | AmplyError] = field(default_factory=dict)
    cards: dict[str, CardDetails | AmplyError] = field(default_factory=dict)


async def _attempt(call: Awaitable[T]) -> T | AmplyError:
    try:
        return await call
    except AmplyError as error:
        return error


def _ref(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


async def read_ahead(
    gateway: PaymentGateway, *, event_type: str, account: str | None, obj: dict[str, Any]
) -> Reads:
    """Read from Stripe what the handler of this event may need; call with no transaction open."""
    reads = Reads()
    if account is not None:
        await _read_payment_facts(reads, gateway, event_type=event_type, account=account, obj=obj)
    elif event_type == "setup_intent.succeeded":
        method = _ref(obj.get("payment_method"))
        if method is not None:
            reads.cards[method] = await _attempt(gateway.retrieve_card(payment_method_id=method))
    return reads


async def _read_payment_facts(
    reads: Reads, gateway: PaymentGateway, *, event_type: str, account: str, obj: dict[str, Any]
) -> None:
    charge: str | None = None
    if event_type == "payment_intent.succeeded":
        charge = _ref(obj.get("latest_charge"))
    elif event_type in ("charge.updated", "charge.refunded"):
        charge = _ref(obj.get("id"))
    elif event_type.startswith("charge.dispute."):
        intent_id = _ref(obj.get("payment_intent"))
        if intent_id is None:
            return
        intent = await _attempt(
            gateway.retrieve_payment_intent(account_id=account, payment_intent_id=intent_id)
        )
        reads.intents[(account, intent_id)] = intent
        if isinstance(intent, dict):
            charge = _ref(intent.get("latest_charge"))
    if charge is not None:
        amount, currency = obj.get("amount"), obj.get("currency")
        reads.fees[(account, charge)] = await _attempt(
            gateway.processing_fee(
                account_id=account,
                charge_id=charge,
                amount=amount if isinstance(amount, int) else 0,
                currency=currency.upper() if isinstance(currency, str) else "",
            )
        )


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

    async def processing_fee(
        self, *, account_id: str, charge_id: str, amount: int, currency: str
    ) -> ProcessingFee | None:
        return _answer(self._reads.fees, (account_id, charge_id), what=f"fee on charge {charge_id}")

    async def retrieve_payment_intent(
        self, *, account_id: str, payment_intent_id: str
    ) -> dict[str, Any]:
        return _answer(
            self._reads.intents,
            (account_id, payment_intent_id),
            what=f"PaymentIntent {payment_intent_id}",
        )

    async def retrieve_card(self, *, payment_method_id: str) -> CardDetails:
        return _answer(self._reads.cards, payment_method_id, what=f"card {payment_method_id}")

    # Everything else calls out or writes: never while an event is being applied.

    async def create_account(
        self, *, organisation_id: str, country: str, replacing: str | None = None
    ) -> AccountState:
        raise _no_calls("create an account")

    async def retrieve_account(self, *, account_id: str) -> AccountState:
        raise _no_calls("read an account")

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str, purpose: LinkPurpose
    ) -> AccountLink:
        raise _no_calls("create an account link")

    async def create_payment(
        self,
        *,
        account_id: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedPayment:
        raise _no_calls("create a payment")

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
        raise _no_calls("create a refund")

    async def create_customer(self, *, wallet_id: str) -> str:
        raise _no_calls("create a customer")

    async def create_setup_intent(self, *, customer_id: str, wallet_id: str) -> CreatedSetupIntent:
        raise _no_calls("create a SetupIntent")

    async def retrieve_setup_intent(self, *, setup_intent_id: str) -> SetupIntentState:
        raise _no_calls("read a SetupIntent")

    async def charge_saved_card(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: int,
        currency: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedPayment:
        raise _no_calls("charge a card")

    async def detach_payment_method(self, *, payment_method_id: str) -> None:
        raise _no_calls("detach a card")


def _no_calls(what: str) -> NotReadAhead:
    return NotReadAhead(f"An event's effects never {what} at Stripe; deliver the event again.")
