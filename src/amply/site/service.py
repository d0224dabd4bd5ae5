"""What the public site shows about an organisation, read from its public chain.

Totals, giving per month and fund totals are sums over the chain's entries. No page view sums
a chain: they come from the chain's running totals (``chain_totals``, migration 0015), kept by
a background job through some seq, plus the entries between that seq and the head the page
shows (an index range on ``(chain_id, seq)``; :mod:`amply.ledger.chain_totals`). So even the
first view after a restart reads a few hundred rows at most. The figures are those of
``GET /v1/public/organisations/{id}`` (the same entry types,
:mod:`amply.transparency.service`), which an auditor can recompute from the export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.ledger import chain_totals, checkpoints
from amply.models import Fund, LedgerCheckpoint, Organisation
from amply.transparency import service as transparency
from amply.transparency.service import Totals

DONATION_TYPES: Final = frozenset({"donation_received", "wallet_donation_received"})
REFUND_TYPES: Final = frozenset({"donation_refunded", "donation_refund_reversed"})


@dataclass
class ChainSummary:
    """Sums of a chain's entries up to ``seq``: by currency and type, giving per UTC month,
    and per fund (received, refunded, donations)."""

    seq: int = 0
    groups: list[chain_totals.Group] = field(default_factory=list)
    by_type: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    months: dict[tuple[str, str], int] = field(default_factory=dict)  # (month, currency)
    funds: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # received, refunded, n

    @classmethod
    def of(cls, sums: chain_totals.ChainSums) -> ChainSummary:
        summary = cls(seq=sums.seq, groups=sums.groups)
        for group in sums.groups:
            currency, entry_type = group.currency, group.type
            before = summary.by_type.get((currency, entry_type), (0, 0))
            summary.by_type[(currency, entry_type)] = (
                before[0] + group.total,
                before[1] + group.entries,
            )
            if entry_type in DONATION_TYPES:
                month = (group.month, currency)
                summary.months[month] = summary.months.get(month, 0) + group.total
            if group.fund_id and (entry_type in DONATION_TYPES or entry_type in REFUND_TYPES):
                fund = summary.funds.setdefault((group.fund_id, currency), [0, 0, 0])
                if entry_type in DONATION_TYPES:
                    fund[0] += group.total
                    fund[2] += group.entries
                else:
                    fund[1] -= group.total
        return summary

    def totals(self) -> list[Totals]:
        """Per currency (sorted), as the public API adds them up."""
        return transparency.fold_totals(self.groups)

    def payouts(self, currency: str) -> int:
        """Money paid out to the organisation's bank, net of failed payouts (0 until any)."""
        sent = self.by_type.get((currency, "payout_sent"), (0, 0))[0]
        failed = self.by_type.get((currency, "payout_failed"), (0, 0))[0]
        return -(sent + failed)


async def summaries(session: AsyncSession, *, heads: Mapping[str, int]) -> dict[str, ChainSummary]:
    """Per chain, its sums through the given head seq (stored totals + the entries since)."""
    kept = await chain_totals.sums(session, upto=heads)
    return {chain_id: ChainSummary.of(sums) for chain_id, sums in kept.items()}


async def summary_of(session: AsyncSession, *, chain_id: str, head_seq: int) -> ChainSummary:
    """The chain's sums through ``head_seq``."""
    return (await summaries(session, heads={chain_id: head_seq}))[chain_id]


async def organisation_by_slug(session: AsyncSession, *, slug: str) -> Organisation | None:
    statement = select(Organisation).where(Organisation.slug == slug)
    return (await session.scalars(statement)).first()


async def funds_of(session: AsyncSession, *, organisation_id: str) -> list[Fund]:
    statement = (
        select(Fund)
        .where(Fund.organisation_id == organisation_id)
        .order_by(Fund.created_at, Fund.id)
        .limit(100)
    )
    return list((await session.scalars(statement)).all())


async def latest_checkpoint(session: AsyncSession, *, chain_id: str) -> LedgerCheckpoint | None:
    return await checkpoints.latest(session, chain_id=chain_id)
