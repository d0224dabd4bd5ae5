"""The database's guards on payouts of connected accounts (migration 0013_connected_payouts),
attacked directly in SQL as the service's role, amply_app: no payout entry without the payout
row that names it, payout terms never rewritten, entry references set once and naming the
right entries, no deletes, and the sandbox's balance transactions written once. One honest
payout written the same way is accepted, so the refusals are the guards' doing."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import donate, onboarded_organisation, sandbox_succeed
from tests.test_money_row_guards import entry_sql, one
from tests.test_wallet_schema import run_as_app


async def funded_organisation(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """An organisation with a completed 2,500 EUR sandbox donation, and its owner's headers."""
    owner, organisation_id = await onboarded_organisation(client)
    await sandbox_succeed(client, await donate(client, organisation_id))
    return organisation_id, owner.headers


async def paid_out(client: httpx.AsyncClient, organisation_id: str, headers: dict[str, str]) -> str:
    response = await client.post(
        f"/v1/sandbox/organisations/{organisation_id}/payouts",
        json={"amount": 1000},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    payout_id: str = response.json()["id"]
    return payout_id


def payout_row(payout_id: str, organisation_id: str, amount: int = 1000) -> str:
    return (
        "INSERT INTO connected_payouts (id, organisation_id, stripe_account_id, amount, "
        f"currency, status) VALUES ('{payout_id}', '{organisation_id}', 'acct_attack', "
        f"{amount}, 'EUR', 'pending')"
    )


async def test_an_honest_payout_written_in_sql_is_accepted(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    organisation_id, _ = await funded_organisation(client)
    run_as_app(
        test_database,
        payout_row("po_honest", organisation_id),
        entry_sql("honest", organisation_id, "payout_sent", -1000, "EUR"),
        "UPDATE connected_payouts SET sent_entry_id = 'led_honest' WHERE id = 'po_honest'",
    )
    assert one(
        superuser_sql, "SELECT sent_entry_id FROM connected_payouts WHERE id = 'po_honest'"
    ) == ("led_honest")


async def test_a_payout_entry_without_its_payout_is_refused(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    # Money leaving the organisation's chain that no payout accounts for (0011 refused
    # every payout entry; 0013 accepts only those a payout row names).
    organisation_id, _ = await funded_organisation(client)
    for entry_type, amount in (("payout_sent", -1000), ("payout_failed", 1000)):
        with pytest.raises(psycopg.errors.CheckViolation, match="no record names"):
            run_as_app(
                test_database, entry_sql("ghost", organisation_id, entry_type, amount, "EUR")
            )
    # Nor does a payout of another organisation vouch for it.
    other_id, _ = await funded_organisation(client)
    with pytest.raises(psycopg.errors.CheckViolation, match="must be sent by"):
        run_as_app(
            test_database,
            payout_row("po_elsewhere", other_id),
            entry_sql("stray", organisation_id, "payout_sent", -1000, "EUR"),
            "UPDATE connected_payouts SET sent_entry_id = 'led_stray' WHERE id = 'po_elsewhere'",
        )
    assert (
        superuser_sql(
            "SELECT 1 FROM ledger_entries WHERE chain_id = %s AND type LIKE 'payout%%'",
            organisation_id,
        )
        == []
    )


async def test_a_payout_starts_with_no_entry(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    organisation_id, headers = await funded_organisation(client)
    payout_id = await paid_out(client, organisation_id, headers)
    sent = one(
        superuser_sql, "SELECT sent_entry_id FROM connected_payouts WHERE id = %s", payout_id
    )
    with pytest.raises(psycopg.errors.CheckViolation, match="starts with no ledger entry"):
        run_as_app(
            test_database,
            "INSERT INTO connected_payouts (id, organisation_id, stripe_account_id, amount, "
            f"currency, status, sent_entry_id) VALUES ('po_copy', '{organisation_id}', "
            f"'acct_attack', 1000, 'EUR', 'pending', '{sent}')",
        )


async def test_a_payouts_terms_and_entries_are_never_rewritten(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    organisation_id, headers = await funded_organisation(client)
    payout_id = await paid_out(client, organisation_id, headers)
    received = one(
        superuser_sql,
        "SELECT id FROM ledger_entries WHERE chain_id = %s AND type = 'donation_received'",
        organisation_id,
    )
    # The amount, through a column the service may not update at all...
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run_as_app(
            test_database, f"UPDATE connected_payouts SET amount = 1 WHERE id = '{payout_id}'"
        )
    # ...and the recorded entry swapped for another.
    with pytest.raises(psycopg.errors.CheckViolation, match="set once"):
        run_as_app(
            test_database,
            f"UPDATE connected_payouts SET sent_entry_id = '{received}' WHERE id = '{payout_id}'",
        )
    assert one(superuser_sql, "SELECT amount FROM connected_payouts WHERE id = %s", payout_id) == (
        1000
    )


async def test_a_payout_names_only_entries_of_its_type_amount_and_chain(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    organisation_id, headers = await funded_organisation(client)
    payout_id = await paid_out(client, organisation_id, headers)
    received = one(
        superuser_sql,
        "SELECT id FROM ledger_entries WHERE chain_id = %s AND type = 'donation_received'",
        organisation_id,
    )
    # A fresh payout claiming the donation's receipt as its sent entry.
    with pytest.raises(psycopg.errors.CheckViolation, match="must be sent by a payout_sent"):
        run_as_app(
            test_database,
            payout_row("po_claim", organisation_id),
            f"UPDATE connected_payouts SET sent_entry_id = '{received}' WHERE id = 'po_claim'",
        )
    # A failure that returns more than was paid out.
    with pytest.raises(psycopg.errors.CheckViolation, match="must fail by a payout_failed"):
        run_as_app(
            test_database,
            entry_sql("more", organisation_id, "payout_failed", 5000, "EUR"),
            f"UPDATE connected_payouts SET failed_entry_id = 'led_more' WHERE id = '{payout_id}'",
        )
    # A failure of a payout that never left.
    with pytest.raises(psycopg.errors.CheckViolation, match="fails_after_sent"):
        run_as_app(
            test_database,
            payout_row("po_unsent", organisation_id),
            entry_sql("back", organisation_id, "payout_failed", 1000, "EUR"),
            "UPDATE connected_payouts SET failed_entry_id = 'led_back' WHERE id = 'po_unsent'",
        )
    assert one(superuser_sql, "SELECT count(*) FROM connected_payouts") == 1


async def test_payouts_and_sandbox_balance_transactions_are_never_deleted_or_rewritten(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    organisation_id, headers = await funded_organisation(client)
    payout_id = await paid_out(client, organisation_id, headers)
    for statement in (
        f"DELETE FROM connected_payouts WHERE id = '{payout_id}'",
        "DELETE FROM sandbox_balance_transactions",
        "UPDATE sandbox_balance_transactions SET amount = 0",
        f"UPDATE connected_payouts SET organisation_id = organisation_id WHERE id = '{payout_id}'",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            run_as_app(test_database, statement)
    assert one(superuser_sql, "SELECT count(*) FROM sandbox_balance_transactions") == 2
