"""Transfers between wallets: risk-assessed, held for confirmation when risky, blocked by hard
limits, and completed as one balanced journal (``transfer_out`` on the sender's chain,
``transfer_in`` on the recipient's).

Every path that moves or holds a sender's money first takes both wallets' chain locks (in id
order, until commit), then checks what is available: concurrent transfers of one sender are
decided one after another, and the ledger refuses any entry that would still overdraw.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import Conflict, InvalidInput, NotFound
from amply.kit.ids import generate_id
from amply.kit.pagination import Page
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.ledger.service import Leg
from amply.models import MoneyRequest, Transaction, Wallet
from amply.models.enums import (
    EntryType,
    MoneyRequestStatus,
    TransactionKind,
    TransactionStatus,
    TransferStatus,
)
from amply.models.transactions import TransferView
from amply.wallets import deposit_reversals, history, risk
from amply.wallets import service as wallets

PENDING: Final = TransactionStatus.PENDING_CONFIRMATION


class TransferNotPending(Conflict):
    default_code = "transfer_not_pending"


class TransferExpired(Conflict):
    """The hold ran out before the sender confirmed; the transfer is marked expired (a change
    kept although the request fails)."""

    default_code = "transfer_expired"
    keeps_changes = True


def now() -> datetime:
    return datetime.now(UTC)


def effective_status(transfer: TransferView, *, at: datetime | None = None) -> TransferStatus:
    """The status as the user sees it: a hold past its time has expired, even before
    housekeeping marks it so."""
    if (
        transfer.status == TransferStatus.PENDING_CONFIRMATION
        and transfer.hold_expires_at is not None
        and transfer.hold_expires_at <= (at or now())
    ):
        return TransferStatus.EXPIRED
    return transfer.status


async def create_transfer(
    session: AsyncSession,
    *,
    sender: Wallet,
    recipient_username: str,
    amount: int,
    currency: str | None,
    description: str,
    settings: Settings,
    money_request: MoneyRequest | None = None,
) -> Transaction:
    """Send ``amount`` to a user: completed at once, held for confirmation (with every risk
    rule that matched), or blocked by a hard limit. Refuses what the sender cannot afford."""
    recipient = await wallets.of_username(session, username=recipient_username, param="recipient")
    _check_parties(sender=sender, recipient=recipient, currency=currency)
    await wallets.lock(session, sender.id, recipient.id)
    await deposit_reversals.check_not_restricted(session, wallet_id=sender.id)
    await wallets.require_available(session, wallet=sender, amount=amount)
    transfer = Transaction(
        id=generate_id("txn"),
        kind=TransactionKind.TRANSFER,
        wallet_id=sender.id,
        counterparty_wallet_id=recipient.id,
        money_request_id=money_request.id if money_request else None,
        amount=amount,
        currency=sender.currency,
        description=description,
        risk_flags=[],
    )
    blocked = await risk.hard_limit_reason(session, sender=sender, amount=amount, settings=settings)
    if blocked is not None:
        transfer.status = TransactionStatus.BLOCKED
        transfer.blocked_reason = blocked
        session.add(transfer)
        await session.flush()
        return transfer
    flags = await risk.assess_transfer(
        session, sender=sender, recipient=recipient, amount=amount, settings=settings
    )
    if flags:
        transfer.status = PENDING
        transfer.risk_flags = [flag.as_json() for flag in flags]
        transfer.hold_expires_at = now() + timedelta(seconds=settings.transfer_hold_seconds)
        session.add(transfer)
        await session.flush()
        return transfer
    transfer.status = PENDING  # completed just below, through the one completion path
    transfer.hold_expires_at = None
    await _complete(session, transfer, created=True)
    return transfer


def _check_parties(*, sender: Wallet, recipient: Wallet, currency: str | None) -> None:
    if recipient.id == sender.id:
        raise InvalidInput(
            "You cannot send money to yourself.", code="self_transfer", param="recipient"
        )
    if currency is not None and currency != sender.currency:
        raise InvalidInput(
            f"Your wallet holds {sender.currency}; this transfer asked for {currency}.",
            code="currency_mismatch",
            param="currency",
        )
    if recipient.currency != sender.currency:
        raise InvalidInput(
            f"The recipient's wallet holds {recipient.currency}, yours {sender.currency}: "
            "transfers between currencies are not supported.",
            code="currency_mismatch",
            param="recipient",
        )


async def _complete(session: AsyncSession, transfer: Transaction, *, created: bool) -> None:
    """Move the money (one balanced journal) and mark the transfer completed. The caller holds
    both wallets' locks and has checked the sender can afford it."""
    recipient_wallet_id = TransferView.of(transfer).recipient_wallet_id
    reference = {"transaction_id": transfer.id}
    entries = await ledger.append_journal(
        session,
        legs=[
            Leg(
                transfer.wallet_id,
                EntryType.TRANSFER_OUT,
                -transfer.amount,
                transfer.currency,
                {**reference, "to": recipient_wallet_id},
            ),
            Leg(
                recipient_wallet_id,
                EntryType.TRANSFER_IN,
                transfer.amount,
                transfer.currency,
                {**reference, "from": transfer.wallet_id},
            ),
        ],
    )
    transfer.status = TransactionStatus.COMPLETED
    transfer.journal_id = entries[0].journal_id
    transfer.completed_at = now()
    if created:
        session.add(transfer)
    await session.flush()
    if transfer.money_request_id is not None:
        await _mark_request_paid(session, money_request_id=transfer.money_request_id)


async def _mark_request_paid(session: AsyncSession, *, money_request_id: str) -> None:
    request = await session.get(
        MoneyRequest, money_request_id, with_for_update=True, populate_existing=True
    )
    assert request is not None
    request.status = MoneyRequestStatus.PAID
    request.resolved_at = now()
    await session.flush()


async def sent_by(session: AsyncSession, *, sender: Wallet, transfer_id: str) -> Transaction:
    """One of the sender's transfers, or 404 (another user's is as missing as none)."""
    transfer = await session.get(Transaction, transfer_id)
    if (
        transfer is None
        or transfer.kind != TransactionKind.TRANSFER
        or transfer.wallet_id != sender.id
    ):
        raise NotFound("No such transfer.", code="transfer_not_found", param="transfer_id")
    return transfer


async def visible_to(session: AsyncSession, *, wallet: Wallet, transfer_id: str) -> Transaction:
    """A transfer its sender sent, or its recipient received (completed ones only: money held
    for confirmation is not the recipient's yet)."""
    transfer = await session.get(Transaction, transfer_id)
    if transfer is not None and transfer.kind == TransactionKind.TRANSFER:
        if transfer.wallet_id == wallet.id:
            return transfer
        if transfer.counterparty_wallet_id == wallet.id and transfer.status == "completed":
            return transfer
    raise NotFound("No such transfer.", code="transfer_not_found", param="transfer_id")


async def _locked_pending(
    session: AsyncSession, *, sender: Wallet, transfer_id: str, action: str
) -> Transaction:
    """The sender's transfer, under both wallets' locks and its row lock, still awaiting
    confirmation; an expired hold is marked expired and refused."""
    transfer = TransferView.of(await sent_by(session, sender=sender, transfer_id=transfer_id))
    await wallets.lock(session, transfer.sender_wallet_id, transfer.recipient_wallet_id)
    locked = await session.get(
        Transaction, transfer_id, with_for_update=True, populate_existing=True
    )
    assert locked is not None
    if locked.status != PENDING:
        raise TransferNotPending(
            f"This transfer is {locked.status}; only a transfer awaiting confirmation can be "
            f"{action}.",
            param="transfer_id",
        )
    if effective_status(TransferView.of(locked)) == TransferStatus.EXPIRED:
        locked.status = TransactionStatus.EXPIRED
        await session.flush()
        raise TransferExpired(
            "This transfer's hold expired before it was confirmed; nothing was sent. "
            "Send it again if you still mean to.",
            param="transfer_id",
        )
    return locked


async def confirm(session: AsyncSession, *, sender: Wallet, transfer_id: str) -> Transaction:
    """The sender confirms a held transfer: re-checked against the balance under the lock
    (its own hold counts as available), then completed."""
    transfer = await _locked_pending(
        session, sender=sender, transfer_id=transfer_id, action="confirmed"
    )
    await deposit_reversals.check_not_restricted(session, wallet_id=sender.id)
    await wallets.require_available(
        session, wallet=sender, amount=transfer.amount, releasing=transfer.amount
    )
    await _complete(session, transfer, created=False)
    return transfer


async def cancel(session: AsyncSession, *, sender: Wallet, transfer_id: str) -> Transaction:
    """The sender cancels a held transfer: its hold is released, nothing moves."""
    transfer = await _locked_pending(
        session, sender=sender, transfer_id=transfer_id, action="cancelled"
    )
    transfer.status = TransactionStatus.CANCELLED
    await session.flush()
    return transfer


async def list_transfers(
    session: AsyncSession,
    *,
    wallet: Wallet,
    status: str | None,
    starting_after: str | None,
    limit: int,
) -> Page[Transaction]:
    """The wallet's transfers, newest first: sent (any status) and received (completed)."""
    statement = select(Transaction).where(
        Transaction.kind == TransactionKind.TRANSFER,
        or_(
            Transaction.wallet_id == wallet.id,
            (Transaction.counterparty_wallet_id == wallet.id) & (Transaction.status == "completed"),
        ),
    )
    if status is not None:
        statement = statement.where(Transaction.status == status)
    return await history.newest_first(
        session, statement=statement, starting_after=starting_after, limit=limit
    )


_EXPIRE_HOLDS_SQL: Final = text("""
    UPDATE transactions SET status = 'expired'
     WHERE status = 'pending_confirmation' AND hold_expires_at <= clock_timestamp()
""")


async def expire_holds(session: AsyncSession) -> int:
    """Mark held transfers past their time expired (housekeeping); how many."""
    result = await session.execute(_EXPIRE_HOLDS_SQL)
    return int(getattr(result, "rowcount", 0) or 0)
