"""The database's own guards on wallets and their transactions (migration 0005), attacked
directly in SQL as the service's role: whatever the application does, these hold."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from amply.kit.db import Database
from tests.conftest import IsolatedDatabase
from tests.factories import Account, sign_up, wallet_id_of
from tests.wallets.test_money_requests import ask, call
from tests.wallets.test_transfers import act, befriend, send


def run_as_app(test_database: IsolatedDatabase, *statements: str) -> None:
    """Run statements in one transaction as amply_app, committing at the end."""
    with psycopg.connect(test_database.urls.app) as connection:
        for statement in statements:
            connection.execute(statement)  # type: ignore[arg-type]
        connection.commit()


def status_of(test_database: IsolatedDatabase, table: str, row_id: str) -> str:
    with psycopg.connect(test_database.urls.app) as connection:
        row = connection.execute(
            f"SELECT status FROM {table} WHERE id = %s",  # type: ignore[arg-type]
            (row_id,),
        ).fetchone()
        assert row is not None
        status: str = row[0]
        return status


@pytest.fixture
async def completed(client: httpx.AsyncClient) -> tuple[Account, Account, str]:
    alice, bob = await sign_up(client), await sign_up(client)
    await befriend(client, alice, bob)
    transfer = await send(client, alice, bob, 250)
    assert transfer["status"] == "completed"
    return alice, bob, transfer["id"]


async def test_a_user_cannot_be_created_without_a_wallet(test_database: IsolatedDatabase) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="without a wallet"):
        run_as_app(
            test_database,
            "INSERT INTO users (id, name, username, email, password_hash) VALUES "
            "('usr_000000000000000000000000', 'X', 'walletless', 'x@example.org', '$argon2id$x')",
        )


@pytest.mark.parametrize(
    "change",
    [
        "amount = amount + 1",
        "currency = 'EUR'",
        "counterparty_wallet_id = wallet_id",
        "description = 'something else'",
        "journal_id = 'jrn_other'",
        "status = 'cancelled'",
        "status = 'pending_confirmation'",
    ],
)
async def test_a_completed_transfer_never_changes(
    test_database: IsolatedDatabase, completed: tuple[Account, Account, str], change: str
) -> None:
    _, _, transfer_id = completed
    with pytest.raises(psycopg.errors.CheckViolation):
        run_as_app(test_database, f"UPDATE transactions SET {change} WHERE id = '{transfer_id}'")
    assert status_of(test_database, "transactions", transfer_id) == "completed"


@pytest.mark.parametrize("target", ["completed", "blocked", "pending_confirmation"])
async def test_a_cancelled_transfer_stays_cancelled(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, target: str
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    transfer = await send(client, alice, bob, 100)
    await act(client, alice, transfer["id"], "cancel")
    with pytest.raises(psycopg.errors.CheckViolation):
        run_as_app(
            test_database,
            f"UPDATE transactions SET status = '{target}' WHERE id = '{transfer['id']}'",
        )


async def test_a_transfer_cannot_claim_a_journal_that_moved_other_money(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    completed: tuple[Account, Account, str],
) -> None:
    alice, bob, transfer_id = completed
    other = await send(client, alice, bob, 999)
    # Pointing another transfer at this one's journal (250, not 999) fails.
    with psycopg.connect(test_database.urls.app) as connection:
        [(journal_id,)] = connection.execute(
            "SELECT journal_id FROM transactions WHERE id = %s", (transfer_id,)
        ).fetchall()
    assert other["status"] == "completed"
    with pytest.raises(psycopg.errors.CheckViolation, match="never change"):
        run_as_app(
            test_database,
            f"UPDATE transactions SET journal_id = '{journal_id}' WHERE id = '{other['id']}'",
        )
    sender = await wallet_id_of(database, alice.user_id)
    recipient = await wallet_id_of(database, bob.user_id)
    with pytest.raises(psycopg.errors.CheckViolation, match="moved 0 on"):
        run_as_app(
            test_database,
            "INSERT INTO transactions (id, kind, status, wallet_id, counterparty_wallet_id, "
            "amount, currency, description, journal_id, completed_at) VALUES "
            f"('txn_000000000000000000000000', 'transfer', 'completed', '{sender}', "
            f"'{recipient}', 5000, 'USD', 'free money', 'jrn_nothing', now())",
        )


async def test_completed_means_a_journal_exists(
    database: Database, test_database: IsolatedDatabase, client: httpx.AsyncClient
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    sender = await wallet_id_of(database, alice.user_id)
    recipient = await wallet_id_of(database, bob.user_id)
    with pytest.raises(psycopg.errors.CheckViolation):
        run_as_app(
            test_database,
            "INSERT INTO transactions (id, kind, status, wallet_id, counterparty_wallet_id, "
            "amount, currency, description, completed_at) VALUES "
            f"('txn_000000000000000000000000', 'transfer', 'completed', '{sender}', "
            f"'{recipient}', 5000, 'USD', 'free money', now())",
        )


@pytest.mark.parametrize("target", ["declined", "cancelled", "expired", "pending"])
async def test_a_paid_request_stays_paid(
    client: httpx.AsyncClient,
    test_database: IsolatedDatabase,
    completed: tuple[Account, Account, str],
    target: str,
) -> None:
    alice, bob, _ = completed
    request = await ask(client, bob, alice, amount=10)
    await call(client, alice, request["id"], "pay", 201)
    with pytest.raises(psycopg.errors.CheckViolation):
        run_as_app(
            test_database,
            f"UPDATE money_requests SET status = '{target}' WHERE id = '{request['id']}'",
        )
    assert status_of(test_database, "money_requests", request["id"]) == "paid"


async def test_a_request_cannot_have_two_payments(
    client: httpx.AsyncClient,
    test_database: IsolatedDatabase,
    completed: tuple[Account, Account, str],
) -> None:
    alice, bob, transfer_id = completed
    request = await ask(client, bob, alice, amount=250)
    await call(client, alice, request["id"], "pay", 201)
    with pytest.raises(psycopg.errors.CheckViolation):  # terms never change, either
        run_as_app(
            test_database,
            f"UPDATE transactions SET money_request_id = '{request['id']}' "
            f"WHERE id = '{transfer_id}'",
        )


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM transactions",
        "DELETE FROM wallets",
        "DELETE FROM money_requests",
        "DELETE FROM cards",
        "TRUNCATE transactions",
    ],
)
async def test_the_service_role_cannot_delete_wallet_records(
    test_database: IsolatedDatabase, completed: tuple[Account, Account, str], statement: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run_as_app(test_database, statement)


async def test_a_wallet_keeps_its_owner_and_currency(
    database: Database, test_database: IsolatedDatabase, completed: tuple[Account, Account, str]
) -> None:
    alice, bob, _ = completed
    wallet_id = await wallet_id_of(database, alice.user_id)
    for change in ("currency = 'EUR'", f"user_id = '{bob.user_id}'"):
        with pytest.raises(
            psycopg.errors.CheckViolation, match="may not change its chain, owner or currency"
        ):
            run_as_app(test_database, f"UPDATE wallets SET {change} WHERE id = '{wallet_id}'")


async def test_a_wallet_chain_never_goes_below_zero_in_sql(
    database: Database, test_database: IsolatedDatabase, completed: tuple[Account, Account, str]
) -> None:
    alice, _, _ = completed
    wallet_id = await wallet_id_of(database, alice.user_id)
    with pytest.raises(psycopg.errors.CheckViolation, match="insufficient funds"):
        run_as_app(
            test_database,
            "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, metadata, "
            f"journal_id) VALUES ('led_x1', '{wallet_id}', 'withdrawal', -1000000, 'USD', "
            "'{}', 'jrn_x1')",
        )
