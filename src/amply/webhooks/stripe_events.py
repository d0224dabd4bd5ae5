"""Stripe events, from the signed webhook or from the sandbox: each takes effect once.

:func:`verify` checks ``Stripe-Signature`` over the raw body with the official library
(timestamp tolerance included) and parses the event. :func:`process` stores the event by its
id and applies its effects in the same transaction: a redelivery, or a concurrent delivery
that waits on the first one's row, finds the id taken and does nothing. If an effect fails,
the transaction rolls back, nothing is stored, and Stripe delivers the event again.

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
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import stripe
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.donations import service as donations
from amply.kit.errors import AmplyError, ServiceUnavailable
from amply.kit.observability import STRIPE_EVENTS
from amply.kit.settings import Settings
from amply.models import Donation, Transaction
from amply.payments import connect, connected_payouts, stripe_reads
from amply.payments.gateway import AccountState, PaymentGateway, SetupIntentState
from amply.wallets import cards, deposit_reversals, deposits
from amply.wallets.deposit_reversals import BalanceMove

logger = logging.getLogger(__name__)

EventSource = Literal["webhook", "sandbox"]
Outcome = Literal["processed", "ignored", "duplicate"]
MAX_PAYLOAD_BYTES: Final = 1_000_000
DISPUTE_ID: Final = re.compile(r"^(dp|du)_[0-9A-Za-z_]{1,64}$")


class InvalidWebhook(AmplyError):
    status_code = 400
    default_code = "webhook_invalid"


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    type: str
    account: str | None
    livemode: bool
    created: int
    object: dict[str, Any]
    payload: dict[str, Any]


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
    """An event envelope, checked for the fields every handler relies on."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidWebhook("The event is not JSON.", code="webhook_payload_invalid") from error
    if not isinstance(payload, dict):
        raise _malformed("an object")
    event_id, event_type, created = payload.get("id"), payload.get("type"), payload.get("created")
    data = payload.get("data")
    if not (isinstance(event_id, str) and event_id.startswith("evt_") and len(event_id) <= 104):
        raise _malformed("an `id` starting evt_")
    if not (isinstance(event_type, str) and 0 < len(event_type) <= 100):
        raise _malformed("a `type`")
    if isinstance(created, bool) or not isinstance(created, int) or created < 0:
        raise _malformed("a `created` timestamp")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise _malformed("a `data.object`")
    account = payload.get("account")
    if account is not None and not isinstance(account, str):
        raise _malformed("a string `account`")
    return Event(
        id=event_id,
        type=event_type,
        account=account,
        livemode=bool(payload.get("livemode")),
        created=created,
        object=data["object"],
        payload=payload,
    )


def _malformed(what: str) -> InvalidWebhook:
    return InvalidWebhook(f"The event lacks {what}.", code="webhook_payload_invalid")


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
        reads = await stripe_reads.read_ahead(
            gateway, event_type=event.type, account=event.account, obj=event.object
        )
        gateway = stripe_reads.ReadAhead(gateway, reads)
    # (The sandbox's gateway calls nothing: it answers in-process.)
    return await process(
        session, event=event, source="webhook", gateway=gateway, live_mode=live_mode
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
            "created": datetime.fromtimestamp(event.created, UTC),
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


def _id_of(value: object) -> str | None:
    """A Stripe reference, expanded (an object with an id) or not (the id itself)."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


async def _donation(
    session: AsyncSession, event: Event, *, payment_intent: object
) -> Donation | None:
    """The donation this event is about, if it is one of ours on the event's account."""
    payment_intent_id = _id_of(payment_intent)
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
    charge: dict[str, Any] | None,
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
        if intent.get("status") != "succeeded":
            raise ServiceUnavailable(
                f"PaymentIntent {donation.payment_intent_id} has not succeeded yet; "
                "deliver this event again later.",
                code="event_out_of_order",
            )
        _check_paid_as_asked(donation, intent)
        charge_id = _id_of(intent.get("latest_charge"))
    else:
        paid = {"amount_received": charge.get("amount"), "currency": charge.get("currency")}
        _check_paid_as_asked(donation, paid)
        charge_id = _id_of(charge.get("id"))
    await donations.complete(session, donation, charge_id=charge_id, gateway=gateway)


class PaymentMismatch(AmplyError):
    """Stripe reports a payment other than the donation asked for: never recorded as given."""

    status_code = 409
    default_code = "payment_mismatch"


def _check_paid_as_asked(donation: Donation, intent: dict[str, Any]) -> None:
    # The PaymentIntent lives on the organisation's own account, where it could be changed
    # before the donor paid; the ledger records only what was asked and paid alike.
    _check_payment(intent, kind="donation", payment=donation)


def _check_payment(intent: dict[str, Any], *, kind: str, payment: Donation | Transaction) -> None:
    received = intent.get("amount_received", intent.get("amount"))
    currency = intent.get("currency")
    if (isinstance(received, int) and received != payment.amount) or (
        isinstance(currency, str) and currency.upper() != payment.currency
    ):
        logger.error(
            "PaymentIntent %s paid %s %s, but %s %s asked %s %s: not recorded",
            payment.payment_intent_id,
            received,
            currency,
            kind,
            payment.id,
            payment.amount,
            payment.currency,
        )
        raise PaymentMismatch(
            f"PaymentIntent {payment.payment_intent_id} does not match {kind} {payment.id}."
        )


async def _deposit(session: AsyncSession, event: Event) -> Transaction | None:
    """The deposit a PaymentIntent of the platform account pays, locked, if it is one."""
    payment_intent_id = _id_of(event.object.get("id"))
    if event.account is not None or payment_intent_id is None:
        return None
    return await deposits.find_for_payment(
        session, payment_intent_id=payment_intent_id, deposit_id=_deposit_reference(event)
    )


def _deposit_reference(event: Event) -> str | None:
    """The deposit a PaymentIntent's metadata names (``amply_deposit``)."""
    metadata = event.object.get("metadata")
    reference = metadata.get("amply_deposit") if isinstance(metadata, dict) else None
    return reference if isinstance(reference, str) else None


async def _deposit_succeeded(session: AsyncSession, event: Event, gateway: PaymentGateway) -> bool:
    """Complete the deposit this success pays, once; False if it pays no deposit."""
    deposit = await _deposit(session, event)
    reference = _deposit_reference(event)
    if deposit is None and event.account is None and reference is not None:
        # The request that created it did not commit, though Stripe took the money.
        deposit = await deposits.recover(
            session, deposit_id=reference, intent=event.object, gateway=gateway
        )
    if deposit is None:
        return False
    if deposit.status != "completed":
        _check_payment(event.object, kind="deposit", payment=deposit)
        await deposits.complete(session, deposit)
    return True


async def _payment_succeeded(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    intent = event.object
    if await _deposit_succeeded(session, event, gateway):
        return
    donation = await _donation(session, event, payment_intent=intent.get("id"))
    if donation is not None and donation.received_entry_id is None:
        _check_paid_as_asked(donation, intent)
        await donations.complete(
            session, donation, charge_id=_id_of(intent.get("latest_charge")), gateway=gateway
        )


async def _payment_failed(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    intent = event.object
    deposit = await _deposit(session, event)
    if deposit is not None:
        code, message = _failure(event)
        await deposits.mark_failed(session, deposit, code=code, message=message)
        return
    donation = await _donation(session, event, payment_intent=intent.get("id"))
    if donation is None:
        return
    code, message = _failure(event)
    await donations.mark_failed(session, donation, code=code, message=message)


def _failure(event: Event) -> tuple[str | None, str | None]:
    """The failure code and message of a failed or canceled PaymentIntent."""
    error = event.object.get("last_payment_error")
    if event.type == "payment_intent.canceled":
        error = {"code": "canceled", "message": "The payment was canceled."}
    if not isinstance(error, dict):
        error = {}
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None, message if isinstance(message, str) else None)


async def _charge_updated(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    charge = event.object
    donation = await _donation(session, event, payment_intent=charge.get("payment_intent"))
    charge_id = _id_of(charge.get("id"))
    if donation is not None and charge_id is not None and charge.get("balance_transaction"):
        await donations.record_fee(session, donation, charge_id=charge_id, gateway=gateway)


async def _charge_refunded(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    charge = event.object
    if await _deposit_refunded(session, event):
        return
    donation = await _donation(session, event, payment_intent=charge.get("payment_intent"))
    charge_id = _id_of(charge.get("id"))
    if donation is None or charge_id is None:
        return
    await _ensure_completed(session, donation, charge=charge, gateway=gateway)
    refunds = _listed_refunds(charge)
    for refund in refunds or []:
        await _update_refund(session, refund, as_of=_created(event))
    await donations.record_refunded_total(
        session,
        donation,
        amount_refunded=_count(charge.get("amount_refunded")),
        charge_id=charge_id,
        refund_ids=None if refunds is None else [str(refund.get("id")) for refund in refunds],
        as_of=_created(event),
    )


def _count(value: object) -> int:
    """A non-negative integer amount from an event, or 400 (so that nothing is applied)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidWebhook("An amount in the event is not a count of minor units.")
    return value


def _listed_refunds(charge: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The refunds a charge lists (older API versions, or ``expand``), else None."""
    listed = charge.get("refunds")
    if not isinstance(listed, dict) or not isinstance(listed.get("data"), list):
        return None
    return [refund for refund in listed["data"] if isinstance(refund, dict)]


async def _refund_updated(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    # Lock the donation first, as the refund's request does: an event that overtakes the
    # request's commit waits for it, and then finds the refund.
    await _donation(session, event, payment_intent=event.object.get("payment_intent"))
    await _update_refund(session, event.object, as_of=_created(event))


def _created(event: Event) -> datetime:
    return datetime.fromtimestamp(event.created, UTC)


async def _update_refund(session: AsyncSession, refund: object, *, as_of: datetime) -> None:
    if isinstance(refund, dict) and isinstance(refund.get("id"), str):
        await donations.update_refund_status(
            session, provider_refund_id=refund["id"], status=str(refund.get("status")), as_of=as_of
        )


async def _charged_deposit(
    session: AsyncSession, event: Event, *, payment_intent: object, metadata: object
) -> Transaction | None:
    """The deposit a charge or dispute of the platform account is about, locked, if any."""
    payment_intent_id = _id_of(payment_intent)
    if event.account is not None or payment_intent_id is None:
        return None
    reference = metadata.get("amply_deposit") if isinstance(metadata, dict) else None
    return await deposits.find_for_payment(
        session,
        payment_intent_id=payment_intent_id,
        deposit_id=reference if isinstance(reference, str) else None,
    )


async def _deposit_refunded(session: AsyncSession, event: Event) -> bool:
    """Take a refunded deposit's money back from its wallet; False if no deposit is refunded.

    The refunded charge proves the payment succeeded: a deposit still pending (its success
    event not here yet) is completed first, after the same check of what was paid."""
    charge = event.object
    deposit = await _charged_deposit(
        session, event, payment_intent=charge.get("payment_intent"), metadata=charge.get("metadata")
    )
    charge_id = _id_of(charge.get("id"))
    if deposit is None or charge_id is None:
        return False
    await deposit_reversals.prepare(session, wallet_id=deposit.wallet_id)
    if deposit.status != "completed":
        paid = {"amount_received": charge.get("amount"), "currency": charge.get("currency")}
        _check_payment(paid, kind="deposit", payment=deposit)
        await deposits.complete(session, deposit)
    await deposit_reversals.record_refunded_total(
        session,
        deposit,
        charge_id=charge_id,
        amount_refunded=_count(charge.get("amount_refunded")),
    )
    return True


def _balance_moves(dispute: dict[str, Any]) -> list[BalanceMove]:
    """The balance transactions a dispute lists (Stripe expands them in every event)."""
    listed = dispute.get("balance_transactions")
    moves = []
    for item in listed if isinstance(listed, list) else []:
        if not isinstance(item, dict):
            continue
        move_id, amount, fee = item.get("id"), item.get("amount"), item.get("fee")
        currency = item.get("currency")
        if not (
            isinstance(move_id, str)
            and 0 < len(move_id) <= 255
            and _signed(amount) is not None
            and _signed(fee) is not None
            and isinstance(currency, str)
            and len(currency) == 3
        ):
            raise InvalidWebhook(
                "A balance transaction of the dispute lacks an id, amount, fee or currency.",
                code="webhook_payload_invalid",
            )
        assert isinstance(amount, int)
        assert isinstance(fee, int)
        moves.append(BalanceMove(move_id, amount, fee, currency.upper()))
    return moves


def _signed(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _dispute(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    """Any dispute event (``created``, ``updated``, ``funds_withdrawn``, ``funds_reinstated``,
    ``closed``): every balance transaction it lists is recorded once, in any order."""
    dispute = event.object
    # Whose dispute first: one about a payment Amply does not know is acknowledged, however
    # it looks (refusing it would have Stripe retry it for days).
    deposit = await _charged_deposit(
        session, event, payment_intent=dispute.get("payment_intent"), metadata=None
    )
    donation = None
    if deposit is None:
        donation = await _donation(session, event, payment_intent=dispute.get("payment_intent"))
        if donation is None:
            return
    dispute_id, amount = dispute.get("id"), dispute.get("amount")
    if not (isinstance(dispute_id, str) and DISPUTE_ID.match(dispute_id)) or _count(amount) == 0:
        raise InvalidWebhook("The dispute lacks an id or amount.", code="webhook_payload_invalid")
    moves = _balance_moves(dispute)
    if deposit is not None:
        await _deposit_disputed(session, deposit, dispute=dispute, moves=moves)
        return
    assert donation is not None
    await _ensure_completed(session, donation, charge=None, gateway=gateway)
    await donations.record_dispute(session, donation, dispute=dispute, moves=moves)


async def _deposit_disputed(
    session: AsyncSession,
    deposit: Transaction,
    *,
    dispute: dict[str, Any],
    moves: list[BalanceMove],
) -> None:
    if not moves:
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
        dispute_id=str(dispute["id"]),
        charge_id=_id_of(dispute.get("charge")),
        moves=moves,
    )


async def _account_updated(session: AsyncSession, event: Event, gateway: PaymentGateway) -> None:
    account = event.object
    if not isinstance(account.get("id"), str):
        return
    requirements = account.get("requirements")
    requirements = requirements if isinstance(requirements, dict) else {}
    due = requirements.get("currently_due")
    reason = requirements.get("disabled_reason")
    await connect.apply_account_update(
        session,
        as_of=_created(event),
        state=AccountState(
            account_id=account["id"],
            charges_enabled=bool(account.get("charges_enabled")),
            payouts_enabled=bool(account.get("payouts_enabled")),
            details_submitted=bool(account.get("details_submitted")),
            requirements_due=tuple(str(item) for item in due) if isinstance(due, list) else (),
            disabled_reason=reason[:200] if isinstance(reason, str) else None,
        ),
    )


async def _account_deauthorized(
    session: AsyncSession, event: Event, gateway: PaymentGateway
) -> None:
    # The object is the platform's application; the account is the event's.
    if event.account is not None:
        await connect.apply_deauthorization(
            session, account_id=event.account, as_of=_created(event)
        )


async def _setup_intent_succeeded(
    session: AsyncSession, event: Event, gateway: PaymentGateway
) -> None:
    intent = event.object
    setup_intent_id = _id_of(intent.get("id"))
    metadata = intent.get("metadata")
    wallet_id = metadata.get("wallet_id") if isinstance(metadata, dict) else None
    if event.account is not None or setup_intent_id is None or not isinstance(wallet_id, str):
        return
    await cards.save_from_setup_intent(
        session,
        intent=SetupIntentState(
            setup_intent_id=setup_intent_id,
            status=str(intent.get("status")),
            customer_id=_id_of(intent.get("customer")),
            payment_method_id=_id_of(intent.get("payment_method")),
            wallet_id=wallet_id,
        ),
        gateway=gateway,
    )


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
