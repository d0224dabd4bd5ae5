"""Giving from a wallet to an organisation: one balanced journal from the wallet's chain to the
organisation's public chain (``wallet_donation_sent`` / ``wallet_donation_received``).

The organisation's entry follows the privacy rules of card donations: it names the donor only
if they chose to be named, and never carries an email, username or wallet id.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from amply.donations import service as donations
from amply.kit.errors import InvalidInput
from amply.kit.ids import generate_id
from amply.ledger import service as ledger
from amply.ledger.service import Leg
from amply.models import Transaction, User, Wallet
from amply.models.enums import EntryType
from amply.organisations import service as organisations
from amply.wallets import deposit_reversals
from amply.wallets import service as wallets


async def give(
    session: AsyncSession,
    *,
    wallet: Wallet,
    donor: User,
    organisation_id: str,
    fund_id: str | None,
    amount: int,
    currency: str | None,
    anonymous: bool,
    description: str,
) -> Transaction:
    """Move ``amount`` from the wallet to the organisation's public chain, at once."""
    await organisations.require_organisation(session, organisation_id=organisation_id)
    if fund_id is not None:
        await donations.require_open_fund(session, organisation_id=organisation_id, fund_id=fund_id)
    if currency is not None and currency != wallet.currency:
        raise InvalidInput(
            f"Your wallet holds {wallet.currency}; this gift asked for {currency}.",
            code="currency_mismatch",
            param="currency",
        )
    await wallets.lock(session, wallet.id, organisation_id)
    await deposit_reversals.check_not_restricted(session, wallet_id=wallet.id)
    await wallets.require_available(session, wallet=wallet, amount=amount)
    gift = Transaction(
        id=generate_id("txn"),
        kind="donation",
        status="completed",
        wallet_id=wallet.id,
        organisation_id=organisation_id,
        fund_id=fund_id,
        amount=amount,
        currency=wallet.currency,
        description=description,
        public_name=None if anonymous else donor.name[:100],
        completed_at=datetime.now(UTC),
    )
    entries = await ledger.append_journal(
        session,
        legs=[
            Leg(
                wallet.id,
                EntryType.WALLET_DONATION_SENT,
                -amount,
                wallet.currency,
                {"transaction_id": gift.id, "organisation_id": organisation_id},
            ),
            Leg(
                organisation_id,
                EntryType.WALLET_DONATION_RECEIVED,
                amount,
                wallet.currency,
                {
                    "transaction_id": gift.id,
                    "fund_id": fund_id,
                    "donor": gift.public_name or "Anonymous",
                    "source": "wallet",
                    "platform_fee": 0,
                },
            ),
        ],
    )
    gift.journal_id = entries[0].journal_id
    session.add(gift)
    await session.flush()
    return gift
