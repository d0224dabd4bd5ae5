"""Stripe events, from the signed webhook or from the sandbox: each takes effect once.

:func:`verify` checks ``Stripe-Signature`` over the raw body with the official library
(timestamp tolerance included) and parses the event. :func:`process` stores the event by its
id and applies its effects in the same transaction: a redelivery, or a concurrent delivery
that waits on the first one's row, finds the id taken and does nothing. If an effect fails,
the transaction rolls back, nothing is stored, and Stripe delivers the event again.

Each handler first parses its event's object into the typed values of
``payments/stripe_objects.py`` (a malformed one is refused with 400, and nothing is stored),
and passes only those values on to donations and wallets.

Events may arrive in any order. Each handler works from the object in the event and the
donation's state under its row lock: a refund or dispute of a donation not yet completed
completes it first (the charge in the event, or the PaymentIntent fetched fresh, proves the
payment succeeded), and a completion that arrives afterwards finds it done.

Events of the platform account itself (no ``account``) are about wallets: a PaymentIntent
that pays a deposit completes or fails it under the deposit's row lock, a SetupIntent
that succeeded saves the wallet's card (``wallets/deposits.py``, ``wallets/cards.py``), and
a refund or dispute of a deposit's charge takes the money back from the wallet
(``wallets/deposit_reversals.py``). Disputes are booked one balance transaction at a time:
every dispute event lists all of them, so any event, in any order, books what is missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Final, Literal

import stripe
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.donations import service as donations
from amply.kit.errors import AmplyError, ServiceUnavailable
from amply.kit.observability import STRIPE_EVENTS
from amply.kit.settings import Settings
from amply.models import Donation, Transaction
from amply.models.enums import StripeEventSource
from amply.payments import connect, connected_payouts, stripe_reads
from amply.payments.gateway import PaymentGateway
from amply.payments.stripe_objects import (
    AccountState,
    ChargeState,
    DisputeState,
    PaymentIntentState,
    RefundState,
    SetupIntentState,
    StripeEvent,
)
from amply.wallets import cards, deposit_reversals, deposits

logger = logging.getLogger(__name__)

EventSource = StripeEventSource
Outcome = Literal["processed", "ignored", "duplicate"]
MAX_PAYLOAD_BYTES: Final = 1_000_000


class InvalidWebhook(AmplyError):
    status_code = 400
    default_code = "webhook_invalid"


# An event's envelope (``payments/stripe_objects.py``); each handler parses its object.
Event = StripeEvent


def webhook_secrets(settings: Settings) -> list[str]:
    secrets = [settings.stripe_webhook_secret, settings.stripe_connect_webhook_secret]
    return [secret.get_secret_value() for secret in secrets if secret is not None]


def verify(payload: bytes, *, signature: str | None, settings: Settings) -> Event:
    """The event in ``payload`` if ``signature`` proves Stripe sent it; else 400."""
    secrets = webhook_secrets(settings)
    if not secrets:
        raise ServiceUnavailable(
            "Stripe webhooks are not configured on this server.", code="webhooks_not_configured"
        )
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise InvalidWebhook("The event is too large.", code="webhook_payload_invalid")
    try:
        body = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidWebhook("The event is not UTF-8.", code="webhook_payload_invalid") from error
    if not signature:
        raise InvalidWebhook("Stripe-Signature is missing.", code="webhook_signature_invalid")
    if not any(_signed_with(body, signature, secret, settings) for secret in secrets):
        raise InvalidWebhook(
            "Stripe-Signature does not verify (wrong secret, altered body or stale timestamp).",
            code="webhook_signature_invalid",
        )
    return parse(body)


def _signed_with(body: str, signature: str, secret: str, settings: Settings) -> bool:
    try:
        stripe.WebhookSignature.verify_header(
            body, signature, secret, tolerance=settings.stripe_webhook_tolerance_seconds
        )
    except stripe.SignatureVerificationError:
        return False
    return True


def parse(body: str) -> Event:
    """An event envelope, checked for the fields every handler relies on
    (``MalformedStripeObject``, 400, if it lacks one)."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidWebhook("The event is not JSON.", code="webhook_payload_invalid") from error
    return StripeEvent.parse(payload)


_STORE_SQL = text("""
    INSERT INTO stripe_events (id, type, account, livemode, source, outcome, created, payload)
    VALUES (:id, :type, :account, :livemode, :source, :outcome, :created, CAST(:payload AS jsonb))
    ON CONFLICT (id) DO NOTHING
    RETURNING id
""")

Handler = Callable[[AsyncSession, Event, PaymentGateway], Awaitable[None]]


async def receive(
    session: AsyncSession, *, event: Event, gateway: PaymentGateway, live_mode: bool
) -> Outcome:
    """Apply a webhook's event: first read from Stripe what its effects may need, with no
    transaction open (``payments/stripe_reads.py``), then :func:`process` it with no calls."""
    assert not session.in_transaction(), "Stripe is read before the event's transaction"
    if gateway.provider == "stripe":
        reads = await stripe_reads.read_ahead(gateway, event=event)
        gateway = stripe_reads.ReadAhead(gateway, reads)
    # (The sandbox's gateway calls nothing: it answers in-process.)
    return await process(
        session, event=event, source=StripeEventSource.WEBHOOK, gateway=gateway, live_mode=live_mode
    )


async def process(
    session: AsyncSession,
    *,
    event: Event,
    source: EventSource,
    gateway: PaymentGateway,
    live_mode: bool = False,
) -> Outcome:
    """Store ``event`` once and apply it; ``duplicate`` if it was processed before.

    An event of the other mode (Stripe sends a live Connect endpoint the connected accounts'
    test events too) is stored but never applied: a test payment must not touch a live
    organisation, nor a live one a test server.
    """
    handler = HANDLERS.get(event.type) if event.livemode == live_mode else None
    stored = await session.scalar(
        _STORE_SQL,
        {
            "id": event.id,
            "type": event.type,
            "account": event.account,
            "livemode": event.livemode,
            "source": source,
            "outcome": "processed" if handler else "ignored",
            "created": event.created_at,
            "payload": json.dumps(event.payload),
        },
    )
    if stored is None:
        outcome: Outcome = "duplicate"
    elif handler is None:
        outcome = "ignored"
    else:
        await handler(session, event, gateway)
        outcome = "processed"
    STRIPE_EVENTS.labels(type=event.type, source=source, outcome=outcome).inc()
    return outcome


async def _donation(
    session: AsyncSession, event: Event, *, payment_intent_id: str | None
) -> Donation | None:
    """The donation this event is about, if it is one of ours on the event's account."""
    if payment_intent_id is None:
        return None
    donation = await donations.find_by_payment_intent(session, payment_intent_id=payment_intent_id)
    if donation is None:
        return None
    if event.account != donation.stripe_account_id:
        logger.warning(
            "event %s names account %s, but donation %s is on %s: ignored",
            event.id,
            event.account,
            donation.id,
            donation.stripe_account_id,
        )
        return None
    return donation


async def _ensure_completed(
    session: AsyncSession,
    donation: Donation,
    *,
    charge: ChargeState | None,
    gateway: PaymentGateway,
) -> None:
    """A refund or dispute proves the payment went through, even if its success event has
    not arrived yet: complete the donation first, so the chain reads in the order money moved.
    What was paid is checked against what was asked, as for a success event: from the
    refunded charge, or else from the PaymentIntent."""
    if donation.received_entry_id is not None:
        return
    if charge is None:
        intent = await gateway.retrieve_payment_intent(
            account_id=donation.stripe_account_id, payment_intent_id=donation.payment_intent_id
        )
        if intent.status != "succeeded":
            raise ServiceUnavailable(
                f"PaymentIntent {donation.payment_intent_id} has not succeeded yet; "
                "deliver this event again later.",
                code="event_out_of_order",
            )
        _check_paid_as_asked(donation, paid=intent.paid, currency=intent.currency)
        charge_id = intent.latest_charge_id
    else:
        _check_paid_as_asked(donation, paid=charge.amount, currency=charge.currency)
        charge_id = charge.id
    await donations.complete(session, donation, charge_id=charge_id, gateway=gateway)


class PaymentMismatch(AmplyError):
    """Stripe reports a payment other than the donation asked for: never recorded as given."""

    status_code = 409
    default_code = "payment_mismatch"


def _check_paid_as_asked(donation: Donation, *, paid: int | None, currency: str | None) -> None:
    # The PaymentIntent lives on the organisation's own account, where it could be changed
    # before the donor paid; the ledger records only what was asked and paid alike.
    _check_payment(paid=paid, currency=currency, kind="donation", payment=donation)


def _check_payment(
    *, paid: int | None, currency: str | None, kind: str, payment: Donation | Transaction
) -> None:
    """What Stripe says was paid (what it did not say is not checked) against what was asked."""
    if (paid is not None and paid != payment.amount) or (
        currency is not None and currency.upper() != payment.currency
    ):
        logger.error(
            "PaymentIntent %s paid %s %s, but %s %s asked %s %s: not recorded",
            payment.payment_intent_id,
            paid,
            currency,
            kind,
            payment.id,
            payment.amount,
            payment.currency,
        )
        raise PaymentMismatch(
            f"PaymentIntent {payment.payment_intent_id} does not match {kind} {payment.id}."
        )


async def _deposit(
    session: AsyncSession, event: Event, intent: PaymentIntentState
) -> Transaction | None:
    """The deposit a PaymentIntent of the platform account pays, locked, if it is one."""
    if event.account is not None or intent.id is None:
        return None
    return await deposits.find_for_payment(
        session, payment_intent_id=intent.id, deposit_id=intent.deposit_id
    )


async def _deposit_succeeded(
    session: AsyncSession, event: Event, intent: PaymentIntentState, gateway: PaymentGateway
) -> bool:
    """Complete the deposit this success pays, once; False if it pays no deposit."""
    deposit = await _deposit(session, event, intent)
    if deposit is None and event.account is None and intent.deposit_id is not None:
        # The request that created it did not commit, though Stripe took the money.
        deposit = await deposits.recover(
            session, deposit_id=intent.deposit_id, intent=intent, gateway=gateway
        )
    if deposit is None:
        return False
    if deposit.status != "completed":
        _check_payment(paid=intent.paid, currency=intent.currency, kind="deposit", payment=deposit)
        await deposits.complete(session, deposit)
    return True


async def _payment_succeeded(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    intent = PaymentIntentState.parse(event.object)
    if await _deposit_succeeded(session, event, intent, gateway):
        return
    donation = await _donation(session, event, payment_intent_id=intent.id)
    if donation is not None and donation.received_entry_id is None:
        _check_paid_as_asked(donation, paid=intent.paid, currency=intent.currency)
        await donations.complete(
            session, donation, charge_id=intent.latest_charge_id, gateway=gateway
        )


async def _payment_failed(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    intent = PaymentIntentState.parse(event.object)
    deposit = await _deposit(session, event, intent)
    if deposit is not None:
        code, message = _failure(event, intent)
        await deposits.mark_failed(session, deposit, code=code, message=message)
        return
    donation = await _donation(session, event, payment_intent_id=intent.id)
    if donation is None:
        return
    code, message = _failure(event, intent)
    await donations.mark_failed(session, donation, code=code, message=message)


def _failure(event: Event, intent: PaymentIntentState) -> tuple[str | None, str | None]:
    """The failure code and message of a failed or canceled PaymentIntent."""
    if event.type == "payment_intent.canceled":
        return "canceled", "The payment was canceled."
    return intent.failure_code, intent.failure_message


async def _charge_updated(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    charge = ChargeState.parse(event.object)
    donation = await _donation(session, event, payment_intent_id=charge.payment_intent_id)
    if donation is not None and charge.id is not None and charge.settled:
        await donations.record_fee(session, donation, charge_id=charge.id, gateway=gateway)


async def _charge_refunded(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    charge = ChargeState.parse(event.object)
    if await _deposit_refunded(session, event, charge):
        return
    donation = await _donation(session, event, payment_intent_id=charge.payment_intent_id)
    if donation is None or charge.id is None:
        return
    await _ensure_completed(session, donation, charge=charge, gateway=gateway)
    for refund in charge.refunds or ():
        await _update_refund(session, refund, as_of=event.created_at)
    await donations.record_refunded_total(
        session,
        donation,
        amount_refunded=charge.amount_refunded,
        charge_id=charge.id,
        refund_ids=None if charge.refunds is None else [refund.id for refund in charge.refunds],
        as_of=event.created_at,
    )


async def _refund_updated(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    refund = RefundState.parse(event.object)
    if refund is None:
        return
    # Lock the donation first, as the refund's request does: an event that overtakes the
    # request's commit waits for it, and then finds the refund.
    await _donation(session, event, payment_intent_id=refund.payment_intent_id)
    await _update_refund(session, refund, as_of=event.created_at)


async def _update_refund(session: AsyncSession, refund: RefundState, *, as_of: datetime) -> None:
    await donations.update_refund_status(
        session, provider_refund_id=refund.id, status=refund.status, as_of=as_of
    )


async def _charged_deposit(
    session: AsyncSession, event: Event, *, payment_intent_id: str | None, deposit_id: str | None
) -> Transaction | None:
    """The deposit a charge or dispute of the platform account is about, locked, if any."""
    if event.account is not None or payment_intent_id is None:
        return None
    return await deposits.find_for_payment(
        session, payment_intent_id=payment_intent_id, deposit_id=deposit_id
    )


async def _deposit_refunded(session: AsyncSession, event: Event, charge: ChargeState) -> bool:
    """Take a refunded deposit's money back from its wallet; False if no deposit is refunded.

    The refunded charge proves the payment succeeded: a deposit still pending (its success
    event not here yet) is completed first, after the same check of what was paid."""
    deposit = await _charged_deposit(
        session, event, payment_intent_id=charge.payment_intent_id, deposit_id=charge.deposit_id
    )
    if deposit is None or charge.id is None:
        return False
    await deposit_reversals.prepare(session, wallet_id=deposit.wallet_id)
    if deposit.status != "completed":
        _check_payment(
            paid=charge.amount, currency=charge.currency, kind="deposit", payment=deposit
        )
        await deposits.complete(session, deposit)
    await deposit_reversals.record_refunded_total(
        session, deposit, charge_id=charge.id, amount_refunded=charge.amount_refunded
    )
    return True


async def _dispute(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    """Any dispute event (``created``, ``updated``, ``funds_withdrawn``, ``funds_reinstated``,
    ``closed``): every balance transaction it lists is recorded once, in any order."""
    # Whose dispute first: one about a payment Amply does not know is acknowledged, however
    # it looks (refusing it would have Stripe retry it for days); then the dispute itself.
    payment_intent_id = DisputeState.payment_intent_of(event.object)
    deposit = await _charged_deposit(
        session, event, payment_intent_id=payment_intent_id, deposit_id=None
    )
    donation = None
    if deposit is None:
        donation = await _donation(session, event, payment_intent_id=payment_intent_id)
        if donation is None:
            return
    dispute = DisputeState.parse(event.object)
    if deposit is not None:
        await _deposit_disputed(session, deposit, dispute=dispute)
        return
    assert donation is not None
    await _ensure_completed(session, donation, charge=None, gateway=gateway)
    await donations.record_dispute(session, donation, dispute=dispute)


async def _deposit_disputed(
    session: AsyncSession, deposit: Transaction, *, dispute: DisputeState
) -> None:
    if not dispute.moves:
        return
    if deposit.status != "completed":
        # Its success event credits the wallet first; Stripe delivers this one again.
        raise ServiceUnavailable(
            f"Deposit {deposit.id} is not completed yet; deliver this event again later.",
            code="event_out_of_order",
        )
    await deposit_reversals.record_dispute(
        session,
        deposit,
        dispute_id=dispute.id,
        charge_id=dispute.charge_id,
        moves=dispute.moves,
    )


async def _account_updated(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    state = AccountState.parse(event.object)
    if state is not None:
        await connect.apply_account_update(session, as_of=event.created_at, state=state)


async def _account_deauthorized(
    session: AsyncSession, event: Event, gateway: PaymentGateway
) -> None:
    # The object is the platform's application; the account is the event's.
    if event.account is not None:
        await connect.apply_deauthorization(
            session, account_id=event.account, as_of=event.created_at
        )


async def _setup_intent_succeeded(
    session: AsyncSession, event: Event, gateway: PaymentGateway
) -> None:
    intent = SetupIntentState.parse(event.object)
    if event.account is not None or intent is None or intent.wallet_id is None:
        return
    await cards.save_from_setup_intent(session, intent=intent, gateway=gateway)


async def _connected_payout(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    """A connected account paid its balance out to the organisation's bank (or that payout
    failed): on the organisation's chain once, in any order (``payments/connected_payouts.py``).
    The platform's own payouts (no ``account``) and strangers' accounts are acknowledged."""
    if event.account is None:
        return
    organisation_id = await connected_payouts.organisation_of_account(
        session, account_id=event.account
    )
    if organisation_id is None:
        return
    state = connected_payouts.state_of(
        event.object, account_id=event.account, event_type=event.type
    )
    await connected_payouts.apply(session, organisation_id=organisation_id, state=state)


HANDLERS: Final[dict[str, Handler]] = {
    "payment_intent.succeeded": _payment_succeeded,
    "payment_intent.payment_failed": _payment_failed,
    "payment_intent.canceled": _payment_failed,
    "charge.updated": _charge_updated,
    "charge.refunded": _charge_refunded,
    "charge.refund.updated": _refund_updated,
    "refund.created": _refund_updated,
    "refund.updated": _refund_updated,
    "refund.failed": _refund_updated,
    "charge.dispute.created": _dispute,
    "charge.dispute.updated": _dispute,
    "charge.dispute.closed": _dispute,
    "charge.dispute.funds_withdrawn": _dispute,
    "charge.dispute.funds_reinstated": _dispute,
    "account.updated": _account_updated,
    "account.application.deauthorized": _account_deauthorized,
    "setup_intent.succeeded": _setup_intent_succeeded,
    "payout.created": _connected_payout,
    "payout.paid": _connected_payout,
    "payout.failed": _connected_payout,
    "payout.canceled": _connected_payout,
}
