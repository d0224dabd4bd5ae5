"""Running totals of the public chains (migration 0015): what the public totals and the site's
organisation page read instead of summing a chain.

``chain_totals`` holds, per chain, the sum and count of its entries through ``through_seq``,
grouped by currency, entry type, UTC month and fund (the ``fund_id`` of the entry's public
metadata). A reader takes those rows and adds the entries between ``through_seq`` and the head
it reads, an index range on ``(chain_id, seq)``; if the stored rows are already past that head
(the job advanced them meanwhile), it subtracts the entries in between instead. Either way the
sums are exactly those of the entries through the head, because entries never change.

:func:`advance_all` (run by the background checkpoint signer's loop, never by an append) moves
each public chain's rows forward by at most :data:`BATCH` entries per short transaction. Each
write carries the absolute sums through its ``through_seq`` and changes a row only where the
stored ``through_seq`` is lower (an UPSERT condition), so two jobs never double count; a job
with the newer ``through_seq`` writes every key the older one could (keys only accumulate), so
a chain's rows always share one ``through_seq``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import Database
from amply.ledger import service as ledger

logger = logging.getLogger(__name__)

# Entries per transaction of the job: a short transaction even on a chain of millions.
BATCH: Final = 100_000
# The highest seq there can be: "up to the head, whatever it is".
LAST_SEQ: Final = 2**63 - 1

# The groups of a chain's entries with lo < seq <= hi, per chain: $1 chain ids, $2 lo, $3 hi.
_GROUPS: Final = """
SELECT w.chain_id, g.*
  FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS w (chain_id, lo, hi)
 CROSS JOIN LATERAL (
     SELECT e.currency, e.type,
            to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
            coalesce(CASE WHEN e.metadata LIKE '%"fund_id":"%'
                          THEN e.metadata::jsonb ->> 'fund_id' END, '') AS fund_id,
            sum(e.amount) AS total, count(*) AS entries, max(e.seq) AS last_seq
       FROM ledger_entries AS e
      WHERE e.chain_id = w.chain_id AND e.seq > w.lo AND e.seq <= w.hi
      GROUP BY 1, 2, 3, 4
 ) AS g
"""
_STORED: Final = """
SELECT chain_id, currency, type, month, fund_id, total, entries, through_seq
  FROM chain_totals
 WHERE chain_id = ANY($1::text[])
"""
# Every row of one chain, absolute sums through $8; a row changes only if it is behind.
_UPSERT: Final = """
INSERT INTO chain_totals AS t (chain_id, currency, type, month, fund_id, total, entries,
                               through_seq)
SELECT $1, currency, type, month, fund_id, total, entries, $8
  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::numeric[], $7::bigint[])
       AS r (currency, type, month, fund_id, total, entries)
ON CONFLICT (chain_id, currency, type, month, fund_id) DO UPDATE
   SET total = EXCLUDED.total, entries = EXCLUDED.entries, through_seq = EXCLUDED.through_seq
 WHERE t.through_seq < EXCLUDED.through_seq
"""
# Public chains whose totals are behind their head (a bounded batch of them).
_BEHIND: Final = """
SELECT c.id, head.seq AS head_seq
  FROM ledger_chains AS c
 CROSS JOIN LATERAL (
     SELECT seq FROM ledger_entries WHERE chain_id = c.id ORDER BY seq DESC LIMIT 1
 ) AS head
 WHERE c.kind IN ('organisation', 'platform')
   AND head.seq > coalesce(
       (SELECT max(through_seq) FROM chain_totals AS t WHERE t.chain_id = c.id), 0)
 ORDER BY c.id
 LIMIT $1
"""

Key = tuple[str, str, str, str]  # currency, type, month, fund_id ('' for none)


@dataclass(frozen=True, slots=True, order=True)
class Group:
    """The sum and count of a chain's entries of one currency, type, month and fund."""

    currency: str
    type: str
    month: str
    fund_id: str
    total: int
    entries: int


@dataclass(frozen=True, slots=True)
class ChainSums:
    """A chain's groups through ``seq``."""

    seq: int
    groups: list[Group]


def _merge(into: dict[Key, list[int]], key: Key, total: int, entries: int, sign: int) -> None:
    sums = into.setdefault(key, [0, 0])
    sums[0] += sign * total
    sums[1] += sign * entries


async def sums(session: AsyncSession, *, upto: Mapping[str, int | None]) -> dict[str, ChainSums]:
    """Per chain, its groups through ``upto[chain]`` (``None``: the head, whatever it is),
    from the stored totals and the entries between them and that seq (two statements)."""
    if not upto:
        return {}
    driver = await ledger.driver_connection(session)
    chain_ids = list(upto)
    merged: dict[str, dict[Key, list[int]]] = {chain_id: {} for chain_id in chain_ids}
    through: dict[str, int] = dict.fromkeys(chain_ids, 0)
    for row in await driver.fetch(_STORED, chain_ids):
        key = (row["currency"], row["type"], row["month"], row["fund_id"])
        merged[row["chain_id"]][key] = [int(row["total"]), int(row["entries"])]
        through[row["chain_id"]] = row["through_seq"]
    # From the stored seq forward to the wanted one, or back from it if it is behind.
    bounds = {
        chain_id: (min(through[chain_id], wanted), max(through[chain_id], wanted))
        for chain_id in chain_ids
        for wanted in [LAST_SEQ if upto[chain_id] is None else upto[chain_id] or 0]
    }
    lows = [bounds[chain_id][0] for chain_id in chain_ids]
    highs = [bounds[chain_id][1] for chain_id in chain_ids]
    seq = dict(through)
    for row in await driver.fetch(_GROUPS, chain_ids, lows, highs):
        chain_id = row["chain_id"]
        forward = through[chain_id] == bounds[chain_id][0]
        key = (row["currency"], row["type"], row["month"], row["fund_id"])
        _merge(merged[chain_id], key, int(row["total"]), row["entries"], 1 if forward else -1)
        if forward:
            seq[chain_id] = max(seq[chain_id], row["last_seq"])
    for chain_id, wanted in upto.items():
        if wanted is not None:
            seq[chain_id] = wanted
    return {
        chain_id: ChainSums(
            seq=seq[chain_id],
            groups=[
                Group(*key, total=total, entries=entries)
                for key, (total, entries) in sorted(groups.items())
                if entries
            ],
        )
        for chain_id, groups in merged.items()
    }


async def advance(session: AsyncSession, *, chain_id: str, head_seq: int) -> int:
    """Move the chain's stored totals forward by at most :data:`BATCH` entries towards
    ``head_seq``; the caller commits. Returns the ``through_seq`` written (or kept)."""
    through = await _through(session, chain_id=chain_id)
    target = min(head_seq, through + BATCH)
    if target <= through:
        return through
    current = await sums(session, upto={chain_id: target})
    groups = current[chain_id].groups
    if not groups:
        return through
    driver = await ledger.driver_connection(session)
    await driver.execute(
        _UPSERT,
        chain_id,
        [g.currency for g in groups],
        [g.type for g in groups],
        [g.month for g in groups],
        [g.fund_id for g in groups],
        [g.total for g in groups],
        [g.entries for g in groups],
        target,
    )
    return target


async def advance_all(database: Database, *, chains: int = 1000) -> int:
    """One pass of the totals job: each public chain whose totals are behind its head is
    brought up to it, :data:`BATCH` entries per transaction. Returns how many entries the
    totals advanced by."""
    async with database.session() as session:
        driver = await ledger.driver_connection(session)
        behind = [(row["id"], row["head_seq"]) for row in await driver.fetch(_BEHIND, chains)]
    advanced = 0
    for chain_id, head_seq in behind:
        while True:
            async with database.session() as session:
                before = await _through(session, chain_id=chain_id)
                after = await advance(session, chain_id=chain_id, head_seq=head_seq)
                await session.commit()
            advanced += after - before
            if after <= before or after >= head_seq:
                break
    return advanced


async def _through(session: AsyncSession, *, chain_id: str) -> int:
    driver = await ledger.driver_connection(session)
    rows = await driver.fetch(_STORED, [chain_id])
    return max((row["through_seq"] for row in rows), default=0)
