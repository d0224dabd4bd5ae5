"""What anyone may read about an organisation: its profile, funds, ledger and totals.

Totals are computed from the public chain itself (entry types and amounts), never from
private tables, so an auditor who downloads the chain arrives at the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.models import Organisation
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
