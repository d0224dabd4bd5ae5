"""Deposits: money entering a wallet from a saved card or, in the sandbox, from a bank.

A card deposit is a PaymentIntent on the platform account, created and confirmed off session
for the wallet's Customer and saved card. It stays ``pending`` until the payment's outcome
arrives as an event (Stripe's webhook, or the sandbox's endpoints, through the same
``stripe_events.process``): ``payment_intent.succeeded`` appends one ``deposit`` leg
(+amount) to the wallet's chain and completes the deposit, once, under its row lock;
``…payment_failed`` marks a pending deposit ``failed`` (a later success still completes it).
A sandbox bank deposit completes at once. The wallet is credited only by a payment that
succeeded.

The deposit's id is derived from the request's Idempotency-Key, and Stripe receives
``Idempotency-Key: deposit:<id>``, so a retry after a crash names the same PaymentIntent. A
card deposit runs in three steps (``api.idempotency.run_in_steps``): checks and the id in a
short transaction; the charge with no transaction open and no lock held, so a slow Stripe
delays no other writer to the wallet; the pending deposit recorded in a second short
transaction, under a lock on the deposit's id. An event about the PaymentIntent takes the
same lock: if it overtakes step 3, or the request dies after Stripe took the money, the
success event records the deposit itself from the PaymentIntent's metadata, and step 3 (or
the retry's) finds it, so money taken is never money lost.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import Conflict, InvalidInput, NotFound
from amply.kit.idempotency import IdempotentRequest
from amply.kit.ids import derived_id
from amply.kit.money import Money, minimum_charge_amount
from amply.kit.pagination import Page
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.ledger.service import Leg
from amply.models import Card, Transaction, Wallet
from amply.models.enums import DepositStatus, EntryType, TransactionKind, TransactionStatus
from amply.payments.gateway import CreatedPayment, PaymentGateway, PaymentIntentState
from amply.wallets import cards, deposit_reversals, history
from amply.wallets import service as wallets

logger = logging.getLogger(__name__)

DEPOSIT_ID: Final = re.compile(r"^txn_[0-9A-Za-z]{24}$")
_LOCK_SQL: Final = text(
    "SELECT pg_advisory_xact_lock(hashtext('amply:deposit'), hashtext(:deposit_id))"
)
_BRANDS: Final = {
    "amex": "American Express",
    "diners": "Diners Club",
    "discover": "Discover",
    "jcb": "JCB",
    "mastercard": "Mastercard",
    "unionpay": "UnionPay",
    "visa": "Visa",
}


class BankDepositsUnavailable(InvalidInput):
    default_code = "bank_deposits_unavailable"


# --- Creating ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardDepositPlan:
    """A card deposit that passed its checks, with its id, before Stripe is asked."""

    deposit_id: str
    wallet_id: str
    currency: str
    amount: int
    card_id: str
    payment_method_id: str
    customer_id: str
    description: str
    # Set when the deposit is on record already (its success event recorded it after the
    # first attempt died between steps): step 2 then asks Stripe nothing.
    payment_intent_id: str | None = None


async def prepare_card_deposit(
    session: AsyncSession,
    *,
    user_id: str,
    amount: int,
    currency: str | None,
    card_id: str | None,
    gateway: PaymentGateway,
    settings: Settings,
    idempotency: IdempotentRequest,
) -> CardDepositPlan:
    """Step 1 of a card deposit (a short transaction): the terms, the card (read under the
    wallet's card lock, held for this step only) and the deposit's id, derived from the
    Idempotency-Key so that a retry names the same PaymentIntent. Nothing is recorded yet."""
    wallet = await wallets.of_user(session, user_id=user_id)
    _check_terms(
        wallet,
        amount=amount,
        currency=currency,
        minimum=minimum_charge_amount(wallet.currency),
        maximum=settings.donation_max_amount,
    )
    await cards.lock(session, wallet_id=wallet.id)
    card = await cards.card_for_deposit(session, wallet=wallet, card_id=card_id, gateway=gateway)
    # A saved card was saved for the wallet's Customer: it exists already.
    customer_id = gateway.customer_of(wallet_id=wallet.id, stored=wallet.stripe_customer_id)
    assert customer_id is not None
    deposit_id = derived_id("txn", seed=idempotency.seed)
    await _lock(session, deposit_id)
    recorded = await session.get(Transaction, deposit_id)
    if recorded is not None and not await _recorded_by_its_event(
        session, recorded, wallet_id=wallet.id, amount=amount, settings=settings
    ):
        raise _key_reused()
    return CardDepositPlan(
        deposit_id=deposit_id,
        wallet_id=wallet.id,
        currency=wallet.currency,
        amount=amount,
        card_id=card.id,
        payment_method_id=card.payment_method_id,
        customer_id=customer_id,
        description=_card_description(card),
        payment_intent_id=recorded.payment_intent_id if recorded is not None else None,
    )


async def _recorded_by_its_event(
    session: AsyncSession, deposit: Transaction, *, wallet_id: str, amount: int, settings: Settings
) -> bool:
    """Whether ``deposit`` (found under a retried key's derived id) is this request's own
    deposit, recorded by its success event after the first attempt died before step 3: it
    is, if it is a card deposit of the same terms made within the key's lifetime (an older
    one means the key expired and came back: a new request, refused)."""
    if (deposit.kind, deposit.source, deposit.wallet_id, deposit.amount) != (
        "deposit",
        "card",
        wallet_id,
        amount,
    ):
        return False
    recent: bool | None = await session.scalar(
        select(
            Transaction.created_at
            > func.now()
            - func.make_interval(0, 0, 0, 0, 0, 0, settings.idempotency_key_lifetime_seconds)
        ).where(Transaction.id == deposit.id)
    )
    return bool(recent)


async def charge_card(plan: CardDepositPlan, *, gateway: PaymentGateway) -> CreatedPayment:
    """Step 2, with no transaction open and no lock held: the PaymentIntent, confirmed off
    session, under Stripe's idempotency key ``deposit:<id>``. Its metadata names the deposit
    and the wallet, from which the success event records the deposit if it overtakes step 3
    (or the request dies before it). A card removed meanwhile is detached at Stripe, which
    then refuses the charge."""
    if plan.payment_intent_id is not None:
        return CreatedPayment(payment_intent_id=plan.payment_intent_id, client_secret=None)
    return await gateway.charge_saved_card(
        customer_id=plan.customer_id,
        payment_method_id=plan.payment_method_id,
        amount=plan.amount,
        currency=plan.currency,
        metadata={"amply_deposit": plan.deposit_id, "wallet_id": plan.wallet_id},
        idempotency_key=f"deposit:{plan.deposit_id}",
    )


async def record_card_deposit(
    session: AsyncSession,
    plan: CardDepositPlan,
    payment: CreatedPayment,
    *,
    gateway: PaymentGateway,
) -> Transaction:
    """Step 3 (a short transaction): the pending deposit, paid by ``payment``, under the
    deposit's lock (which the payment's events take too). If the success event came first,
    it recorded the deposit from the PaymentIntent's metadata (:func:`recover`): that row
    is the result."""
    await _lock(session, plan.deposit_id)
    existing = await _locked_deposit(session, Transaction.id == plan.deposit_id)
    if existing is not None:
        if existing.payment_intent_id == payment.payment_intent_id:
            return existing
        raise _key_reused()
    deposit = Transaction(
        id=plan.deposit_id,
        kind="deposit",
        status="pending",
        wallet_id=plan.wallet_id,
        card_id=plan.card_id,
        amount=plan.amount,
        currency=plan.currency,
        description=plan.description,
        source="card",
        provider=gateway.provider,
        payment_intent_id=payment.payment_intent_id,
    )
    session.add(deposit)
    await session.flush()
    await session.refresh(deposit)
    return deposit


async def create_bank_deposit(
    session: AsyncSession,
    *,
    user_id: str,
    amount: int,
    currency: str | None,
    bank_name: str,
    settings: Settings,
    idempotency: IdempotentRequest,
) -> Transaction:
    """A sandbox bank deposit: the simulated bank pays at once, so it completes at once."""
    if not settings.sandbox_mode:
        raise BankDepositsUnavailable(
            "Bank deposits exist only in sandbox mode; deposit from a saved card.",
            param="source",
        )
    wallet = await wallets.of_user(session, user_id=user_id)
    _check_terms(
        wallet, amount=amount, currency=currency, minimum=1, maximum=settings.donation_max_amount
    )
    deposit_id = await _new_deposit_id(session, idempotency=idempotency)
    [entry] = await ledger.append_journal(
        session, legs=[_deposit_leg(deposit_id, wallet.id, amount, wallet.currency, None, "bank")]
    )
    deposit = Transaction(
        id=deposit_id,
        kind="deposit",
        status="completed",
        wallet_id=wallet.id,
        amount=amount,
        currency=wallet.currency,
        description=f"Deposit from {bank_name}",
        source="bank",
        bank_name=bank_name,
        provider="sandbox",
        journal_id=entry.journal_id,
        completed_at=func.now(),
    )
    session.add(deposit)
    await session.flush()
    await session.refresh(deposit)
    return deposit


def _check_terms(
    wallet: Wallet, *, amount: int, currency: str | None, minimum: int, maximum: int
) -> None:
    if currency is not None and currency != wallet.currency:
        raise InvalidInput(
            f"Your wallet holds {wallet.currency}: deposit in {wallet.currency}.",
            code="currency_mismatch",
            param="currency",
        )
    if amount < minimum:
        raise InvalidInput(
            f"The smallest deposit in {wallet.currency} is "
            f"{Money(minimum, wallet.currency).format()} ({minimum} minor units).",
            code="amount_too_small",
            param="amount",
        )
    if amount > maximum:
        raise InvalidInput(
            f"The largest deposit is {maximum} minor units.",
            code="amount_too_large",
            param="amount",
        )


async def _new_deposit_id(session: AsyncSession, *, idempotency: IdempotentRequest) -> str:
    """The deposit's id, derived from the Idempotency-Key, locked until the transaction ends."""
    deposit_id = derived_id("txn", seed=idempotency.seed)
    await _lock(session, deposit_id)
    # A derived id exists already only if its idempotency key expired and came back (or the
    # first attempt failed after Stripe took the money and its success event recorded it).
    if await session.get(Transaction, deposit_id) is not None:
        raise _key_reused()
    return deposit_id


def _key_reused() -> Conflict:
    return Conflict(
        "This Idempotency-Key was used for an earlier deposit; use a new key.",
        code="idempotency_key_reused",
        param="Idempotency-Key",
    )


async def _lock(session: AsyncSession, deposit_id: str) -> None:
    await session.execute(_LOCK_SQL, {"deposit_id": deposit_id})


def _card_description(card: Card | None) -> str:
    if card is None:
        return "Deposit from a card"
    return f"Deposit from {_BRANDS.get(card.brand, card.brand.title())} card ending {card.last4}"


def _deposit_leg(
    deposit_id: str,
    wallet_id: str,
    amount: int,
    currency: str,
    payment_intent_id: str | None,
    source: str,
) -> Leg:
    """The one external leg of a deposit. Its metadata names only Amply's and Stripe's ids:
    never a card detail, a bank's name or anything about the person."""
    return Leg(
        wallet_id,
        EntryType.DEPOSIT,
        amount,
        currency,
        {"transaction_id": deposit_id, "payment_intent": payment_intent_id, "source": source},
    )


# --- Reading ----------------------------------------------------------------------------------


async def get_deposit(session: AsyncSession, *, user_id: str, deposit_id: str) -> Transaction:
    wallet = await wallets.of_user(session, user_id=user_id)
    deposit = await session.get(Transaction, deposit_id)
    if deposit is None or deposit.kind != "deposit" or deposit.wallet_id != wallet.id:
        raise NotFound("No such deposit.", param="deposit_id")
    return deposit


async def list_deposits(
    session: AsyncSession,
    *,
    user_id: str,
    status: DepositStatus | None,
    starting_after: str | None,
    limit: int,
) -> Page[Transaction]:
    """The wallet's deposits, newest first."""
    wallet = await wallets.of_user(session, user_id=user_id)
    return await history.list_of_kind(
        session,
        wallet_id=wallet.id,
        kind=TransactionKind.DEPOSIT,
        status=status,
        starting_after=starting_after,
        limit=limit,
    )


async def ledger_entries(
    session: AsyncSession, *, deposits: Sequence[Transaction]
) -> dict[str, ledger.Entry]:
    """The ``deposit`` entry of each completed deposit, by deposit id."""
    journals = await ledger.get_journals(
        session, journal_ids=[d.journal_id for d in deposits if d.journal_id is not None]
    )
    result: dict[str, ledger.Entry] = {}
    for deposit in deposits:
        for entry in journals.get(deposit.journal_id or "", []):
            if entry.chain_id == deposit.wallet_id:
                result[deposit.id] = entry
    return result


# --- Effects of events ------------------------------------------------------------------------


async def find_for_payment(
    session: AsyncSession, *, payment_intent_id: str, deposit_id: str | None
) -> Transaction | None:
    """The deposit this PaymentIntent pays, locked for the rest of the transaction.

    ``deposit_id`` is what the PaymentIntent's metadata names: if the deposit is not found
    by its PaymentIntent, the request creating it may not have committed yet, so this waits
    for that request's lock and looks again.
    """
    deposit = await _locked_deposit(session, Transaction.payment_intent_id == payment_intent_id)
    if deposit is not None or deposit_id is None or not DEPOSIT_ID.match(deposit_id):
        return deposit
    await _lock(session, deposit_id)
    deposit = await _locked_deposit(session, Transaction.id == deposit_id)
    if deposit is not None and deposit.payment_intent_id != payment_intent_id:
        logger.warning(
            "PaymentIntent %s names deposit %s, which is paid by %s: ignored",
            payment_intent_id,
            deposit_id,
            deposit.payment_intent_id,
        )
        return None
    return deposit


async def _locked_deposit(
    session: AsyncSession, condition: ColumnElement[bool]
) -> Transaction | None:
    deposit: Transaction | None = await session.scalar(
        select(Transaction)
        .where(condition, Transaction.kind == "deposit")
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return deposit


async def recover(
    session: AsyncSession,
    *,
    deposit_id: str,
    intent: PaymentIntentState,
    gateway: PaymentGateway,
) -> Transaction | None:
    """Record, as pending, a deposit whose PaymentIntent succeeded although the request that
    created it failed to commit (call with the deposit's lock held, after
    :func:`find_for_payment` found nothing). Only a PaymentIntent that names, in its
    metadata, a wallet whose Customer paid it, in the wallet's currency, is recorded.
    """
    if not DEPOSIT_ID.match(deposit_id):
        return None
    if await session.get(Transaction, deposit_id) is not None:
        return None  # another PaymentIntent pays it
    wallet_id = intent.wallet_id
    wallet = await session.get(Wallet, wallet_id) if wallet_id is not None else None
    payment_intent_id, customer_id = intent.id, intent.customer_id
    amount, currency = intent.amount_received or intent.amount, intent.currency
    if (
        wallet is None
        or payment_intent_id is None
        or customer_id is None
        or customer_id != gateway.customer_of(wallet_id=wallet.id, stored=wallet.stripe_customer_id)
        or amount is None
        or amount <= 0
        or currency is None
        or currency.upper() != wallet.currency
    ):
        logger.error(
            "PaymentIntent %s names deposit %s, which does not exist, and cannot be recorded "
            "for wallet %s: not credited",
            payment_intent_id,
            deposit_id,
            wallet_id,
        )
        return None
    payment_method_id = intent.payment_method_id
    card: Card | None = await session.scalar(
        select(Card).where(Card.wallet_id == wallet.id, Card.payment_method_id == payment_method_id)
    )
    logger.warning("recording deposit %s from its PaymentIntent %s", deposit_id, payment_intent_id)
    deposit = Transaction(
        id=deposit_id,
        kind="deposit",
        status="pending",
        wallet_id=wallet.id,
        card_id=card.id if card else None,
        amount=amount,
        currency=wallet.currency,
        description=_card_description(card),
        source="card",
        provider=gateway.provider,
        payment_intent_id=payment_intent_id,
    )
    session.add(deposit)
    await session.flush()
    return deposit


async def complete(session: AsyncSession, deposit: Transaction) -> bool:
    """Credit the wallet (once): the deposit's ``deposit`` leg, and the deposit completed."""
    if deposit.status == "completed":
        return False
    assert deposit.source is not None
    owes = await deposit_reversals.prepare_repayment(session, wallet_id=deposit.wallet_id)
    [entry] = await ledger.append_journal(
        session,
        legs=[
            _deposit_leg(
                deposit.id,
                deposit.wallet_id,
                deposit.amount,
                deposit.currency,
                deposit.payment_intent_id,
                deposit.source,
            )
        ],
    )
    deposit.journal_id = entry.journal_id
    deposit.status = TransactionStatus.COMPLETED
    deposit.completed_at = func.now()
    deposit.failure_code = deposit.failure_message = None
    await session.flush()
    if owes:
        # A restricted wallet: the new money repays its shortfall first (deposit_reversals).
        await deposit_reversals.repay_shortfall(session, deposit)
    return True


async def mark_failed(
    session: AsyncSession, deposit: Transaction, *, code: str | None, message: str | None
) -> bool:
    """A pending deposit's payment failed; anything else is left as it is."""
    if deposit.status != "pending":
        return False
    deposit.status = TransactionStatus.FAILED
    deposit.failure_code = (code or "payment_failed")[:100]
    deposit.failure_message = (message or "The payment failed.")[:500]
    await session.flush()
    return True
