"""Donor receipts (docs/ledger-format.md §7): the donation, its public entry, the opening of
the entry's salted commitment, and a signed checkpoint that covers the entry."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from amply.donations import service as donations
from amply.kit.errors import Conflict
from amply.ledger import checkpoints
from amply.ledger import service as ledger
from amply.ledger.signing import NoteSigner
from amply.models import Donation, LedgerCheckpoint


@dataclass(frozen=True)
class Receipt:
    donation: Donation
    entry: ledger.Entry
    salt: str | None
    secret: str
    commitment: str | None
    checkpoint: LedgerCheckpoint


async def get_receipt(
    session: AsyncSession, *, donation_id: str, receipt_token: str, signer: NoteSigner
) -> Receipt:
    """The receipt of a donation on the ledger, for the holder of its receipt token."""
    donation = await donations.get_for_receipt(
        session, donation_id=donation_id, receipt_token=receipt_token
    )
    if donation.received_entry_id is None:
        raise Conflict(
            "The donation is not on the ledger yet: it has a receipt once it completes.",
            code="donation_not_completed",
        )
    entries = await ledger.get_entries(session, entry_ids=[donation.received_entry_id])
    entry = entries[donation.received_entry_id]
    checkpoint = await checkpoints.checkpoint_covering(
        session, chain_id=entry.chain_id, seq=entry.seq, signer=signer
    )
    return Receipt(
        donation=donation,
        entry=entry,
        salt=donation.receipt_salt,
        secret=donations.receipt_secret(donation),
        commitment=donations.commitment_of(donation),
        checkpoint=checkpoint,
    )
