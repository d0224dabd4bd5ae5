"""Money requests: ask another user for an amount; they pay (a transfer through the same risk
rules), or decline; the requester may cancel; unpaid requests expire.

A request leaves ``pending`` once, for good (a database guard). While a transfer paying it
awaits the payer's confirmation, the request stays ``pending`` but cannot be paid again,
declined or cancelled; the transfer's confirmation marks it ``paid``, and its cancellation or
expiry makes it payable again. At most one transfer per request is ever awaiting confirmation
or completed (a unique index), so paying twice pays once. A held payment whose hold ran out is
marked expired by whoever next acts on the request (under its locks), not only by
housekeeping, so the request is payable again the moment the hold runs out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final, Literal

from sqlalchemy import or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import Conflict, InvalidInput, NotFound
from amply.kit.ids import generate_id
from amply.kit.pagination import Page, keyset_page
from amply.kit.settings import Settings
from amply.models import MoneyRequest, Transaction, Wallet
from amply.models.enums import MoneyRequestStatus, TransactionStatus, TransferStatus
from amply.models.transactions import TransferView
from amply.wallets import deposit_reversals, transfers
from amply.wallets import service as wallets

Role = Literal["payer", "requester"]


class RequestNotPending(Conflict):
    default_code = "request_not_pending"


class RequestExpired(Conflict):
    """Past its time: marked expired (a change kept although the request fails)."""

    default_code = "request_expired"
    keeps_changes = True


class PaymentInProgress(Conflict):
    default_code = "request_payment_in_progress"


def effective_status(request: MoneyRequest, *, at: datetime | None = None) -> MoneyRequestStatus:
    if request.status == "pending" and request.expires_at <= (at or transfers.now()):
        return MoneyRequestStatus.EXPIRED
    return MoneyRequestStatus(request.status)


async def create_request(
    session: AsyncSession,
    *,
    requester: Wallet,
    payer_username: str,
    amount: int,
    currency: str | None,
    description: str,
    settings: Settings,
) -> MoneyRequest:
    payer = await wallets.of_username(session, username=payer_username, param="payer")
    if payer.id == requester.id:
        raise InvalidInput(
            "You cannot request money from yourself.", code="self_request", param="payer"
        )
    if currency is not None and currency != requester.currency:
        raise InvalidInput(
            f"Your wallet holds {requester.currency}; this request asked for {currency}.",
            code="currency_mismatch",
            param="currency",
        )
    if payer.currency != requester.currency:
        raise InvalidInput(
            f"The payer's wallet holds {payer.currency}, yours {requester.currency}.",
            code="currency_mismatch",
            param="payer",
        )
    request = MoneyRequest(
        id=generate_id("req"),
        requester_wallet_id=requester.id,
        payer_wallet_id=payer.id,
        amount=amount,
        currency=requester.currency,
        description=description,
        status=MoneyRequestStatus.PENDING,
        expires_at=transfers.now() + timedelta(seconds=settings.money_request_lifetime_seconds),
    )
    session.add(request)
    await session.flush()
    return request


async def visible_to(session: AsyncSession, *, wallet: Wallet, request_id: str) -> MoneyRequest:
    """A request the wallet made or was asked to pay; 404 for anyone else."""
    request = await session.get(MoneyRequest, request_id)
    if request is None or wallet.id not in (request.requester_wallet_id, request.payer_wallet_id):
        raise NotFound("No such money request.", code="request_not_found", param="request_id")
    return request


async def payment_of(
    session: AsyncSession, *, request: MoneyRequest, at: datetime | None = None
) -> Transaction | None:
    """The transfer paying the request: awaiting confirmation (hold not expired at ``at``,
    by default now) or completed."""
    payment = await session.scalar(
        select(Transaction).where(
            Transaction.money_request_id == request.id,
            Transaction.status.in_((transfers.PENDING, "completed")),
        )
    )
    if (
        payment is not None
        and transfers.effective_status(TransferView.of(payment), at=at) == TransferStatus.EXPIRED
    ):
        return None
    return payment


async def _expire_stale_payment(
    session: AsyncSession, *, request: MoneyRequest, at: datetime
) -> None:
    """Mark the request's held payment expired if its hold ran out by ``at``: until then it
    still holds the request's one payment slot (the unique index counts it), whatever the
    hold's time says. Housekeeping does the same, later; the status guard makes the two
    agree (a row already expired is not touched again)."""
    await session.execute(
        update(Transaction)
        .where(
            Transaction.money_request_id == request.id,
            Transaction.status == transfers.PENDING,
            Transaction.hold_expires_at <= at,
        )
        .values(status=TransactionStatus.EXPIRED)
        .execution_options(synchronize_session="fetch")
    )


async def payments_of(
    session: AsyncSession, *, requests: Sequence[MoneyRequest]
) -> dict[str, Transaction]:
    """Each request's payment (awaiting confirmation, hold not expired, or completed)."""
    if not requests:
        return {}
    rows = await session.scalars(
        select(Transaction).where(
            Transaction.money_request_id.in_([request.id for request in requests]),
            Transaction.status.in_((transfers.PENDING, "completed")),
        )
    )
    return {
        payment.money_request_id: payment
        for payment in rows
        if payment.money_request_id
        and transfers.effective_status(TransferView.of(payment)) != TransferStatus.EXPIRED
    }


async def _locked(
    session: AsyncSession, *, wallet: Wallet, request_id: str, role: Role, action: str
) -> MoneyRequest:
    """The request, under its parties' wallet locks and its row lock, still pending, with no
    payment under way; expired ones are marked expired and refused."""
    request = await visible_to(session, wallet=wallet, request_id=request_id)
    own = request.payer_wallet_id if role == "payer" else request.requester_wallet_id
    if own != wallet.id:
        verb = "pay or decline" if role == "payer" else "cancel"
        raise NotFound(
            f"Only the request's {role} may {verb} it.",
            code="request_not_found",
            param="request_id",
        )
    # Wallet locks before the row lock, as transfers take them: no deadlock with a confirm.
    await wallets.lock(session, request.requester_wallet_id, request.payer_wallet_id)
    locked = await session.get(
        MoneyRequest, request_id, with_for_update=True, populate_existing=True
    )
    assert locked is not None
    at = transfers.now()
    await _expire_stale_payment(session, request=locked, at=at)
    payment = await payment_of(session, request=locked, at=at)
    if locked.status != "pending":
        raise RequestNotPending(
            f"This request is {locked.status}; only a pending request can be {action}.",
            param="request_id",
        )
    if payment is not None:
        raise PaymentInProgress(
            "A transfer paying this request awaits the payer's confirmation: confirm or "
            "cancel it first.",
            param="request_id",
        )
    if effective_status(locked, at=at) == "expired":
        _resolve(locked, MoneyRequestStatus.EXPIRED)
        await session.flush()
        raise RequestExpired("This request expired.", param="request_id")
    return locked


def _resolve(request: MoneyRequest, status: MoneyRequestStatus) -> None:
    request.status = status
    request.resolved_at = transfers.now()


async def pay(
    session: AsyncSession, *, payer: Wallet, request_id: str, settings: Settings
) -> tuple[MoneyRequest, Transaction]:
    """Pay a request with a transfer under the usual risk rules: completed (the request is
    paid), held for the payer's confirmation, or blocked (the request stays payable)."""
    await deposit_reversals.check_not_restricted(session, wallet_id=payer.id)
    request = await _locked(
        session, wallet=payer, request_id=request_id, role="payer", action="paid"
    )
    requester = await session.get(Wallet, request.requester_wallet_id)
    assert requester is not None
    username = (await wallets.usernames(session, wallet_ids=[requester.id]))[requester.id]
    transfer = await transfers.create_transfer(
        session,
        sender=payer,
        recipient_username=username,
        amount=request.amount,
        currency=request.currency,
        description=request.description,
        settings=settings,
        money_request=request,
    )
    return request, transfer  # (a completed transfer marked the same object paid)


async def decline(session: AsyncSession, *, payer: Wallet, request_id: str) -> MoneyRequest:
    request = await _locked(
        session, wallet=payer, request_id=request_id, role="payer", action="declined"
    )
    _resolve(request, MoneyRequestStatus.DECLINED)
    await session.flush()
    return request


async def cancel(session: AsyncSession, *, requester: Wallet, request_id: str) -> MoneyRequest:
    request = await _locked(
        session, wallet=requester, request_id=request_id, role="requester", action="cancelled"
    )
    _resolve(request, MoneyRequestStatus.CANCELLED)
    await session.flush()
    return request


async def list_requests(
    session: AsyncSession,
    *,
    wallet: Wallet,
    role: Role | None,
    status: str | None,
    starting_after: str | None,
    limit: int,
) -> Page[MoneyRequest]:
    """Requests the wallet received (role payer), made (requester), or both; newest first."""
    statement = select(MoneyRequest)
    if role == "payer":
        statement = statement.where(MoneyRequest.payer_wallet_id == wallet.id)
    elif role == "requester":
        statement = statement.where(MoneyRequest.requester_wallet_id == wallet.id)
    else:
        statement = statement.where(
            or_(
                MoneyRequest.payer_wallet_id == wallet.id,
                MoneyRequest.requester_wallet_id == wallet.id,
            )
        )
    if status == "expired":
        statement = statement.where(
            or_(
                MoneyRequest.status == "expired",
                (MoneyRequest.status == "pending") & (MoneyRequest.expires_at <= transfers.now()),
            )
        )
    elif status == "pending":
        statement = statement.where(
            MoneyRequest.status == "pending", MoneyRequest.expires_at > transfers.now()
        )
    elif status is not None:
        statement = statement.where(MoneyRequest.status == status)
    page: Page[MoneyRequest] = await keyset_page(
        session,
        statement,
        key=(MoneyRequest.created_at, MoneyRequest.id),
        id_column=MoneyRequest.id,
        starting_after=starting_after,
        limit=limit,
        descending=True,
    )
    return page


# Requests with a payment awaiting confirmation stay pending: the payment decides them.
_EXPIRE_SQL: Final = text("""
    UPDATE money_requests AS r SET status = 'expired', resolved_at = clock_timestamp()
     WHERE r.status = 'pending' AND r.expires_at <= clock_timestamp()
       AND NOT EXISTS (
           SELECT FROM transactions t
            WHERE t.money_request_id = r.id AND t.status = 'pending_confirmation'
              AND t.hold_expires_at > clock_timestamp())
""")


async def expire_requests(session: AsyncSession) -> int:
    """Mark unpaid requests past their time expired (housekeeping); how many."""
    result = await session.execute(_EXPIRE_SQL)
    return int(getattr(result, "rowcount", 0) or 0)
