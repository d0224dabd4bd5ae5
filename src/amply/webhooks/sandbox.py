"""Sandbox payments: without Stripe keys, these calls say what happened to a payment.

Each builds the event Stripe would send (``payment_intent.succeeded``, ``…payment_failed``,
``charge.refunded``, ``setup_intent.succeeded``), shaped like Stripe's, and hands it to the
same :func:`amply.webhooks.stripe_events.process` as the webhook, so a sandbox donation
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
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.donations import service as donations
from amply.kit.errors import Conflict, InvalidInput, NotFound
from amply.kit.ids import sandbox_id
from amply.kit.money import fee_for
from amply.models import (
    Card,
    ConnectedPayout,
    Donation,
    DonationRefund,
    Organisation,
    SandboxBalanceTransaction,
    Transaction,
    Wallet,
)
from amply.models.enums import StripeEventSource
from amply.organisations import service as organisations
from amply.payments.gateway import (
    SANDBOX_FEE_BASIS_POINTS,
    SANDBOX_FEE_FIXED,
    PaymentGateway,
    SandboxCard,
    sandbox_customer_id,
    sandbox_payment_method_id,
    sandbox_setup_intent_wallet,
)
from amply.payments.stripe_objects import JSONObject, StripeEvent
from amply.wallets import cards
from amply.webhooks import stripe_events


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
    await _record_charge(session, donation)
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
    refunds = [(r.provider_refund_id, r.amount) for r in pending]
    if amount or not pending:
        refunds.append((sandbox_id("re"), total - sum(r.amount for r in pending)))
    charge: dict[str, object] = {
        "id": _charge_id(donation),
        "object": "charge",
        "amount": donation.amount,
        "amount_refunded": donation.amount_refunded + total,
        "refunded": donation.amount_refunded + total == donation.amount,
        "currency": donation.currency.lower(),
        "payment_intent": donation.payment_intent_id,
        "status": "succeeded",
        "refunds": {
            "object": "list",
            "data": [_refund_object(refund_id, part) for refund_id, part in refunds],
        },
    }
    await _emit(session, donation, "charge.refunded", charge, gateway=gateway)
    for refund_id, part in refunds:
        await _record_refund(session, donation, refund_id=refund_id, amount=part)
    return donation


async def _sandbox_donation(session: AsyncSession, *, payment_intent_id: str) -> Donation:
    donation = await donations.find_by_payment_intent(session, payment_intent_id=payment_intent_id)
    if donation is None or donation.provider != "sandbox":
        raise no_such_payment()
    return donation


def _charge_id(donation: Donation) -> str:
    return donation.payment_intent_id.replace("pi_", "ch_", 1)


def _intent(donation: Donation, *, status: str) -> dict[str, object]:
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


def _refund_object(refund_id: str, amount: int) -> dict[str, object]:
    return {"id": refund_id, "object": "refund", "amount": amount, "status": "succeeded"}


async def _emit(
    session: AsyncSession,
    donation: Donation,
    event_type: str,
    obj: JSONObject,
    *,
    gateway: PaymentGateway,
) -> None:
    await _emit_event(session, event_type, obj, account=donation.stripe_account_id, gateway=gateway)
    await session.refresh(donation)


async def _emit_event(
    session: AsyncSession,
    event_type: str,
    obj: JSONObject,
    *,
    account: str | None,
    gateway: PaymentGateway,
) -> None:
    """Process the event Stripe would send about ``obj`` (``account``: the connected account
    it happened on; None for the platform account's own objects), read as the webhook reads
    Stripe's: its envelope parsed here, its object by its handler."""
    payload: dict[str, object] = {
        "id": sandbox_id("evt"),
        "object": "event",
        "type": event_type,
        "account": account,
        "livemode": False,
        "created": int(time.time()),
        "api_version": "sandbox",
        "data": {"object": obj},
    }
    event = StripeEvent.parse(payload)
    await stripe_events.process(
        session, event=event, source=StripeEventSource.SANDBOX, gateway=gateway
    )


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
    intent: dict[str, object] = {
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
    intent: dict[str, object] = {
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


# --- The simulated Stripe balance, and payouts of it ------------------------------------------
#
# What Stripe's balance transactions would be for what the sandbox simulates, kept in
# ``sandbox_balance_transactions`` (migration 0013) as it simulates them, with Stripe's
# types, signs and sources: a charge (+amount, the sandbox's fee), each refund (-amount, fee
# 0, source the refund), a payout (-amount, source the payout) and its failure (+amount).
# ``amply reconcile`` compares each chain with these in sandbox mode, as it compares it with
# Stripe's in Stripe mode; they are written beside the events, not derived from the chain.


async def _record_balance_transaction(
    session: AsyncSession,
    *,
    account_id: str,
    type_: str,
    source: str,
    charge: str | None,
    amount: int,
    fee: int,
    currency: str,
) -> str:
    """Record a balance transaction once (by account, type and source); its id."""
    exists = await session.scalar(
        select(SandboxBalanceTransaction.id).where(
            SandboxBalanceTransaction.stripe_account_id == account_id,
            SandboxBalanceTransaction.type == type_,
            SandboxBalanceTransaction.source == source,
        )
    )
    if exists is not None:
        return exists
    transaction_id = sandbox_id("txn")
    session.add(
        SandboxBalanceTransaction(
            id=transaction_id,
            stripe_account_id=account_id,
            type=type_,
            source=source,
            charge=charge,
            amount=amount,
            fee=fee,
            currency=currency,
        )
    )
    await session.flush()
    return transaction_id


SANDBOX_DISPUTE_FEE: Final = 1500  # Stripe's US dispute fee, in cents


async def dispute_withdrawal(
    session: AsyncSession, donation: Donation, *, dispute_id: str
) -> dict[str, object]:
    """The balance transaction of a dispute of the whole donation (-amount, Stripe's dispute
    fee), recorded in the simulated balance, as Stripe lists it in the dispute's
    ``balance_transactions``."""
    transaction_id = await _record_balance_transaction(
        session,
        account_id=donation.stripe_account_id,
        type_="adjustment",
        source=dispute_id,
        charge=_charge_id(donation),
        amount=-donation.amount,
        fee=SANDBOX_DISPUTE_FEE,
        currency=donation.currency,
    )
    return {
        "id": transaction_id,
        "object": "balance_transaction",
        "amount": -donation.amount,
        "fee": SANDBOX_DISPUTE_FEE,
        "net": -donation.amount - SANDBOX_DISPUTE_FEE,
        "currency": donation.currency.lower(),
        "type": "adjustment",
        "reporting_category": "dispute",
        "source": dispute_id,
    }


async def _record_charge(session: AsyncSession, donation: Donation) -> None:
    """The charge's balance transaction, once the payment went through: the gross, less the
    sandbox's card fee (as ``SandboxGateway.processing_fee`` reports it)."""
    if donation.status != "completed":
        return
    charge = _charge_id(donation)
    await _record_balance_transaction(
        session,
        account_id=donation.stripe_account_id,
        type_="charge",
        source=charge,
        charge=charge,
        amount=donation.amount,
        fee=fee_for(donation.amount, basis_points=SANDBOX_FEE_BASIS_POINTS) + SANDBOX_FEE_FIXED,
        currency=donation.currency,
    )


async def _record_refund(
    session: AsyncSession, donation: Donation, *, refund_id: str, amount: int
) -> None:
    await _record_balance_transaction(
        session,
        account_id=donation.stripe_account_id,
        type_="refund",
        source=refund_id,
        charge=_charge_id(donation),
        amount=-amount,
        fee=0,
        currency=donation.currency,
    )


async def balance_transactions(
    session: AsyncSession, *, account_id: str
) -> list[SandboxBalanceTransaction]:
    """The simulated balance transactions of a sandbox account, oldest first."""
    rows = await session.scalars(
        select(SandboxBalanceTransaction)
        .where(SandboxBalanceTransaction.stripe_account_id == account_id)
        .order_by(SandboxBalanceTransaction.created_at, SandboxBalanceTransaction.id)
    )
    return list(rows)


async def _simulated_balance(session: AsyncSession, *, account_id: str, currency: str) -> int:
    balance = await session.scalar(
        select(
            func.coalesce(
                func.sum(SandboxBalanceTransaction.amount - SandboxBalanceTransaction.fee), 0
            )
        ).where(
            SandboxBalanceTransaction.stripe_account_id == account_id,
            SandboxBalanceTransaction.currency == currency,
        )
    )
    return int(balance or 0)


async def _sandbox_account(session: AsyncSession, *, organisation_id: str) -> Organisation:
    """The organisation, locked (one payout at a time takes from its balance)."""
    await organisations.lock_organisation(session, organisation_id=organisation_id)
    organisation = await organisations.require_organisation(
        session, organisation_id=organisation_id
    )
    account = organisation.stripe_account_id
    if account is None or not account.startswith("acct_sandbox_"):
        raise Conflict(
            "This organisation has no sandbox Stripe account to pay out from.",
            code="payouts_unavailable",
        )
    return organisation


async def create_payout(
    session: AsyncSession,
    *,
    organisation_id: str,
    amount: int,
    currency: str | None,
    gateway: PaymentGateway,
) -> ConnectedPayout:
    """Stripe pays ``amount`` of the organisation's simulated balance out to its bank: the
    payout's balance transaction, then ``payout.created`` (the same handler as Stripe's)."""
    organisation = await _sandbox_account(session, organisation_id=organisation_id)
    account = organisation.stripe_account_id
    assert account is not None
    currency = currency or organisation.default_currency
    available = await _simulated_balance(session, account_id=account, currency=currency)
    if amount > available:
        raise InvalidInput(
            f"The organisation's sandbox Stripe balance holds {available} minor units of "
            f"{currency}; a payout cannot take more.",
            code="payout_exceeds_balance",
            param="amount",
        )
    payout_id = sandbox_id("po")
    transaction_id = await _record_balance_transaction(
        session,
        account_id=account,
        type_="payout",
        source=payout_id,
        charge=None,
        amount=-amount,
        fee=0,
        currency=currency,
    )
    await _emit_event(
        session,
        "payout.created",
        {
            **_payout_object(payout_id, amount=amount, currency=currency, status="pending"),
            "balance_transaction": transaction_id,
        },
        account=account,
        gateway=gateway,
    )
    return await _payout(session, organisation_id=organisation_id, payout_id=payout_id)


async def _payout(
    session: AsyncSession, *, organisation_id: str, payout_id: str
) -> ConnectedPayout:
    payout = await session.get(
        ConnectedPayout, payout_id, with_for_update=True, populate_existing=True
    )
    if payout is None or payout.organisation_id != organisation_id or "_sandbox_" not in payout_id:
        raise NotFound("No such sandbox payout.", param="payout_id")
    return payout


async def settle_payout(
    session: AsyncSession,
    *,
    organisation_id: str,
    payout_id: str,
    paid: bool,
    gateway: PaymentGateway,
) -> ConnectedPayout:
    """The payout reaches the bank (``payout.paid``) or fails (``payout.failed``; a paid
    payout may still fail, as at Stripe), and its amount returns to the balance."""
    await _sandbox_account(session, organisation_id=organisation_id)
    payout = await _payout(session, organisation_id=organisation_id, payout_id=payout_id)
    if payout.status in ("failed", "canceled") or (paid and payout.status == "paid"):
        raise Conflict(f"This payout is {payout.status} already.", code="payout_settled")
    obj = _payout_object(
        payout.id,
        amount=payout.amount,
        currency=payout.currency,
        status="paid" if paid else "failed",
    )
    if not paid:
        failure = await _record_failure(session, payout)
        obj.update(failure_code="account_closed", failure_balance_transaction=failure)
    event_type = "payout.paid" if paid else "payout.failed"
    await _emit_event(session, event_type, obj, account=payout.stripe_account_id, gateway=gateway)
    await session.refresh(payout)
    return payout


async def _record_failure(session: AsyncSession, payout: ConnectedPayout) -> str:
    return await _record_balance_transaction(
        session,
        account_id=payout.stripe_account_id,
        type_="payout_failure",
        source=payout.id,
        charge=None,
        amount=payout.amount,
        fee=0,
        currency=payout.currency,
    )


def _payout_object(payout_id: str, *, amount: int, currency: str, status: str) -> dict[str, object]:
    return {
        "id": payout_id,
        "object": "payout",
        "amount": amount,
        "currency": currency.lower(),
        "status": status,
        "automatic": True,
        "method": "standard",
        "type": "bank_account",
        "failure_code": None,
        "failure_balance_transaction": None,
    }
