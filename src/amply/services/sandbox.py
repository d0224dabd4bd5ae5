"""Sandbox payments: without Stripe keys, these calls say what happened to a payment.

Each builds the event Stripe would send (``payment_intent.succeeded``, ``…payment_failed``,
``charge.refunded``, ``setup_intent.succeeded``), shaped like Stripe's, and hands it to the
same :func:`amply.services.stripe_events.process` as the webhook, so a sandbox donation
reaches the public ledger exactly as a real one does, a sandbox card deposit credits its
wallet as a real one does (its events, like Stripe's for the platform account, name no
``account``), and a sandbox SetupIntent saves its card as Stripe's event would.

Who may say so is who could have done it for real: anyone may confirm a donation's payment
(its donor has no account; Stripe.js confirms it with the client secret); a card deposit's
payment and a SetupIntent belong to their wallet's owner; a refund is the donation's
organisation's to make. :func:`owner_of` says whose a payment is, for the routes to check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.errors import Conflict, InvalidInput, NotFound
from amply.lib.ids import sandbox_id
from amply.models import Card, Donation, DonationRefund, Transaction, Wallet
from amply.services import cards, donations, stripe_events
from amply.services.payments import (
    PaymentGateway,
    SandboxCard,
    sandbox_customer_id,
    sandbox_payment_method_id,
    sandbox_setup_intent_wallet,
)


@dataclass(frozen=True)
class PaymentOwner:
    """Whose a sandbox payment is: a donation's organisation, or a card deposit's user."""

    organisation_id: str | None = None
    user_id: str | None = None


async def owner_of(session: AsyncSession, *, payment_intent_id: str) -> PaymentOwner:
    """Whose this sandbox payment is (404 when there is no such sandbox payment)."""
    user_id = await session.scalar(
        select(Wallet.user_id)
        .join(Transaction, Transaction.wallet_id == Wallet.id)
        .where(
            Transaction.payment_intent_id == payment_intent_id,
            Transaction.kind == "deposit",
            Transaction.provider == "sandbox",
        )
    )
    if user_id is not None:
        return PaymentOwner(user_id=user_id)
    organisation_id = await session.scalar(
        select(Donation.organisation_id).where(
            Donation.payment_intent_id == payment_intent_id, Donation.provider == "sandbox"
        )
    )
    if organisation_id is None:
        raise no_such_payment()
    return PaymentOwner(organisation_id=organisation_id)


def no_such_payment() -> NotFound:
    """A payment that does not exist, and another's: the same answer."""
    return NotFound("No such sandbox payment.", param="payment_id")


async def succeed(
    session: AsyncSession, *, payment_intent_id: str, gateway: PaymentGateway
) -> Donation | Transaction:
    deposit = await _sandbox_deposit(session, payment_intent_id=payment_intent_id)
    if deposit is not None:
        return await _settle_deposit(session, deposit, succeeded=True, gateway=gateway)
    donation = await _sandbox_donation(session, payment_intent_id=payment_intent_id)
    if donation.status not in ("pending", "failed"):
        raise Conflict("This payment has succeeded already.", code="payment_already_succeeded")
    intent = _intent(donation, status="succeeded")
    await _emit(session, donation, "payment_intent.succeeded", intent, gateway=gateway)
    return donation


async def fail(
    session: AsyncSession, *, payment_intent_id: str, gateway: PaymentGateway
) -> Donation | Transaction:
    deposit = await _sandbox_deposit(session, payment_intent_id=payment_intent_id)
    if deposit is not None:
        return await _settle_deposit(session, deposit, succeeded=False, gateway=gateway)
    donation = await _sandbox_donation(session, payment_intent_id=payment_intent_id)
    if donation.status != "pending":
        raise Conflict(
            f"Only a pending payment can fail; this one is {donation.status}.",
            code="payment_not_pending",
        )
    intent = _intent(donation, status="requires_payment_method")
    intent["last_payment_error"] = {
        "code": "card_declined",
        "message": "Your card was declined. (sandbox)",
    }
    await _emit(session, donation, "payment_intent.payment_failed", intent, gateway=gateway)
    return donation


async def refund(
    session: AsyncSession,
    *,
    payment_intent_id: str,
    amount: int | None,
    gateway: PaymentGateway,
) -> Donation:
    """Settle the refunds asked for through Amply, plus ``amount`` refunded as if from
    Stripe's dashboard; with neither, refund what remains.
    """
    if await _sandbox_deposit(session, payment_intent_id=payment_intent_id) is not None:
        raise Conflict(
            "Deposits are not refunded: withdraw the money from the wallet instead.",
            code="deposit_not_refundable",
        )
    donation = await _sandbox_donation(session, payment_intent_id=payment_intent_id)
    if donation.status != "completed":
        raise Conflict(
            f"Only a completed payment can be refunded; this one is {donation.status}.",
            code="donation_not_completed",
        )
    pending = list(
        await session.scalars(
            select(DonationRefund).where(
                DonationRefund.donation_id == donation.id, DonationRefund.status == "pending"
            )
        )
    )
    remaining = donation.amount - donation.amount_refunded
    total = sum(r.amount for r in pending) + (amount or 0)
    if total == 0:
        total = remaining
    if total > remaining:
        raise InvalidInput(
            f"At most {remaining} minor units of this payment remain to refund.",
            code="refund_exceeds_remaining",
            param="amount",
        )
    refunds = [_refund_object(r.provider_refund_id, r.amount) for r in pending]
    if amount or not pending:
        refunds.append(_refund_object(sandbox_id("re"), total - sum(r.amount for r in pending)))
    charge = {
        "id": _charge_id(donation),
        "object": "charge",
        "amount": donation.amount,
        "amount_refunded": donation.amount_refunded + total,
        "refunded": donation.amount_refunded + total == donation.amount,
        "currency": donation.currency.lower(),
        "payment_intent": donation.payment_intent_id,
        "status": "succeeded",
        "refunds": {"object": "list", "data": refunds},
    }
    await _emit(session, donation, "charge.refunded", charge, gateway=gateway)
    return donation


async def _sandbox_donation(session: AsyncSession, *, payment_intent_id: str) -> Donation:
    donation = await donations.find_by_payment_intent(session, payment_intent_id=payment_intent_id)
    if donation is None or donation.provider != "sandbox":
        raise no_such_payment()
    return donation


def _charge_id(donation: Donation) -> str:
    return donation.payment_intent_id.replace("pi_", "ch_", 1)


def _intent(donation: Donation, *, status: str) -> dict[str, Any]:
    return {
        "id": donation.payment_intent_id,
        "object": "payment_intent",
        "amount": donation.amount,
        "currency": donation.currency.lower(),
        "status": status,
        "latest_charge": _charge_id(donation),
        "metadata": {"donation_id": donation.id},
        "last_payment_error": None,
    }


def _refund_object(refund_id: str, amount: int) -> dict[str, Any]:
    return {"id": refund_id, "object": "refund", "amount": amount, "status": "succeeded"}


async def _emit(
    session: AsyncSession,
    donation: Donation,
    event_type: str,
    obj: dict[str, Any],
    *,
    gateway: PaymentGateway,
) -> None:
    await _emit_event(session, event_type, obj, account=donation.stripe_account_id, gateway=gateway)
    await session.refresh(donation)


async def _emit_event(
    session: AsyncSession,
    event_type: str,
    obj: dict[str, Any],
    *,
    account: str | None,
    gateway: PaymentGateway,
) -> None:
    """Process the event Stripe would send about ``obj`` (``account``: the connected account
    it happened on; None for the platform account's own objects)."""
    event_id, created = sandbox_id("evt"), int(time.time())
    payload: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "account": account,
        "livemode": False,
        "created": created,
        "api_version": "sandbox",
        "data": {"object": obj},
    }
    event = stripe_events.Event(
        id=event_id,
        type=event_type,
        account=account,
        livemode=False,
        created=created,
        object=obj,
        payload=payload,
    )
    await stripe_events.process(session, event=event, source="sandbox", gateway=gateway)


# --- Wallets: card deposits and saved cards --------------------------------------------------


async def _sandbox_deposit(session: AsyncSession, *, payment_intent_id: str) -> Transaction | None:
    """The sandbox card deposit this PaymentIntent pays, locked, if it is one."""
    deposit: Transaction | None = await session.scalar(
        select(Transaction)
        .where(
            Transaction.payment_intent_id == payment_intent_id,
            Transaction.kind == "deposit",
            Transaction.provider == "sandbox",
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return deposit


async def _settle_deposit(
    session: AsyncSession, deposit: Transaction, *, succeeded: bool, gateway: PaymentGateway
) -> Transaction:
    """The deposit's payment succeeds (pending or failed before) or fails (pending only)."""
    if succeeded and deposit.status == "completed":
        raise Conflict("This payment has succeeded already.", code="payment_already_succeeded")
    if not succeeded and deposit.status != "pending":
        raise Conflict(
            f"Only a pending payment can fail; this one is {deposit.status}.",
            code="payment_not_pending",
        )
    assert deposit.payment_intent_id is not None
    card = await session.get(Card, deposit.card_id) if deposit.card_id else None
    intent: dict[str, Any] = {
        "id": deposit.payment_intent_id,
        "object": "payment_intent",
        "amount": deposit.amount,
        "amount_received": deposit.amount if succeeded else 0,
        "currency": deposit.currency.lower(),
        "status": "succeeded" if succeeded else "requires_payment_method",
        "customer": sandbox_customer_id(deposit.wallet_id),
        "payment_method": card.payment_method_id if card else None,
        "latest_charge": deposit.payment_intent_id.replace("pi_", "ch_", 1),
        "metadata": {"amply_deposit": deposit.id, "wallet_id": deposit.wallet_id},
        "last_payment_error": None
        if succeeded
        else {"code": "card_declined", "message": "Your card was declined. (sandbox)"},
    }
    event_type = "payment_intent.succeeded" if succeeded else "payment_intent.payment_failed"
    await _emit_event(session, event_type, intent, account=None, gateway=gateway)
    await session.refresh(deposit)
    return deposit


async def succeed_setup_intent(
    session: AsyncSession,
    *,
    user_id: str,
    setup_intent_id: str,
    card: SandboxCard,
    gateway: PaymentGateway,
) -> str:
    """``user_id``'s sandbox SetupIntent succeeds with a test card, which is saved to their
    wallet (as Stripe's ``setup_intent.succeeded`` would); the new payment method's id.
    Another user's SetupIntent is as missing as one that never existed."""
    wallet_id = sandbox_setup_intent_wallet(setup_intent_id)
    wallet = await session.get(Wallet, wallet_id) if wallet_id else None
    if wallet is None or wallet.user_id != user_id:
        raise NotFound("No such sandbox SetupIntent.", param="setup_intent_id")
    await cards.lock(session, wallet_id=wallet.id)
    if await cards.saved_from(session, setup_intent_id=setup_intent_id) is not None:
        raise Conflict(
            "This SetupIntent has succeeded already.", code="setup_intent_already_succeeded"
        )
    payment_method_id = sandbox_payment_method_id(card)
    intent: dict[str, Any] = {
        "id": setup_intent_id,
        "object": "setup_intent",
        "customer": sandbox_customer_id(wallet.id),
        "payment_method": payment_method_id,
        "payment_method_types": ["card"],
        "status": "succeeded",
        "usage": "off_session",
        "metadata": {"wallet_id": wallet.id},
    }
    await _emit_event(session, "setup_intent.succeeded", intent, account=None, gateway=gateway)
    return payment_method_id
