"""The running totals of the public chains (migration 0015): stored totals plus the entries
after them always equal a full recomputation, whatever the stored rows' age; the job advances
them in batches without double counting; only the service role may write them, forward."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import psycopg
import pytest

from amply.kit.db import Database
from amply.ledger import chain_totals, checkpoints
from amply.ledger import service as ledger
from amply.models.enums import EntryType
from amply.site.service import summary_of
from amply.transparency import service as transparency
from tests.conftest import IsolatedDatabase, run_signer
from tests.factories import append, make_chain

_FULL = """
SELECT currency, type, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month,
       coalesce(metadata::jsonb ->> 'fund_id', '') AS fund_id, sum(amount), count(*)
  FROM ledger_entries WHERE chain_id = $1 AND seq <= $2 GROUP BY 1, 2, 3, 4
"""
_TYPES: list[EntryType] = [
    EntryType.DONATION_RECEIVED,
    EntryType.PAYMENT_PROCESSING_FEE,
    EntryType.DONATION_REFUNDED,
    EntryType.PAYOUT_SENT,
]


async def _recompute(database: Database, chain_id: str, upto: int) -> list[chain_totals.Group]:
    async with database.session() as session:
        driver = await ledger.driver_connection(session)
        rows = await driver.fetch(_FULL, chain_id, upto)
    return sorted(chain_totals.Group(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows)


async def _read(database: Database, chain_id: str, upto: int | None) -> chain_totals.ChainSums:
    async with database.session() as session:
        return (await chain_totals.sums(session, upto={chain_id: upto}))[chain_id]


async def _random_appends(database: Database, chain_id: str, rng: random.Random, n: int) -> None:
    for _ in range(n):
        entry_type = rng.choice(_TYPES)
        amount = rng.randint(1, 10_000)
        metadata: dict[str, ledger.JSONValue] = {}
        if rng.random() < 0.5:
            metadata["fund_id"] = rng.choice(["fund_a", "fund_b"])
        await append(
            database,
            chain_id,
            amount if entry_type == "donation_received" else -amount,
            entry_type=entry_type,
            currency=rng.choice(["EUR", "USD"]),
            metadata=metadata,
        )


async def _advance(database: Database, chain_id: str, head_seq: int) -> int:
    async with database.session() as session:
        through = await chain_totals.advance(session, chain_id=chain_id, head_seq=head_seq)
        await session.commit()
    return through


async def test_stored_totals_plus_the_entries_after_them_equal_a_full_recomputation(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain_totals, "BATCH", 7)  # several batches per pass
    rng = random.Random(21)  # noqa: S311 - reproducible appends, not secrets
    chain_id = await make_chain(database)
    assert await _read(database, chain_id, None) == chain_totals.ChainSums(seq=0, groups=[])
    await _random_appends(database, chain_id, rng, 30)
    # No stored row yet: everything comes from the entries.
    for upto in (None, 1, 17, 30):
        expected = await _recompute(database, chain_id, 30 if upto is None else upto)
        assert (await _read(database, chain_id, upto)).groups == expected, upto
    assert await _advance(database, chain_id, 30) == 7  # one batch: a stale row
    await _random_appends(database, chain_id, rng, 25)
    for upto in (None, 3, 7, 8, 40, 55):  # behind, at and past the stored seq
        expected = await _recompute(database, chain_id, 55 if upto is None else upto)
        read = await _read(database, chain_id, upto)
        assert read.groups == expected, upto
        assert read.seq == (55 if upto is None else upto)
    assert await chain_totals.advance_all(database) == 55 - 7
    async with database.session() as session:
        driver = await ledger.driver_connection(session)
        stored = await driver.fetch("SELECT DISTINCT through_seq FROM chain_totals")
    assert [row[0] for row in stored] == [55]
    assert (await _read(database, chain_id, 20)).groups == await _recompute(database, chain_id, 20)
    # The public API's totals and the site's are the same figures.
    async with database.session() as session:
        api = (await transparency.totals_by_chain(session, chain_ids=[chain_id]))[chain_id]
        site = (await summary_of(session, chain_id=chain_id, head_seq=55)).totals()
    expected_net: dict[str, int] = defaultdict(int)
    for group in await _recompute(database, chain_id, 55):
        expected_net[group.currency] += group.total
    assert {t.currency: t.net for t in api} == dict(expected_net)
    assert api == site


async def test_two_writers_never_double_count(database: Database) -> None:
    chain_id = await make_chain(database)
    for amount in range(1, 41):
        await append(database, chain_id, amount, entry_type="donation_received")
    # Writers racing for different and equal heads, in any order of commit.
    await asyncio.gather(*(_advance(database, chain_id, head) for head in (10, 40, 25, 40, 5)))
    assert await _advance(database, chain_id, 40) == 40
    async with database.session() as session:
        driver = await ledger.driver_connection(session)
        rows = await driver.fetch("SELECT total, entries, through_seq FROM chain_totals")
    assert [(int(r[0]), r[1], r[2]) for r in rows] == [(sum(range(1, 41)), 40, 40)]


async def test_only_the_service_writes_the_totals_and_only_forward(
    database: Database, test_database: IsolatedDatabase
) -> None:
    chain_id = await make_chain(database)
    await append(database, chain_id, 500, entry_type="donation_received")
    await append(database, chain_id, 300, entry_type="donation_received")
    assert await _advance(database, chain_id, 1) == 1
    with psycopg.connect(test_database.urls.app, autocommit=True) as app:
        for statement, error in [
            ("DELETE FROM chain_totals", psycopg.errors.InsufficientPrivilege),
            ("TRUNCATE chain_totals", psycopg.errors.InsufficientPrivilege),
            ("UPDATE chain_totals SET through_seq = 1, total = 9", psycopg.errors.CheckViolation),
            ("UPDATE chain_totals SET through_seq = 0", psycopg.errors.CheckViolation),
            (
                "UPDATE chain_totals SET type = 'deposit', through_seq = 2",
                psycopg.errors.CheckViolation,
            ),
        ]:
            with pytest.raises(error):
                app.execute(statement)
    assert (await _read(database, chain_id, 2)).groups[0].total == 800


async def test_the_background_signers_loop_keeps_the_totals(database: Database) -> None:
    chain_id = await make_chain(database)
    await append(database, chain_id, 700, entry_type="donation_received")
    task = asyncio.create_task(checkpoints.run_signer(database, signer=run_signer(), interval=0.05))
    try:
        for _ in range(200):
            async with database.session() as session:
                driver = await ledger.driver_connection(session)
                kept = await driver.fetch("SELECT total, through_seq FROM chain_totals")
            if kept:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert [(int(row[0]), row[1]) for row in kept] == [(700, 1)]
