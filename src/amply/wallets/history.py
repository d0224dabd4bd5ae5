"""A wallet's history: every transaction that moved (or would have moved) its money, as its
user sees it, newest first, with filters and cursor pagination.

What each filter type means, from the wallet's side:

- ``sent``: transfers it sent (any status); ``received``: transfers it received (completed
  only: a held transfer is not the recipient's money yet);
- ``deposit``, ``withdrawal``, ``donation`` (gifts to organisations), ``bonus`` (welcome);
- ``fee``: withdrawals that paid a fee; ``request``: transfers that paid a money request.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, Select, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import NotFound
from amply.kit.pagination import Page, keyset_page
from amply.models import Transaction, Wallet
from amply.models.enums import TransactionKind, TransactionStatus

_KINDS: Final = {
    "deposit": TransactionKind.DEPOSIT,
    "withdrawal": TransactionKind.WITHDRAWAL,
    "donation": TransactionKind.DONATION,
    "bonus": TransactionKind.WELCOME_BONUS,
}


def _mine(wallet: Wallet) -> ColumnElement[bool]:
    return or_(
        Transaction.wallet_id == wallet.id,
        and_(
            Transaction.counterparty_wallet_id == wallet.id,
            Transaction.status == TransactionStatus.COMPLETED,
        ),
    )


def _of_type(wallet: Wallet, kind: str) -> ColumnElement[bool]:
    if kind == "sent":
        return and_(
            Transaction.kind == TransactionKind.TRANSFER, Transaction.wallet_id == wallet.id
        )
    if kind == "received":
        return Transaction.counterparty_wallet_id == wallet.id
    if kind == "fee":
        return and_(Transaction.kind == TransactionKind.WITHDRAWAL, Transaction.fee > 0)
    if kind == "request":
        return Transaction.money_request_id.is_not(None)
    if kind in _KINDS:
        return Transaction.kind == _KINDS[kind]
    return false()


def _with_status(status: str) -> ColumnElement[bool]:
    # A hold past its time is expired whether or not housekeeping has marked it yet.
    now = datetime.now(UTC)
    held = and_(Transaction.status == "pending_confirmation", Transaction.hold_expires_at <= now)
    if status == "expired":
        return or_(Transaction.status == "expired", held)
    if status == "pending_confirmation":
        return and_(Transaction.status == status, Transaction.hold_expires_at > now)
    return Transaction.status == status


async def list_history(
    session: AsyncSession,
    *,
    wallet: Wallet,
    types: Sequence[str] | None,
    status: str | None,
    created_gte: datetime | None,
    created_lt: datetime | None,
    starting_after: str | None,
    limit: int,
) -> Page[Transaction]:
    statement: Any = select(Transaction).where(_mine(wallet))
    if types:
        statement = statement.where(or_(*(_of_type(wallet, kind) for kind in types)))
    if status is not None:
        statement = statement.where(_with_status(status))
    if created_gte is not None:
        statement = statement.where(Transaction.created_at >= created_gte)
    if created_lt is not None:
        statement = statement.where(Transaction.created_at < created_lt)
    return await newest_first(
        session, statement=statement, starting_after=starting_after, limit=limit
    )


async def list_of_kind(
    session: AsyncSession,
    *,
    wallet_id: str,
    kind: TransactionKind,
    status: str | None,
    starting_after: str | None,
    limit: int,
) -> Page[Transaction]:
    """The wallet's transactions of one ``kind`` (only those in ``status``, if given), newest
    first."""
    statement = select(Transaction).where(
        Transaction.wallet_id == wallet_id, Transaction.kind == kind
    )
    if status is not None:
        statement = statement.where(Transaction.status == status)
    return await newest_first(
        session, statement=statement, starting_after=starting_after, limit=limit
    )


async def newest_first(
    session: AsyncSession,
    *,
    statement: Select[Transaction],
    starting_after: str | None,
    limit: int,
) -> Page[Transaction]:
    """A page of the wallet transactions ``statement`` selects, newest first."""
    page: Page[Transaction] = await keyset_page(
        session,
        statement,
        key=(Transaction.created_at, Transaction.id),
        id_column=Transaction.id,
        starting_after=starting_after,
        limit=limit,
        descending=True,
    )
    return page


async def get_item(session: AsyncSession, *, wallet: Wallet, transaction_id: str) -> Transaction:
    item = await session.scalar(
        select(Transaction).where(Transaction.id == transaction_id, _mine(wallet))
    )
    if item is None:
        raise NotFound("No such transaction.", code="transaction_not_found", param="transaction_id")
    return item
