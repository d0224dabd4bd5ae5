"""Saved cards: added through a SetupIntent, listed, made the default, removed.

A card is saved from a SetupIntent that succeeded for the wallet's Customer (Stripe's on the
platform account, or the sandbox's): by ``POST /v1/cards`` naming the SetupIntent, or by the
``setup_intent.succeeded`` event (Stripe's webhook, or the sandbox's endpoint), whichever
comes first; the other finds the card saved. Only the provider's payment method id, the
brand, the last four digits and the expiry are kept: never a card number.

Every change to a wallet's cards holds the wallet's card lock (a transaction-level advisory
lock) and reads the cards afresh under it, so "the first card becomes the default" and "the
newest remaining card becomes the default" hold under concurrent requests, and the
database's one-default-per-wallet index is never what refuses a request.

Cards belong to the mode they were saved in: with Stripe keys only Stripe's cards are seen,
in the sandbox only the sandbox's (a sandbox card cannot be charged by Stripe).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import UnitOfWork
from amply.kit.errors import Conflict, InvalidInput, NotFound, PaymentProviderError
from amply.kit.ids import generate_id
from amply.kit.pagination import Page, keyset_page
from amply.models import Card, Wallet
from amply.payments.gateway import (
    CardDetails,
    CreatedSetupIntent,
    PaymentGateway,
    SetupIntentState,
)
from amply.wallets import service as wallets

logger = logging.getLogger(__name__)

_LOCK_SQL: Final = text(
    "SELECT pg_advisory_xact_lock(hashtext('amply:cards'), hashtext(:wallet_id))"
)
_LAST4: Final = re.compile(r"^[0-9]{4}$")
_PAYMENT_METHOD: Final = re.compile(r"^pm_[0-9A-Za-z_]{1,100}$")


@dataclass(frozen=True, slots=True)
class AddedCard:
    card: Card
    created: bool  # False: the card was saved before (by an earlier call or the event)


async def lock(session: AsyncSession, *, wallet_id: str) -> None:
    """Hold the wallet's card lock until the transaction ends."""
    await session.execute(_LOCK_SQL, {"wallet_id": wallet_id})


# --- Customers and SetupIntents ---------------------------------------------------------------


async def ensure_customer(unit: UnitOfWork, *, wallet: Wallet, gateway: PaymentGateway) -> str:
    """The wallet's Customer, created (and, at Stripe, stored on the wallet) if it has none.

    Call between steps (no transaction open): the Customer is created outside any
    transaction, then stored in a short step of its own."""
    customer_id = gateway.customer_of(wallet_id=wallet.id, stored=wallet.stripe_customer_id)
    if customer_id is not None:
        return customer_id
    created = await unit.outside(lambda: gateway.create_customer(wallet_id=wallet.id))
    async with unit.step() as session:
        # Stored once. A concurrent request got the same Customer (Stripe's idempotency key
        # is derived from the wallet) and finds the column set: both use what the row holds.
        await session.execute(
            update(Wallet)
            .where(Wallet.id == wallet.id, Wallet.stripe_customer_id.is_(None))
            .values(stripe_customer_id=created)
        )
        await session.refresh(wallet, ["stripe_customer_id"])
    assert wallet.stripe_customer_id is not None
    return wallet.stripe_customer_id


async def create_setup_intent(
    unit: UnitOfWork, *, user_id: str, gateway: PaymentGateway
) -> CreatedSetupIntent:
    """A SetupIntent (off-session use, cards only) for the user's wallet's Customer: the
    wallet read in a short step, then Stripe asked with no transaction open."""
    async with unit.step() as session:
        wallet = await wallets.of_user(session, user_id=user_id)
    customer_id = await ensure_customer(unit, wallet=wallet, gateway=gateway)
    return await unit.outside(
        lambda: gateway.create_setup_intent(customer_id=customer_id, wallet_id=wallet.id)
    )


# --- Adding -----------------------------------------------------------------------------------


async def add_card(
    unit: UnitOfWork, *, user_id: str, setup_intent_id: str, gateway: PaymentGateway
) -> AddedCard:
    """Save the card of a SetupIntent that succeeded for this wallet (once: the same
    SetupIntent, or the same payment method, gives the card saved before).

    Three steps: the wallet and what is saved already; Stripe asked about the SetupIntent
    and its card with no transaction open and no lock held; the card saved under the
    wallet's card lock, after looking again (the ``setup_intent.succeeded`` event may have
    saved it meanwhile)."""
    async with unit.step() as session:
        wallet = await wallets.of_user(session, user_id=user_id)
        saved = await _saved(session, setup_intent_id=setup_intent_id)
        if saved is not None:
            return AddedCard(_already_saved(saved, wallet=wallet, gateway=gateway), created=False)
    customer_id = gateway.customer_of(wallet_id=wallet.id, stored=wallet.stripe_customer_id)
    if customer_id is None:  # no Customer yet: no SetupIntent can be this wallet's
        raise no_such_setup_intent()
    intent, details = await unit.outside(
        lambda: _succeeded_setup_intent(setup_intent_id, customer_id=customer_id, gateway=gateway)
    )
    async with unit.step() as session:
        await lock(session, wallet_id=wallet.id)
        saved = await _saved(session, setup_intent_id=setup_intent_id)
        if saved is None:
            saved = await _saved(session, payment_method_id=intent.payment_method_id)
        if saved is not None:
            return AddedCard(_already_saved(saved, wallet=wallet, gateway=gateway), created=False)
        card = await _save(session, wallet=wallet, intent=intent, details=details, gateway=gateway)
    return AddedCard(card, created=True)


async def _succeeded_setup_intent(
    setup_intent_id: str, *, customer_id: str, gateway: PaymentGateway
) -> tuple[SetupIntentState, CardDetails]:
    """The SetupIntent, if it succeeded for ``customer_id``, and its card's details."""
    intent = await gateway.retrieve_setup_intent(setup_intent_id=setup_intent_id)
    if intent.customer_id != customer_id:
        raise no_such_setup_intent()
    if intent.status != "succeeded" or intent.payment_method_id is None:
        raise Conflict(
            f"This SetupIntent has not succeeded (it is {intent.status}): confirm it with "
            "the card first (Stripe.js, or in the sandbox "
            "POST /v1/sandbox/setup-intents/{id}/succeed).",
            code="setup_intent_not_succeeded",
            param="setup_intent_id",
        )
    return intent, await gateway.retrieve_card(payment_method_id=intent.payment_method_id)


async def save_from_setup_intent(
    session: AsyncSession, *, intent: SetupIntentState, gateway: PaymentGateway
) -> Card | None:
    """``setup_intent.succeeded``: save the card if the SetupIntent is one of a wallet's
    (named in its metadata, for that wallet's Customer) and no card holds it yet."""
    if intent.status != "succeeded" or intent.payment_method_id is None:
        return None
    wallet = await session.get(Wallet, intent.wallet_id) if intent.wallet_id else None
    if wallet is None:
        return None
    await lock(session, wallet_id=wallet.id)
    customer_id = gateway.customer_of(wallet_id=wallet.id, stored=wallet.stripe_customer_id)
    if customer_id is None or intent.customer_id != customer_id:
        logger.warning(
            "SetupIntent %s names wallet %s but Customer %s: ignored",
            intent.setup_intent_id,
            wallet.id,
            intent.customer_id,
        )
        return None
    if await _saved(session, setup_intent_id=intent.setup_intent_id) is not None:
        return None
    if await _saved(session, payment_method_id=intent.payment_method_id) is not None:
        return None
    details = await gateway.retrieve_card(payment_method_id=intent.payment_method_id)
    return await _save(session, wallet=wallet, intent=intent, details=details, gateway=gateway)


async def saved_from(session: AsyncSession, *, setup_intent_id: str) -> Card | None:
    """The card saved from this SetupIntent, if any (removed or not, whoever's)."""
    return await _saved(session, setup_intent_id=setup_intent_id)


async def _saved(
    session: AsyncSession,
    *,
    setup_intent_id: str | None = None,
    payment_method_id: str | None = None,
) -> Card | None:
    statement = select(Card).execution_options(populate_existing=True)
    if setup_intent_id is not None:
        statement = statement.where(Card.setup_intent_id == setup_intent_id)
    else:
        statement = statement.where(Card.payment_method_id == payment_method_id)
    card: Card | None = await session.scalar(statement)
    return card


def _already_saved(card: Card, *, wallet: Wallet, gateway: PaymentGateway) -> Card:
    if card.wallet_id != wallet.id or card.provider != gateway.provider:
        raise no_such_setup_intent()
    if card.removed_at is not None:
        raise Conflict(
            "The card of this SetupIntent was removed; to use it again, add it with a new "
            "SetupIntent.",
            code="card_removed",
            param="setup_intent_id",
        )
    return card


async def _save(
    session: AsyncSession,
    *,
    wallet: Wallet,
    intent: SetupIntentState,
    details: CardDetails,
    gateway: PaymentGateway,
) -> Card:
    assert intent.payment_method_id is not None
    _check_storable(details, payment_method_id=intent.payment_method_id)
    has_default = await session.scalar(
        select(Card.id).where(
            Card.wallet_id == wallet.id, Card.is_default, Card.provider == gateway.provider
        )
    )
    if has_default is None:
        await _clear_default(session, wallet_id=wallet.id)  # another mode's card, if any
    card = Card(
        id=generate_id("card"),
        wallet_id=wallet.id,
        provider=gateway.provider,
        payment_method_id=intent.payment_method_id,
        setup_intent_id=intent.setup_intent_id,
        brand=details.brand,
        last4=details.last4,
        exp_month=details.exp_month,
        exp_year=details.exp_year,
        is_default=has_default is None,
    )
    session.add(card)
    await session.flush()
    await session.refresh(card)
    return card


def _check_storable(details: CardDetails, *, payment_method_id: str) -> None:
    """What the provider said fits the cards table (which has no room for anything else)."""
    if not (
        _PAYMENT_METHOD.match(payment_method_id)
        and 1 <= len(details.brand) <= 30
        and _LAST4.match(details.last4)
        and 1 <= details.exp_month <= 12
        and 2000 <= details.exp_year <= 2200
    ):
        logger.error("payment method %s has card details Amply cannot store", payment_method_id)
        raise PaymentProviderError("The payment provider described this card unexpectedly.")


def no_such_setup_intent() -> NotFound:
    return NotFound("No such SetupIntent.", param="setup_intent_id")


# --- Reading, default, removal ----------------------------------------------------------------


def _active(wallet: Wallet, gateway: PaymentGateway) -> list[ColumnElement[bool]]:
    return [
        Card.wallet_id == wallet.id,
        Card.removed_at.is_(None),
        Card.provider == gateway.provider,
    ]


async def list_cards(
    session: AsyncSession,
    *,
    user_id: str,
    gateway: PaymentGateway,
    starting_after: str | None,
    limit: int,
) -> Page[Card]:
    """The wallet's cards: the default first, then the newest first."""
    wallet = await wallets.of_user(session, user_id=user_id)
    return await keyset_page(
        session,
        select(Card).where(*_active(wallet, gateway)),
        key=[Card.is_default, Card.created_at, Card.id],
        id_column=Card.id,
        starting_after=starting_after,
        limit=limit,
        descending=True,
    )


async def get_card(
    session: AsyncSession, *, user_id: str, card_id: str, gateway: PaymentGateway
) -> Card:
    wallet = await wallets.of_user(session, user_id=user_id)
    return await active_card(session, wallet=wallet, card_id=card_id, gateway=gateway)


async def active_card(
    session: AsyncSession, *, wallet: Wallet, card_id: str, gateway: PaymentGateway
) -> Card:
    """One of the wallet's cards (not removed, of this mode), or 404."""
    card: Card | None = await session.scalar(
        select(Card)
        .where(Card.id == card_id, *_active(wallet, gateway))
        .execution_options(populate_existing=True)
    )
    if card is None:
        raise NotFound("No such card.", param="card_id")
    return card


async def card_for_deposit(
    session: AsyncSession, *, wallet: Wallet, card_id: str | None, gateway: PaymentGateway
) -> Card:
    """The card named, or the wallet's default card."""
    if card_id is not None:
        return await active_card(session, wallet=wallet, card_id=card_id, gateway=gateway)
    card: Card | None = await session.scalar(
        select(Card).where(*_active(wallet, gateway), Card.is_default)
    )
    if card is None:
        raise InvalidInput(
            "You have no default card: add one (POST /v1/cards) or name one in card_id.",
            code="no_default_card",
            param="card_id",
        )
    return card


async def set_default(
    session: AsyncSession, *, user_id: str, card_id: str, gateway: PaymentGateway
) -> Card:
    """Make the card the wallet's default (a no-op if it is already)."""
    wallet = await wallets.of_user(session, user_id=user_id)
    await lock(session, wallet_id=wallet.id)
    card = await active_card(session, wallet=wallet, card_id=card_id, gateway=gateway)
    if not card.is_default:
        await _clear_default(session, wallet_id=wallet.id)
        card.is_default = True
        await session.flush()
    return card


async def remove_card(
    unit: UnitOfWork, *, user_id: str, card_id: str, gateway: PaymentGateway
) -> Card:
    """Forget the card: detached at the provider, kept here as removed (deposits made with it
    still name it). If it was the default, the newest remaining card becomes the default.

    Three steps: the card found; detached at Stripe with no transaction open and no lock
    held (a deposit charging it meanwhile is either charged first or refused by Stripe);
    marked removed under the wallet's card lock, after reading it afresh. If Stripe fails,
    the card stays as it was; a retry detaches it again (no error at Stripe)."""
    async with unit.step() as session:
        wallet = await wallets.of_user(session, user_id=user_id)
        card = await active_card(session, wallet=wallet, card_id=card_id, gateway=gateway)
    await unit.outside(
        lambda: gateway.detach_payment_method(payment_method_id=card.payment_method_id)
    )
    async with unit.step() as session:
        await lock(session, wallet_id=wallet.id)
        card = await _card_of(session, wallet=wallet, card_id=card_id, gateway=gateway)
        if card.removed_at is not None:  # a concurrent request removed it first
            return card
        was_default = card.is_default
        card.is_default = False
        card.removed_at = func.now()
        await session.flush()
        if was_default:
            newest: Card | None = await session.scalar(
                select(Card)
                .where(*_active(wallet, gateway))
                .order_by(Card.created_at.desc(), Card.id.desc())
                .limit(1)
            )
            if newest is not None:
                newest.is_default = True
                await session.flush()
        await session.refresh(card)
    return card


async def _card_of(
    session: AsyncSession, *, wallet: Wallet, card_id: str, gateway: PaymentGateway
) -> Card:
    """The wallet's card in this mode, removed or not, read afresh."""
    card: Card | None = await session.scalar(
        select(Card)
        .where(Card.id == card_id, Card.wallet_id == wallet.id, Card.provider == gateway.provider)
        .execution_options(populate_existing=True)
    )
    if card is None:
        raise NotFound("No such card.", param="card_id")
    return card


async def _clear_default(session: AsyncSession, *, wallet_id: str) -> None:
    await session.execute(
        update(Card)
        .where(Card.wallet_id == wallet_id, Card.is_default)
        .values(is_default=False)
        .execution_options(synchronize_session="fetch")
    )
