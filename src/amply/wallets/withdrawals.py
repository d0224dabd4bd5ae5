"""Withdrawals: money leaves a wallet for the user's bank, paid out by a payout provider.

A withdrawal is ``standard`` (free) or ``instant`` (a fee of
``settings.instant_withdrawal_fee_basis_points`` of the amount, 1.5% by default, rounded
half up to the minor unit by :func:`amply.kit.money.fee_for`; no minimum, so an instant
withdrawal of up to 33 cents costs nothing at 1.5%). The wallet pays ``amount + fee``, all of
which must be available (the balance less what transfers awaiting confirmation hold).

Requesting one, in one database transaction:

1. the provider is asked whether it can pay out at all (before anything moves);
2. the wallet's chain (and, for a fee, the platform fees chain) is locked, in id order;
3. ``amount + fee`` must be available;
4. one journal debits the wallet: ``withdrawal`` -amount (the external leg: the money
   leaves Amply) and, with a fee, ``withdrawal_fee`` -fee on the wallet balanced by
   ``fee_collected`` +fee on ``plat_fees``;
5. the transaction is inserted ``pending`` naming that journal;
6. the provider creates the payout under the key ``withdrawal:<transaction id>``, and its id
   is stored.

The withdrawal then goes ``pending`` → ``paid`` (:func:`mark_paid`) or ``pending`` →
``failed`` (:func:`mark_failed`): a failed payout's money comes back by a compensating
journal (``withdrawal_reversed`` +amount, ``withdrawal_fee_refunded`` +fee on the wallet,
``fee_refunded`` -fee on ``plat_fees``). Any other transition is refused with 409
``withdrawal_not_pending`` and changes nothing; the database refuses it too.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import Conflict, InsufficientFunds, InvalidInput, NotFound
from amply.kit.idempotency import IdempotentRequest
from amply.kit.ids import derived_id, generate_id
from amply.kit.money import MoneyError, fee_for, normalize_currency, validate_amount
from amply.kit.pagination import Page
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.ledger.service import PLATFORM_FEES_CHAIN, JSONValue, Leg
from amply.models import Transaction, Wallet
from amply.models.enums import (
    EntryType,
    TransactionKind,
    TransactionStatus,
    WithdrawalSpeed,
    WithdrawalStatus,
)
from amply.models.transactions import WithdrawalView
from amply.payments.payouts import CreatedPayout, PayoutProvider
from amply.wallets import deposit_reversals, history
from amply.wallets import service as wallets

SPEEDS: Final[frozenset[str]] = frozenset(WithdrawalSpeed)
MAX_FAILURE_CODE: Final = 100
MAX_FAILURE_MESSAGE: Final = 500


class WithdrawalNotPending(Conflict):
    """Only a pending withdrawal can be paid or fail."""

    default_code = "withdrawal_not_pending"


def fee_of(amount: int, *, speed: str, settings: Settings) -> int:
    """The fee of a withdrawal: none for ``standard``; for ``instant``, the configured basis
    points of the amount, rounded half up to the minor unit (see :func:`fee_for`)."""
    amount = _valid_amount(amount)
    _check_speed(speed)
    if speed == "standard":
        return 0
    return fee_for(amount, basis_points=settings.instant_withdrawal_fee_basis_points)


def _valid_amount(amount: int) -> int:
    try:
        return validate_amount(amount)
    except MoneyError as error:
        raise InvalidInput(str(error), param=error.param) from error


def _check_speed(speed: str) -> None:
    if speed not in SPEEDS:
        raise InvalidInput("speed must be `standard` or `instant`.", param="speed")


def _check_currency(currency: str | None, *, wallet: Wallet) -> None:
    if currency is None:
        return
    try:
        code = normalize_currency(currency)
    except MoneyError as error:
        raise InvalidInput(str(error), param="currency") from error
    if code != wallet.currency:
        raise InvalidInput(
            f"Your wallet holds {wallet.currency}; a withdrawal from it is in {wallet.currency}, "
            f"not {code}.",
            code="currency_mismatch",
            param="currency",
        )


def _check_bank_name(bank_name: str) -> str:
    name = bank_name.strip()
    if not 1 <= len(name) <= 100 or "\x00" in name:
        raise InvalidInput("bank_name must be 1 to 100 characters.", param="bank_name")
    return name


async def request_withdrawal(
    session: AsyncSession,
    *,
    wallet: Wallet,
    amount: int,
    speed: WithdrawalSpeed,
    bank_name: str,
    settings: Settings,
    provider: PayoutProvider,
    currency: str | None = None,
    idempotency: IdempotentRequest | None = None,
) -> Transaction:
    """Debit ``amount + fee`` from the wallet and start the payout; the pending withdrawal.

    Raises 503 ``payouts_unavailable`` (nothing moved) when the provider cannot pay out,
    422 ``insufficient_funds`` unless ``amount + fee`` is available, 422
    ``currency_mismatch`` for a ``currency`` other than the wallet's.
    """
    provider.ensure_available()
    fee = fee_of(amount, speed=speed, settings=settings)
    _check_currency(currency, wallet=wallet)
    bank_name = _check_bank_name(bank_name)
    transaction_id = derived_id("txn", seed=idempotency.seed) if idempotency else generate_id("txn")
    await _refuse_reused_id(session, transaction_id=transaction_id)

    # Every chain the journal touches, locked up front in id order ('plat_fees' < 'wal_…').
    await ledger.lock_chains(session, chain_ids=_chains(wallet.id, fee=fee))
    await deposit_reversals.check_not_restricted(session, wallet_id=wallet.id)
    await _require_available(session, wallet=wallet, amount=amount, fee=fee)
    entries = await ledger.append_journal(
        session,
        legs=_debit_legs(
            wallet, transaction_id=transaction_id, amount=amount, fee=fee, speed=speed
        ),
    )
    withdrawal = Transaction(
        id=transaction_id,
        kind=TransactionKind.WITHDRAWAL,
        status=TransactionStatus.PENDING,
        wallet_id=wallet.id,
        amount=amount,
        fee=fee,
        currency=wallet.currency,
        description=f"{speed.capitalize()} withdrawal to {bank_name}",
        bank_name=bank_name,
        speed=speed,
        provider=provider.provider,
        journal_id=entries[0].journal_id,
    )
    session.add(withdrawal)
    await session.flush()

    # After the debit, in the same database transaction: a refused debit never pays out, and
    # a payout whose transaction fails to commit is named again by the retry's key. The chain
    # locks are held during the call (an instant withdrawal's include 'plat_fees'), which is
    # allowed only because no provider makes a network call here: SandboxPayouts is
    # in-process and UnavailablePayouts refuses in ensure_available(), before anything moves.
    # A remote provider must first move this call between two committed steps, as card
    # deposits do (SPEC §2; docs/wallets.md, "Payout providers").
    payout = await provider.create_payout(
        amount=amount,
        currency=wallet.currency,
        speed=speed,
        destination=bank_name,
        idempotency_key=f"withdrawal:{transaction_id}",
    )
    withdrawal.payout_id = payout.payout_id
    await session.flush()
    await _apply_initial_status(session, withdrawal, payout)
    await session.refresh(withdrawal)
    return withdrawal


def _chains(wallet_id: str, *, fee: int) -> list[str]:
    return [PLATFORM_FEES_CHAIN, wallet_id] if fee else [wallet_id]


async def _refuse_reused_id(session: AsyncSession, *, transaction_id: str) -> None:
    # A derived id exists already only if its idempotency key expired and came back.
    if await session.get(Transaction, transaction_id) is not None:
        raise Conflict(
            "This Idempotency-Key was used for an earlier withdrawal; use a new key.",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )


async def _require_available(
    session: AsyncSession, *, wallet: Wallet, amount: int, fee: int
) -> None:
    try:
        await wallets.require_available(session, wallet=wallet, amount=amount + fee)
    except InsufficientFunds as error:
        if not fee:
            raise
        available = (await wallets.balance_of(session, wallet=wallet)).available
        raise InsufficientFunds(
            f"Your available balance is {available} {wallet.currency} (minor units); this "
            f"withdrawal needs {amount + fee}: {amount} plus an instant fee of {fee}.",
            param="amount",
        ) from error


def _debit_legs(
    wallet: Wallet, *, transaction_id: str, amount: int, fee: int, speed: str
) -> list[Leg]:
    # Public metadata only: ids and the speed, never the bank's name. The payout's id is not
    # known yet (the provider is called after the debit); the withdrawal records it.
    reference: dict[str, JSONValue] = {"transaction_id": transaction_id}
    currency = wallet.currency
    legs = [
        Leg(
            wallet.id,
            EntryType.WITHDRAWAL,
            -amount,
            currency,
            {**reference, "payout": None, "speed": speed},
        )
    ]
    if fee:
        legs.append(Leg(wallet.id, EntryType.WITHDRAWAL_FEE, -fee, currency, reference))
        # The platform's chains are public: never name the wallet there (anyone who knows
        # its id would learn its withdrawals). The journal id links the legs for its owner.
        legs.append(Leg(PLATFORM_FEES_CHAIN, EntryType.FEE_COLLECTED, fee, currency, reference))
    return legs


def _reversal_legs(row: Transaction) -> list[Leg]:
    withdrawal = WithdrawalView.of(row)
    reference: dict[str, JSONValue] = {"transaction_id": withdrawal.id}
    currency = withdrawal.currency
    wallet_id, fee = withdrawal.wallet_id, withdrawal.fee
    legs = [
        Leg(
            wallet_id,
            EntryType.WITHDRAWAL_REVERSED,
            withdrawal.amount,
            currency,
            {**reference, "payout": withdrawal.payout_id},
        ),
    ]
    if fee:
        legs.append(Leg(wallet_id, EntryType.WITHDRAWAL_FEE_REFUNDED, fee, currency, reference))
        legs.append(Leg(PLATFORM_FEES_CHAIN, EntryType.FEE_REFUNDED, -fee, currency, reference))
    return legs


async def _apply_initial_status(
    session: AsyncSession, withdrawal: Transaction, payout: CreatedPayout
) -> None:
    # A provider may report a payout settled (or failed) as soon as it is created.
    if payout.status == "paid":
        _settle_paid(withdrawal)
        await session.flush()
    elif payout.status == "failed":
        await _settle_failed(
            session,
            withdrawal,
            failure_code=payout.failure_code or "could_not_process",
            failure_message=payout.failure_message,
        )


def _settle_paid(withdrawal: Transaction) -> None:
    withdrawal.status = TransactionStatus.PAID
    withdrawal.completed_at = func.now()


async def _settle_failed(
    session: AsyncSession,
    withdrawal: Transaction,
    *,
    failure_code: str,
    failure_message: str | None,
) -> None:
    withdrawal.failure_code = failure_code[:MAX_FAILURE_CODE]
    withdrawal.failure_message = failure_message[:MAX_FAILURE_MESSAGE] if failure_message else None
    await ledger.lock_chains(session, chain_ids=_chains(withdrawal.wallet_id, fee=withdrawal.fee))
    entries = await ledger.append_journal(session, legs=_reversal_legs(withdrawal))
    withdrawal.status = TransactionStatus.FAILED
    withdrawal.reversal_journal_id = entries[0].journal_id
    await session.flush()


# --- Reading --------------------------------------------------------------------------------


def no_such_withdrawal() -> NotFound:
    return NotFound("No such withdrawal.", param="withdrawal_id")


async def get_withdrawal(
    session: AsyncSession, *, withdrawal_id: str, wallet_id: str | None = None
) -> Transaction:
    """The withdrawal (of ``wallet_id``, if given), or 404: another wallet's withdrawal is
    as missing as one that never existed."""
    withdrawal = await session.get(Transaction, withdrawal_id)
    if not _is_withdrawal_of(withdrawal, wallet_id=wallet_id):
        raise no_such_withdrawal()
    assert withdrawal is not None
    return withdrawal


def _is_withdrawal_of(withdrawal: Transaction | None, *, wallet_id: str | None) -> bool:
    return (
        withdrawal is not None
        and withdrawal.kind == TransactionKind.WITHDRAWAL
        and (wallet_id is None or withdrawal.wallet_id == wallet_id)
    )


async def list_withdrawals(
    session: AsyncSession,
    *,
    wallet_id: str,
    status: WithdrawalStatus | None = None,
    starting_after: str | None = None,
    limit: int = 20,
) -> Page[Transaction]:
    """The wallet's withdrawals, newest first."""
    return await history.list_of_kind(
        session,
        wallet_id=wallet_id,
        kind=TransactionKind.WITHDRAWAL,
        status=status,
        starting_after=starting_after,
        limit=limit,
    )


# --- Settling -------------------------------------------------------------------------------


async def _locked_pending(
    session: AsyncSession,
    *,
    withdrawal_id: str,
    wallet_id: str | None,
    provider: str | None,
    to: WithdrawalStatus,
) -> Transaction:
    # SELECT … FOR UPDATE: concurrent settlements of one withdrawal queue here, and each
    # sees the status the one before it committed.
    withdrawal = await session.get(
        Transaction, withdrawal_id, with_for_update=True, populate_existing=True
    )
    if not _is_withdrawal_of(withdrawal, wallet_id=wallet_id):
        raise no_such_withdrawal()
    assert withdrawal is not None
    if provider is not None and withdrawal.provider != provider:
        raise Conflict(
            f"This withdrawal is paid out by {withdrawal.provider}, not {provider}.",
            code="withdrawal_provider_mismatch",
        )
    if withdrawal.status != "pending":
        raise WithdrawalNotPending(
            f"This withdrawal is {withdrawal.status}; only a pending withdrawal can become {to}.",
            param="withdrawal_id",
        )
    return withdrawal


async def mark_paid(
    session: AsyncSession,
    *,
    withdrawal_id: str,
    wallet_id: str | None = None,
    provider: str | None = None,
) -> Transaction:
    """The payout reached the bank: ``pending`` → ``paid``. Nothing moves on the ledger (the
    money left at the request). 409 ``withdrawal_not_pending`` from any other status."""
    withdrawal = await _locked_pending(
        session,
        withdrawal_id=withdrawal_id,
        wallet_id=wallet_id,
        provider=provider,
        to=WithdrawalStatus.PAID,
    )
    _settle_paid(withdrawal)
    await session.flush()
    await session.refresh(withdrawal)
    return withdrawal


async def mark_failed(
    session: AsyncSession,
    *,
    withdrawal_id: str,
    failure_code: str,
    failure_message: str | None = None,
    wallet_id: str | None = None,
    provider: str | None = None,
) -> Transaction:
    """The payout failed: ``pending`` → ``failed``, and a compensating journal returns the
    amount and the fee to the wallet. 409 ``withdrawal_not_pending`` from any other status."""
    withdrawal = await _locked_pending(
        session,
        withdrawal_id=withdrawal_id,
        wallet_id=wallet_id,
        provider=provider,
        to=WithdrawalStatus.FAILED,
    )
    await _settle_failed(
        session, withdrawal, failure_code=failure_code, failure_message=failure_message
    )
    await session.refresh(withdrawal)
    return withdrawal
