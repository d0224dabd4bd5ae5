"""Sandbox payments: without Stripe keys, these calls say what happened to a payment.

Each builds the event Stripe would send (``payment_intent.succeeded``, ``…payment_failed``,
``charge.refunded``), shaped like Stripe's, and hands it to the same
:func:`amply.services.stripe_events.process` as the webhook, so a sandbox donation reaches
the public ledger exactly as a real one does.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.errors import Conflict, InvalidInput, NotFound
from amply.lib.ids import sandbox_id
from amply.models import Donation, DonationRefund
from amply.services import donations, stripe_events
from amply.services.payments import PaymentGateway


async def succeed(
    session: AsyncSession, *, payment_intent_id: str, gateway: PaymentGateway
) -> Donation:
    donation = await _sandbox_donation(session, payment_intent_id=payment_intent_id)
    if donation.status not in ("pending", "failed"):
        raise Conflict("This payment has succeeded already.", code="payment_already_succeeded")
    intent = _intent(donation, status="succeeded")
    await _emit(session, donation, "payment_intent.succeeded", intent, gateway=gateway)
    return donation


async def fail(
    session: AsyncSession, *, payment_intent_id: str, gateway: PaymentGateway
) -> Donation:
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
        raise NotFound("No such sandbox payment.", param="payment_id")
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
    event_id, created = sandbox_id("evt"), int(time.time())
    payload: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "account": donation.stripe_account_id,
        "livemode": False,
        "created": created,
        "api_version": "sandbox",
        "data": {"object": obj},
    }
    event = stripe_events.Event(
        id=event_id,
        type=event_type,
        account=donation.stripe_account_id,
        livemode=False,
        created=created,
        object=obj,
        payload=payload,
    )
    await stripe_events.process(session, event=event, source="sandbox", gateway=gateway)
    await session.refresh(donation)
