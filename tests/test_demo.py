"""``amply demo``: a realistic demo through the API's own paths, every chain verified."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from amply.cli import main
from amply.kit.db import Database
from amply.kit.settings import get_settings
from amply.ledger import service as ledger
from tests.conftest import IsolatedDatabase


def test_the_demo_fills_a_database_whose_every_chain_verifies_and_runs_again(
    test_database: IsolatedDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", test_database.urls.app)
    monkeypatch.setenv("DATABASE_MIGRATION_URL", test_database.urls.migration)
    monkeypatch.delenv("AMPLY_STRIPE_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    try:
        assert main(["demo"]) == 0
        first = capsys.readouterr().out
        assert main(["demo"]) == 0  # idempotent: the second run finds the first's demo
        second = capsys.readouterr().out
        # Every organisation's chain agrees with the sandbox's simulated Stripe balance.
        reconciled = main(["reconcile"])
        reconciliation = capsys.readouterr().out
    finally:
        get_settings.cache_clear()

    assert reconciled == 0, reconciliation
    assert first.startswith("The demo is ready:"), first
    assert second.startswith("The demo was already in this database:"), second
    for output in (first, second):
        assert output.count("/v1/public/organisations/org_") == 3, output
        assert "every chain verifies" in output, output

    with psycopg.connect(test_database.superuser_url) as connection:
        counts = dict(connection.execute("SELECT type, count(*) FROM ledger_entries GROUP BY type"))
        held = connection.execute(
            "SELECT count(*) FROM transactions WHERE status = 'pending_confirmation'"
        ).fetchone()
        open_requests = connection.execute(
            "SELECT status, count(*) FROM money_requests GROUP BY status ORDER BY status"
        ).fetchall()
        chain_ids = [row[0] for row in connection.execute("SELECT id FROM ledger_chains")]
    assert counts["donation_received"] >= 50, counts
    assert counts["donation_refunded"] == 6, counts
    assert counts["dispute_funds_withdrawn"] == 3, counts
    assert counts["transfer_out"] >= 6, counts
    assert counts["wallet_donation_received"] == 4, counts
    assert counts["welcome_bonus"] == 6, counts
    assert held == (1,)
    assert open_requests == [("declined", 1), ("paid", 1), ("pending", 1)]
    assert len(chain_ids) >= 10
    assert asyncio.run(broken_chains(test_database, chain_ids)) == []


async def broken_chains(database: IsolatedDatabase, chain_ids: list[str]) -> list[str]:
    """Every chain verified again, here, independently of the demo's own check."""
    db = Database(database.urls.app)
    try:
        async with db.session() as session:
            results = {
                chain_id: await ledger.verify_chain(session, chain_id=chain_id)
                for chain_id in chain_ids
            }
    finally:
        await db.dispose()
    return [result.verdict() for result in results.values() if not result.ok]
