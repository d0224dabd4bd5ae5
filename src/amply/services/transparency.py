"""What anyone may read about an organisation: its profile, funds, ledger and totals.

Totals are computed from the public chain itself (entry types and amounts), never from
private tables, so an auditor who downloads the chain arrives at the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import asyncpg
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.models import Organisation
from amply.services import ledger
from amply.services.pagination import Page, keyset_page

# Sums of entry types per currency, by chain: $1 the chain ids.
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
    platform_fee: int = 0  # Amply takes none, and says so
    net: int = 0
    donations: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


async def totals_by_chain(
    session: AsyncSession, *, chain_ids: Sequence[str]
) -> dict[str, list[Totals]]:
    """Per chain, per currency (sorted): the public totals of its entries."""
    result: dict[str, dict[str, Totals]] = {chain_id: {} for chain_id in chain_ids}
    if not chain_ids:
        return {}
    connection = await session.connection()
    rows = await connection.exec_driver_sql(TOTALS_SQL, (list(chain_ids),))
    for row in rows.mappings():
        totals = result[row["chain_id"]].setdefault(row["currency"], Totals(row["currency"]))
        amount, entry_type = int(row["total"]), row["type"]
        totals.net += amount
        totals.by_type[entry_type] = amount
        category = _CATEGORY.get(entry_type)
        if category == "received":
            totals.received += amount
        elif category is not None:
            setattr(totals, category, getattr(totals, category) - amount)
        if entry_type in _DONATION_TYPES:
            totals.donations += row["entries"]
    return {
        chain_id: [by_currency[c] for c in sorted(by_currency)]
        for chain_id, by_currency in result.items()
    }


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


# A page of an organisation's chain in export shape (docs/ledger-format.md §4; created_at in
# its canonical text, as exports have it): $1 the organisation's id (its chain's), $2
# after_seq, $3 at most this many entries. No rows unless the organisation exists.
_LEDGER_PAGE_SQL: Final = """
SELECT chain_id, seq, id, type, amount, currency, balance_after, metadata, journal_id,
       ledger_format_timestamp(created_at) AS created_at, prev_entry_hash, entry_hash
  FROM ledger_entries
 WHERE chain_id = $1 AND seq > $2 AND {condition}
   AND EXISTS (SELECT 1 FROM organisations WHERE id = $1)
 ORDER BY seq
 LIMIT $3
"""
# A chain's seqs follow one another (each its predecessor's plus one), so an unfiltered page is
# a range of them: bounded on both sides, its index scan reads only the page's entries, however
# stale the planner's statistics of a fast-growing chain are.
LEDGER_PAGE_SQL: Final = _LEDGER_PAGE_SQL.format(condition="seq <= $2 + $3")
# Filters (NULL: none): $4 entry types, $5 created at or after, $6 created before.
FILTERED_LEDGER_PAGE_SQL: Final = _LEDGER_PAGE_SQL.format(
    condition="""($4::text[] IS NULL OR type = ANY($4::text[]))
   AND ($5::timestamptz IS NULL OR created_at >= $5)
   AND ($6::timestamptz IS NULL OR created_at < $6)"""
)


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """Entries in export shape: records keyed by the export's field names."""

    rows: list[asyncpg.Record]
    has_more: bool


async def ledger_page(
    session: AsyncSession,
    *,
    organisation_id: str,
    after_seq: int,
    limit: int,
    types: Sequence[str] | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> LedgerPage:
    """Entries of the organisation's chain with seq > ``after_seq``, in chain order, in one
    statement straight from the driver (SQLAlchemy rows and ledger Entry objects would cost
    several times the query); ``has_more`` if more follow. No entries for an unknown
    organisation: tell it from an empty page with ``organisations.require_organisation``."""
    if limit < 1:
        raise ValueError("limit must be positive")
    driver = await ledger.driver_connection(session)
    page = (organisation_id, after_seq, limit + 1)
    if types or created_gte is not None or created_lt is not None:
        filters = (list(types) if types else None, created_gte, created_lt)
        rows = await driver.fetch(FILTERED_LEDGER_PAGE_SQL, *page, *filters)
    else:
        rows = await driver.fetch(LEDGER_PAGE_SQL, *page)
    return LedgerPage(rows=rows[:limit], has_more=len(rows) > limit)
