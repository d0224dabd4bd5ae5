"""Refunds and chargebacks of wallet deposits: the wallet loses what Stripe took back.

A card deposit is a charge on the platform's own Stripe account. When Stripe takes money back
from it (a refund made from the dashboard: ``charge.refunded`` with the cumulative
``amount_refunded``; a dispute: its balance transactions, listed in every dispute event), the
wallet must lose it. A wallet can never go below zero, so each movement is split, under the
deposit's row lock and the wallet's losses lock, in one journal recorded by one row of
``charge_balance_transactions`` (``0012_charge_reversals``):

- money taken back: ``deposit_reversed`` (-) on the wallet for as much as it holds, and
  ``deposit_loss`` (-) on the platform's ``plat_losses`` chain for the rest, the wallet's
  *shortfall*;
- money returned (a won dispute's reinstatement): the platform's outstanding shortfall on this
  wallet first (``deposit_loss_recovered``, + on ``plat_losses``), the rest to the wallet
  (``deposit_reinstated``, +);
- Stripe's dispute fee is the platform's: ``deposit_loss`` (-fee) on ``plat_losses``, and
  ``deposit_loss_recovered`` when Stripe returns a countered dispute's fee.

A wallet with a shortfall is *restricted*: :func:`check_not_restricted` refuses its outgoing
money (transfers, gifts, withdrawals, paying money requests) with 409 ``wallet_restricted``.
Each later deposit into it repays the shortfall first: once the deposit is credited,
min(deposit, shortfall) moves back from the wallet (``deposit_reversed``) to ``plat_losses``
(``deposit_loss_recovered``), recorded as a ``deposit_repayment``. The shortfall is what the
records say: -the sum of ``loss_amount`` over the wallet's records.

Every record is keyed (a dispute's balance transaction id; ``<charge>:refunded:<total>`` for
a refunded total; ``<deposit>:repayment``), so a duplicated or late event records nothing
twice; an older refunded total arriving after a newer one adds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final, Literal

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import Conflict
from amply.ledger import service as ledger
from amply.ledger.service import JSONValue, Leg
from amply.models import ChargeBalanceTransaction, Transaction
from amply.models.enums import EntryType
from amply.payments.stripe_objects import BalanceMove

LOSSES_CHAIN: Final = "plat_losses"
_WALLET_LOSSES_LOCK_SQL: Final = text(
    "SELECT pg_advisory_xact_lock(hashtext('amply:wallet_losses'), hashtext(:wallet_id))"
)
Kind = Literal["deposit_dispute", "deposit_refund", "deposit_repayment"]


class WalletRestricted(Conflict):
    """The wallet owes the platform what a refunded or charged-back deposit took."""

    default_code = "wallet_restricted"


# --- The restriction ---------------------------------------------------------------------------


async def shortfall(session: AsyncSession, *, wallet_id: str) -> int:
    """What the platform lost on this wallet's deposits and has not recovered (>= 0)."""
    lost = await session.scalar(
        select(func.coalesce(func.sum(ChargeBalanceTransaction.loss_amount), 0)).where(
            ChargeBalanceTransaction.chain_id == wallet_id,
            ChargeBalanceTransaction.kind != "donation_dispute",
        )
    )
    return -int(lost or 0)


async def check_not_restricted(session: AsyncSession, *, wallet_id: str) -> None:
    """Refuse outgoing money from a wallet that owes a shortfall (409 ``wallet_restricted``)."""
    owed = await shortfall(session, wallet_id=wallet_id)
    if owed > 0:
        raise WalletRestricted(
            f"This wallet owes {owed} minor units after a refunded or charged-back deposit; "
            "it cannot send money until a deposit repays it."
        )


async def _lock_wallet(session: AsyncSession, wallet_id: str) -> None:
    """The wallet's losses lock (the records' guard takes it too), then both chains in id
    order. Call before anything else on the wallet's chain in the transaction."""
    await session.execute(_WALLET_LOSSES_LOCK_SQL, {"wallet_id": wallet_id})
    await ledger.lock_chains(session, chain_ids=[LOSSES_CHAIN, wallet_id])


async def prepare(session: AsyncSession, *, wallet_id: str) -> None:
    """Take the locks a reversal of this wallet's deposit needs, before completing the deposit
    (a refund or dispute event may arrive before the payment's success event)."""
    await _lock_wallet(session, wallet_id)


async def prepare_repayment(session: AsyncSession, *, wallet_id: str) -> bool:
    """Before a deposit credits the wallet: whether it owes a shortfall, and if so the locks
    :func:`repay_shortfall` needs (taken before the wallet's chain, in id order)."""
    await session.execute(_WALLET_LOSSES_LOCK_SQL, {"wallet_id": wallet_id})
    if await shortfall(session, wallet_id=wallet_id) <= 0:
        return False
    await ledger.lock_chains(session, chain_ids=[LOSSES_CHAIN, wallet_id])
    return True


# --- Effects of events -----------------------------------------------------------------------


async def record_refunded_total(
    session: AsyncSession, deposit: Transaction, *, charge_id: str, amount_refunded: int
) -> bool:
    """Stripe says ``amount_refunded`` of the deposit's charge is refunded in all: take back
    what is not recorded yet (an older, smaller total adds nothing)."""
    await _lock_wallet(session, deposit.wallet_id)
    recorded = await session.scalar(
        select(func.coalesce(func.sum(ChargeBalanceTransaction.amount), 0)).where(
            ChargeBalanceTransaction.deposit_id == deposit.id,
            ChargeBalanceTransaction.kind == "deposit_refund",
        )
    )
    total = min(amount_refunded, deposit.amount)
    delta = total + int(recorded or 0)
    if delta <= 0:
        return False
    await _record(
        session,
        deposit,
        kind="deposit_refund",
        move=BalanceMove(
            id=f"{charge_id}:refunded:{total}", amount=-delta, fee=0, currency=deposit.currency
        ),
        metadata={"transaction_id": deposit.id, "charge": charge_id, "refunded_total": total},
    )
    return True


async def record_dispute(
    session: AsyncSession,
    deposit: Transaction,
    *,
    dispute_id: str,
    charge_id: str | None,
    moves: Sequence[BalanceMove],
) -> bool:
    """Record the dispute's balance transactions (all of them, listed in every event) that are
    not recorded yet, withdrawals first."""
    await _lock_wallet(session, deposit.wallet_id)
    moved = False
    for move in sorted(moves, key=lambda move: move.amount):
        if (move.amount == 0 and move.fee == 0) or await session.get(
            ChargeBalanceTransaction, move.id
        ) is not None:
            continue
        await _record(
            session,
            deposit,
            kind="deposit_dispute",
            move=move,
            dispute_id=dispute_id,
            metadata={
                "transaction_id": deposit.id,
                "dispute": dispute_id,
                "charge": charge_id,
                "balance_transaction": move.id,
            },
        )
        moved = True
    return moved


async def repay_shortfall(session: AsyncSession, deposit: Transaction) -> bool:
    """A completed deposit into a restricted wallet repays its shortfall first."""
    owed = await shortfall(session, wallet_id=deposit.wallet_id)
    key = f"{deposit.id}:repayment"
    if owed <= 0 or await session.get(ChargeBalanceTransaction, key) is not None:
        return False
    await _lock_wallet(session, deposit.wallet_id)
    balance = await _balance(session, deposit.wallet_id, deposit.currency)
    repaid = min(owed, deposit.amount, balance)
    if repaid <= 0:
        return False
    legs = [
        Leg(
            chain_id=deposit.wallet_id,
            entry_type=EntryType.DEPOSIT_REVERSED,
            amount=-repaid,
            currency=deposit.currency,
            metadata={"transaction_id": deposit.id, "repays_shortfall": True},
        ),
        Leg(
            chain_id=LOSSES_CHAIN,
            entry_type=EntryType.DEPOSIT_LOSS_RECOVERED,
            amount=repaid,
            currency=deposit.currency,
            metadata={"transaction_id": deposit.id, "part": "amount"},
        ),
    ]
    entries = await ledger.append_journal(session, legs=legs)
    session.add(
        ChargeBalanceTransaction(
            id=key,
            kind="deposit_repayment",
            deposit_id=deposit.id,
            chain_id=deposit.wallet_id,
            currency=deposit.currency,
            amount=0,
            fee=0,
            chain_amount=-repaid,
            loss_amount=repaid,
            journal_id=entries[0].journal_id,
            chain_entry_id=_entry(entries, deposit.wallet_id),
            loss_entry_id=_entry(entries, LOSSES_CHAIN, part="amount"),
        )
    )
    await session.flush()
    return True


async def _balance(session: AsyncSession, wallet_id: str, currency: str) -> int:
    return (await ledger.get_balances(session, chain_id=wallet_id)).get(currency, 0)


async def _record(
    session: AsyncSession,
    deposit: Transaction,
    *,
    kind: Kind,
    move: BalanceMove,
    metadata: dict[str, JSONValue],
    dispute_id: str | None = None,
) -> None:
    """Split one movement between the wallet and ``plat_losses``, append it as one journal and
    record it. The wallet's locks are held."""
    if move.amount < 0:
        taken = min(await _balance(session, deposit.wallet_id, move.currency), -move.amount)
        chain_amount = -taken
    else:
        owed = await shortfall(session, wallet_id=deposit.wallet_id)
        chain_amount = move.amount - min(move.amount, owed)
    loss_amount = move.amount - chain_amount
    legs: list[Leg] = []
    if chain_amount != 0:
        legs.append(
            Leg(
                chain_id=deposit.wallet_id,
                entry_type=EntryType.DEPOSIT_REVERSED
                if chain_amount < 0
                else EntryType.DEPOSIT_REINSTATED,
                amount=chain_amount,
                currency=move.currency,
                metadata=metadata,
            )
        )
    if loss_amount != 0:
        legs.append(
            Leg(
                chain_id=LOSSES_CHAIN,
                entry_type=EntryType.DEPOSIT_LOSS
                if loss_amount < 0
                else EntryType.DEPOSIT_LOSS_RECOVERED,
                amount=loss_amount,
                currency=move.currency,
                metadata={**metadata, "part": "amount"},
            )
        )
    if move.fee != 0:
        legs.append(
            Leg(
                chain_id=LOSSES_CHAIN,
                entry_type=EntryType.DEPOSIT_LOSS
                if move.fee > 0
                else EntryType.DEPOSIT_LOSS_RECOVERED,
                amount=-move.fee,
                currency=move.currency,
                metadata={**metadata, "part": "fee"},
            )
        )
    entries = await ledger.append_journal(session, legs=legs)
    session.add(
        ChargeBalanceTransaction(
            id=move.id,
            kind=kind,
            dispute_id=dispute_id,
            deposit_id=deposit.id,
            chain_id=deposit.wallet_id,
            currency=move.currency,
            amount=move.amount,
            fee=move.fee,
            chain_amount=chain_amount,
            loss_amount=loss_amount,
            journal_id=entries[0].journal_id,
            chain_entry_id=_entry(entries, deposit.wallet_id) if chain_amount else None,
            loss_entry_id=_entry(entries, LOSSES_CHAIN, part="amount") if loss_amount else None,
            fee_entry_id=_entry(entries, LOSSES_CHAIN, part="fee") if move.fee else None,
        )
    )
    await session.flush()


def _entry(entries: Sequence[ledger.Entry], chain_id: str, *, part: str | None = None) -> str:
    """The id of the journal's entry on ``chain_id`` (for ``plat_losses``: the given part)."""
    return next(
        entry.id
        for entry in entries
        if entry.chain_id == chain_id
        and (part is None or json.loads(entry.metadata).get("part") == part)
    )
