"""Payouts of organisations' connected Stripe accounts, on their public chains.

Stripe pays an organisation's Stripe balance to its bank by itself (automatic payouts); the
public should see where the donations went, and the chain's balance should stay equal to the
organisation's Stripe balance. (``payments/payouts.py`` is about wallet withdrawals: another
thing.)

When each payout is recorded follows Stripe's balance, not the bank:

- ``payout.created``: Stripe debits the balance now (the payout's balance transaction, type
  ``payout``, ``-amount``, source the payout), so ``payout_sent`` (``-amount``) is appended now;
- ``payout.paid``: the bank has it; the balance does not move, nor does the chain (the status
  becomes ``paid``);
- ``payout.failed`` / ``payout.canceled``: Stripe credits the balance back (a second balance
  transaction, ``payout_failure`` / ``payout_cancel``, ``+amount``), so ``payout_failed``
  (``+amount``) is appended, once; a paid payout may still fail later.

Recording at ``paid`` instead would leave the chain above Stripe's balance for the days a
payout is in transit, and reconciliation would report every such payout.

Exactly once, in any order: each payout is a row of ``connected_payouts`` (migration 0013,
which also makes PostgreSQL refuse a payout entry its row does not name) locked while an
event applies. Whatever event comes first records what its state implies: a ``payout.failed``
that overtakes ``payout.created`` appends ``payout_sent`` and then ``payout_failed``, and the
late ``payout.created`` finds both done. The status only moves forward (``pending`` →
``in_transit`` → ``paid`` → ``failed``/``canceled``), so a late ``payout.paid`` does not undo
a failure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.money import MoneyError, normalize_currency
from amply.ledger import service as ledger
from amply.ledger.service import JSONValue, Leg
from amply.models import ConnectedPayout, Organisation
from amply.models.enums import ConnectedPayoutStatus, EntryType
from amply.payments.stripe_objects import JSONObject, MalformedStripeObject, reference

logger = logging.getLogger(__name__)

PAYOUT_ID: Final = re.compile(r"^po_[0-9A-Za-z_]{1,100}$")
# How far along each status is: a payout's status only moves forward.
_RANK: Final[dict[str, int]] = {
    "pending": 0,
    "in_transit": 1,
    "paid": 2,
    "failed": 3,
    "canceled": 3,
}
RETURNED: Final = frozenset({"failed", "canceled"})


@dataclass(frozen=True, slots=True)
class PayoutState:
    """What an event says about a payout."""

    payout_id: str
    account_id: str
    amount: int
    currency: str
    status: str
    failure_code: str | None = None
    balance_transaction: str | None = None
    failure_balance_transaction: str | None = None


def state_of(payout: JSONObject, *, account_id: str, event_type: str) -> PayoutState:
    """The payout in an event's object, parsed and checked: :class:`MalformedStripeObject`
    (400) when it lacks an id, amount or currency. Read only for one of Amply's
    organisations' accounts: a stranger's payout is acknowledged, however it looks."""
    payout_id, amount, currency = payout.get("id"), payout.get("amount"), payout.get("currency")
    if not (isinstance(payout_id, str) and PAYOUT_ID.match(payout_id)):
        raise MalformedStripeObject("The payout lacks an id.")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise MalformedStripeObject("The payout's amount is not a positive count of minor units.")
    try:
        code = normalize_currency(currency if isinstance(currency, str) else "")
    except MoneyError as error:
        raise MalformedStripeObject("The payout's currency is not an ISO 4217 code.") from error
    status = str(payout.get("status") or "pending")
    # The event's type is authoritative over a status a later update may not have sent.
    if event_type == "payout.failed":
        status = "failed"
    elif event_type == "payout.canceled":
        status = "canceled"
    elif event_type == "payout.paid" and _RANK.get(status, 0) < _RANK["paid"]:
        status = "paid"
    if status not in _RANK:
        status = "pending"
    failure_code = payout.get("failure_code")
    return PayoutState(
        payout_id=payout_id,
        account_id=account_id,
        amount=amount,
        currency=code,
        status=status,
        failure_code=failure_code[:100] if isinstance(failure_code, str) else None,
        balance_transaction=reference(payout.get("balance_transaction")),
        failure_balance_transaction=reference(payout.get("failure_balance_transaction")),
    )


async def organisation_of_account(session: AsyncSession, *, account_id: str) -> str | None:
    """The organisation whose connected account this is, if any."""
    organisation_id: str | None = await session.scalar(
        select(Organisation.id).where(Organisation.stripe_account_id == account_id)
    )
    return organisation_id


async def apply(session: AsyncSession, *, organisation_id: str, state: PayoutState) -> bool:
    """Record what ``state`` implies about the payout on the organisation's chain, once;
    True if an entry was appended."""
    await session.execute(
        insert(ConnectedPayout)
        .values(
            id=state.payout_id,
            organisation_id=organisation_id,
            stripe_account_id=state.account_id,
            amount=state.amount,
            currency=state.currency,
            status="pending",
        )
        .on_conflict_do_nothing(index_elements=["id"])
    )
    payout = await session.get(
        ConnectedPayout, state.payout_id, with_for_update=True, populate_existing=True
    )
    assert payout is not None  # inserted above, or there before; never deleted
    if payout.stripe_account_id != state.account_id:
        logger.warning(
            "payout %s is on account %s, not %s: event ignored",
            payout.id,
            payout.stripe_account_id,
            state.account_id,
        )
        return False
    if (payout.amount, payout.currency) != (state.amount, state.currency):
        # Stripe never changes a payout's amount; the first event's terms stand.
        logger.error(
            "payout %s was %s %s, an event says %s %s: its recorded terms stand",
            payout.id,
            payout.amount,
            payout.currency,
            state.amount,
            state.currency,
        )
    moved = False
    if payout.sent_entry_id is None:
        payout.sent_entry_id = await _append(
            session,
            payout,
            entry_type=EntryType.PAYOUT_SENT,
            metadata={"payout": payout.id, "balance_transaction": state.balance_transaction},
        )
        moved = True
    if state.status in RETURNED and payout.failed_entry_id is None:
        payout.failed_entry_id = await _append(
            session,
            payout,
            entry_type=EntryType.PAYOUT_FAILED,
            metadata={
                "payout": payout.id,
                "balance_transaction": state.failure_balance_transaction,
                "status": state.status,
                "failure_code": state.failure_code,
            },
        )
        moved = True
    if _RANK[state.status] > _RANK.get(payout.status, 0):
        payout.status = ConnectedPayoutStatus(state.status)
        if state.failure_code is not None:
            payout.failure_code = state.failure_code
    payout.updated_at = func.now()
    await session.flush()
    return moved


async def _append(
    session: AsyncSession,
    payout: ConnectedPayout,
    *,
    entry_type: EntryType,
    metadata: dict[str, JSONValue],
) -> str:
    sign = -1 if entry_type == "payout_sent" else 1
    [entry] = await ledger.append_journal(
        session,
        legs=[
            Leg(
                chain_id=payout.organisation_id,
                entry_type=entry_type,
                amount=sign * payout.amount,
                currency=payout.currency,
                metadata=metadata,
            )
        ],
    )
    return entry.id


async def get(session: AsyncSession, *, payout_id: str) -> ConnectedPayout | None:
    payout: ConnectedPayout | None = await session.get(ConnectedPayout, payout_id)
    return payout
