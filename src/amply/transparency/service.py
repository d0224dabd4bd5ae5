"""What anyone may read about an organisation (its profile, funds, ledger and totals) and
about the platform's own chains (``plat_fees``, ``plat_promotions``).

Totals are computed from the public chain itself (entry types and amounts), never from
private tables, so an auditor who downloads the chain arrives at the same figures. They are
read from the chain's running totals (``chain_totals``, kept by a background job through some
seq) plus the entries appended after that seq, so no request sums a whole chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

import asyncpg
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import NotFound
from amply.kit.pagination import Page, keyset_page
from amply.ledger import chain_totals
from amply.ledger import service as ledger
from amply.models import LedgerChain, Organisation
from amply.models.enums import ChainKind

# Sums of entry types per currency, by chain: $1 the chain ids. The whole chains: what the
# stored running totals (migration 0015) spare the requests, kept as their reference.
TOTALS_SQL: Final = """
SELECT chain_id, currency, type, sum(amount) AS total, count(*) AS entries
  FROM ledger_entries
 WHERE chain_id = ANY($1::text[])
 GROUP BY chain_id, currency, type
"""

# How each entry type counts in the public totals (amounts keep the chain's sign).
_CATEGORY: Final[dict[str, str]] = {
    "donation_received": "received",
    "wallet_donation_received": "received",
    "donation_refunded": "refunded",
    "donation_refund_reversed": "refunded",
    "payment_processing_fee": "processing_fees",
    "payment_processing_fee_refunded": "processing_fees",
    "dispute_funds_withdrawn": "disputed",
    "dispute_funds_reinstated": "disputed",
    "dispute_fee": "dispute_fees",
    "dispute_fee_refunded": "dispute_fees",
    "payout_sent": "payouts",
    "payout_failed": "payouts",
}
_DONATION_TYPES: Final = frozenset({"donation_received", "wallet_donation_received"})


@dataclass
class Totals:
    """One currency of a chain, as the public ledger adds it up. Amounts are positive
    magnitudes except ``net``, which is the chain's balance (what the organisation holds)."""

    currency: str
    received: int = 0
    refunded: int = 0
    processing_fees: int = 0
    disputed: int = 0
    dispute_fees: int = 0
    payouts: int = 0  # paid out to the organisation's bank, net of failed payouts
    platform_fee: int = 0  # Amply takes none, and says so
    net: int = 0
    donations: int = 0
    entries: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


async def totals_by_chain(
    session: AsyncSession, *, chain_ids: Sequence[str]
) -> dict[str, list[Totals]]:
    """Per chain, per currency (sorted): the public totals of its entries, from the stored
    running totals plus the entries appended since (:mod:`amply.ledger.chain_totals`)."""
    if not chain_ids:
        return {}
    kept = await chain_totals.sums(session, upto=dict.fromkeys(chain_ids))
    return {chain_id: fold_totals(kept[chain_id].groups) for chain_id in chain_ids}


def fold_totals(groups: Iterable[chain_totals.Group]) -> list[Totals]:
    """Per currency (sorted): the public totals of a chain's groups of entries."""
    result: dict[str, Totals] = {}
    for group in groups:
        totals = result.setdefault(group.currency, Totals(group.currency))
        amount, entry_type = group.total, group.type
        totals.net += amount
        totals.entries += group.entries
        totals.by_type[entry_type] = totals.by_type.get(entry_type, 0) + amount
        category = _CATEGORY.get(entry_type)
        if category == "received":
            totals.received += amount
        elif category is not None:
            setattr(totals, category, getattr(totals, category) - amount)
        if entry_type in _DONATION_TYPES:
            totals.donations += group.entries
    for totals in result.values():
        totals.by_type = dict(sorted(totals.by_type.items()))
    return [result[c] for c in sorted(result)]


async def list_organisations(
    session: AsyncSession, *, search: str | None, starting_after: str | None, limit: int
) -> Page[Organisation]:
    """Organisations by name (then id), optionally those whose name or slug contains
    ``search`` (case-insensitively)."""
    statement = select(Organisation)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        statement = statement.where(
            or_(Organisation.name.ilike(pattern), Organisation.slug.ilike(pattern))
        )
    return await keyset_page(
        session,
        statement,
        key=[func.lower(Organisation.name), Organisation.id],
        id_column=Organisation.id,
        starting_after=starting_after,
        limit=limit,
    )


# A page of a public chain in export shape (docs/ledger-format.md §4; created_at in its
# canonical text, as exports have it): $1 the chain's id, $2 after_seq, $3 at most this many
# entries. No rows unless the chain is public and of the kind asked for ({owner}).
_LEDGER_PAGE_SQL: Final = """
SELECT chain_id, seq, id, type, amount, currency, balance_after, metadata, journal_id,
       ledger_format_timestamp(created_at) AS created_at, prev_entry_hash, entry_hash
  FROM ledger_entries
 WHERE chain_id = $1 AND seq > $2 AND {condition}
   AND EXISTS ({owner})
 ORDER BY seq
 LIMIT $3
"""
# Who a public chain belongs to: an organisation (its id is the chain's), or the platform.
_OWNERS: Final[dict[str, str]] = {
    "organisation": "SELECT 1 FROM organisations WHERE id = $1",
    "platform": "SELECT 1 FROM ledger_chains WHERE id = $1 AND kind = 'platform'",
}
# A chain's seqs follow one another (each its predecessor's plus one), so an unfiltered page is
# a range of them: bounded on both sides, its index scan reads only the page's entries, however
# stale the planner's statistics of a fast-growing chain are.
_UNFILTERED: Final = "seq <= $2 + $3"
# Filters (NULL: none): $4 entry types, $5 created at or after, $6 created before.
_FILTERED: Final = """($4::text[] IS NULL OR type = ANY($4::text[]))
   AND ($5::timestamptz IS NULL OR created_at >= $5)
   AND ($6::timestamptz IS NULL OR created_at < $6)"""
LEDGER_PAGE_SQL: Final[dict[str, str]] = {
    kind: _LEDGER_PAGE_SQL.format(condition=_UNFILTERED, owner=owner)
    for kind, owner in _OWNERS.items()
}
FILTERED_LEDGER_PAGE_SQL: Final[dict[str, str]] = {
    kind: _LEDGER_PAGE_SQL.format(condition=_FILTERED, owner=owner)
    for kind, owner in _OWNERS.items()
}

PublicKind = Literal["organisation", "platform"]

# What each platform chain holds, as the public API describes it.
PLATFORM_CHAINS: Final[dict[str, str]] = {
    ledger.PLATFORM_FEES_CHAIN: "Fees Amply collects: the fee of each instant withdrawal "
    "(`fee_collected`, +), and its refund when the payout fails (`fee_refunded`, -). Each "
    "entry's journal has a `withdrawal_fee` (or `withdrawal_fee_refunded`) leg of the "
    "opposite amount on the paying wallet's chain. Its balance is the fees Amply kept.",
    ledger.PLATFORM_PROMOTIONS_CHAIN: "Money Amply gives away: each welcome bonus "
    "(`promotion_granted`, -), balanced by a `welcome_bonus` leg of the opposite amount on "
    "the new wallet's chain. Its balance is minus all that was given.",
    "plat_losses": "What refunds and chargebacks of wallet deposits cost Amply: the part a "
    "wallet no longer held (`deposit_loss`, -) and Stripe's dispute fees (`deposit_loss`, -), "
    "and what it recovered (`deposit_loss_recovered`, +) from a won dispute or a later "
    "deposit into the wallet. Its balance is minus what Amply lost.",
}


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """Entries in export shape: records keyed by the export's field names."""

    rows: list[asyncpg.Record]
    has_more: bool


async def ledger_page(
    session: AsyncSession,
    *,
    chain_id: str,
    kind: PublicKind,
    after_seq: int,
    limit: int,
    types: Sequence[str] | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> LedgerPage:
    """Entries of a public chain (an organisation's, or the platform's) with seq >
    ``after_seq``, in chain order, in one statement straight from the driver (SQLAlchemy rows
    and ledger Entry objects would cost several times the query); ``has_more`` if more
    follow. No entries for an unknown chain, or one of another kind: tell it from an empty
    page with ``organisations.require_organisation`` or :func:`require_platform_chain`."""
    if limit < 1:
        raise ValueError("limit must be positive")
    driver = await ledger.driver_connection(session)
    page = (chain_id, after_seq, limit + 1)
    if types or created_gte is not None or created_lt is not None:
        filters = (list(types) if types else None, created_gte, created_lt)
        rows = await driver.fetch(FILTERED_LEDGER_PAGE_SQL[kind], *page, *filters)
    else:
        rows = await driver.fetch(LEDGER_PAGE_SQL[kind], *page)
    return LedgerPage(rows=rows[:limit], has_more=len(rows) > limit)


async def platform_chains(session: AsyncSession) -> list[str]:
    """The platform's chains, by id (a handful: ``plat_fees``, ``plat_promotions``)."""
    return sorted(await ledger.select_chain_ids(session, kind=ChainKind.PLATFORM))


async def require_platform_chain(session: AsyncSession, *, chain_id: str) -> None:
    """404 unless ``chain_id`` is one of the platform's chains."""
    chain = await session.get(LedgerChain, chain_id)
    if chain is None or chain.kind != "platform":
        raise NotFound("No such platform chain.", param="chain_id")
