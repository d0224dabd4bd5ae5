"""Wallets: one per user, opened at sign-up, whose balance is its ledger chain's.

The wallet's id is its chain's id. Its *balance* is the chain's ``balance_after`` in the
wallet's currency; the money *held* is what its transfers awaiting confirmation have set
aside (until they are confirmed, cancelled or expire); what it can spend is the difference.
Code that spends takes the wallet's chain lock first (:func:`lock`), so two requests never
spend the same money, and the ledger refuses any entry that would take a wallet below zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import InsufficientFunds, NotFound
from amply.kit.ids import generate_id
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.ledger.service import Leg
from amply.models import Transaction, User, Wallet
from amply.models.enums import ChainKind, EntryType

# The chain's last balance in the wallet's currency, and what its transfers awaiting
# confirmation hold: holds past their expiry no longer count, whether or not housekeeping
# has marked them yet.
_BALANCE_SQL: Final = text("""
    SELECT (SELECT balance_after FROM ledger_entries
             WHERE chain_id = :wallet_id AND currency = :currency
             ORDER BY seq DESC LIMIT 1) AS balance,
           (SELECT sum(amount) FROM transactions
             WHERE wallet_id = :wallet_id AND status = 'pending_confirmation'
               AND hold_expires_at > clock_timestamp()) AS held
""")


@dataclass(frozen=True, slots=True)
class Balance:
    """A wallet's money in minor units: ``available`` = ``balance`` - ``held``."""

    currency: str
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


async def open_wallet(session: AsyncSession, *, user: User, settings: Settings) -> Wallet:
    """The new user's wallet and its chain; in demo mode, credited with the welcome bonus."""
    wallet = Wallet(id=generate_id("wal"), user_id=user.id, currency=settings.wallet_currency)
    await ledger.create_chain(session, chain_id=wallet.id, kind=ChainKind.WALLET)
    session.add(wallet)
    await session.flush()
    if settings.demo:
        await _credit_welcome_bonus(session, wallet=wallet, amount=settings.welcome_bonus_amount)
    return wallet


async def _credit_welcome_bonus(session: AsyncSession, *, wallet: Wallet, amount: int) -> None:
    # A balanced journal: the promotions chain records what Amply gives away. That chain is
    # public, so it never names the wallet; the journal id links the legs for its owner.
    transaction_id = generate_id("txn")
    reference = {"transaction_id": transaction_id}
    entries = await ledger.append_journal(
        session,
        legs=[
            Leg(wallet.id, EntryType.WELCOME_BONUS, amount, wallet.currency, reference),
            Leg(
                ledger.PLATFORM_PROMOTIONS_CHAIN,
                EntryType.PROMOTION_GRANTED,
                -amount,
                wallet.currency,
                reference,
            ),
        ],
    )
    session.add(
        Transaction(
            id=transaction_id,
            kind="welcome_bonus",
            status="completed",
            wallet_id=wallet.id,
            amount=amount,
            currency=wallet.currency,
            description="Welcome bonus",
            journal_id=entries[0].journal_id,
            completed_at=datetime.now(UTC),
        )
    )
    await session.flush()


async def of_user(session: AsyncSession, *, user_id: str) -> Wallet:
    wallet = await session.scalar(select(Wallet).where(Wallet.user_id == user_id))
    if wallet is None:  # the database guarantees every user one (users_have_wallets)
        raise NotFound("You have no wallet.", code="wallet_missing")
    return wallet


async def of_username(session: AsyncSession, *, username: str, param: str) -> Wallet:
    """The wallet of the user with this username (case-insensitive), or 404."""
    wallet = await session.scalar(
        select(Wallet)
        .join(User, User.id == Wallet.user_id)
        .where(func.lower(User.username) == username.lower())
    )
    if wallet is None:
        raise NotFound(f"No user is called {username!r}.", code="user_not_found", param=param)
    return wallet


async def lock(session: AsyncSession, *wallet_ids: str) -> None:
    """Take the chain locks of these wallets (in id order) until the transaction ends."""
    await ledger.lock_chains(session, chain_ids=list(wallet_ids))


async def balance_of(session: AsyncSession, *, wallet: Wallet) -> Balance:
    """The wallet's balance, held and available amounts, in its currency (one statement)."""
    row = (
        await session.execute(_BALANCE_SQL, {"wallet_id": wallet.id, "currency": wallet.currency})
    ).one()
    return Balance(currency=wallet.currency, balance=row.balance or 0, held=int(row.held or 0))


async def require_available(
    session: AsyncSession, *, wallet: Wallet, amount: int, releasing: int = 0
) -> Balance:
    """Refuse (422) unless ``amount`` is available, counting ``releasing`` held money as free
    (a confirmed transfer spends its own hold). Call with the wallet's lock held."""
    balance = await balance_of(session, wallet=wallet)
    if amount > balance.available + releasing:
        raise InsufficientFunds(
            f"Your available balance is {balance.available + releasing} {balance.currency} "
            f"(minor units); this needs {amount}.",
            param="amount",
        )
    return balance


async def usernames(session: AsyncSession, *, wallet_ids: Iterable[str]) -> dict[str, str]:
    """The username of each wallet's owner."""
    wanted = set(wallet_ids)
    if not wanted:
        return {}
    rows = await session.execute(
        select(Wallet.id, User.username)
        .join(User, User.id == Wallet.user_id)
        .where(Wallet.id.in_(wanted))
    )
    return {row[0]: row[1] for row in rows}
