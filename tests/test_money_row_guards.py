"""The database's guards on every row that moves or records money (migration
0008_money_row_guards), attacked directly in SQL as the service's role, amply_app: each attack
here committed before that migration, and each is refused now, whatever the application does.
The honest flows that write these rows are the API and service suites."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from amply.donations import service as donations
from amply.kit.db import Database
from amply.models import Donation
from amply.payments.stripe_objects import BalanceMove, DisputeState
from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import (
    create_api_key,
    donate,
    fund_wallet,
    make_chain,
    onboarded_organisation,
    sandbox_succeed,
    sign_up,
    wallet_id_of,
)
from tests.test_wallet_schema import run_as_app


def one(superuser_sql: SuperuserSql, statement: str, *params: object) -> Any:
    [(value,)] = superuser_sql(statement, *params)
    return value


async def checkout(client: httpx.AsyncClient, organisation_id: str) -> str:
    """A pending donation of 2,500 EUR: its id."""
    body = await donate(client, organisation_id)
    donation = body["donation"]
    assert isinstance(donation, dict)
    donation_id: str = donation["id"]
    return donation_id


async def completed_donation(client: httpx.AsyncClient, organisation_id: str) -> str:
    body = await donate(client, organisation_id)
    await sandbox_succeed(client, body)
    donation = body["donation"]
    assert isinstance(donation, dict)
    donation_id: str = donation["id"]
    return donation_id


def welcome_bonus_entry(superuser_sql: SuperuserSql, wallet_id: str) -> str:
    entry_id: str = one(
        superuser_sql,
        "SELECT id FROM ledger_entries WHERE chain_id = %s AND type = 'welcome_bonus'",
        wallet_id,
    )
    return entry_id


def received_entry(superuser_sql: SuperuserSql, donation_id: str) -> str:
    entry_id: str = one(
        superuser_sql, "SELECT received_entry_id FROM donations WHERE id = %s", donation_id
    )
    return entry_id


def complete_with(donation_id: str, entry_id: str) -> str:
    return (
        f"UPDATE donations SET status = 'completed', received_entry_id = '{entry_id}', "
        f"completed_at = now() WHERE id = '{donation_id}'"
    )


def entry_sql(entry_id: str, chain_id: str, entry_type: str, amount: int, currency: str) -> str:
    return (
        "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, metadata, journal_id) "
        f"VALUES ('led_{entry_id}', '{chain_id}', '{entry_type}', {amount}, '{currency}', '{{}}', "
        f"'jrn_{entry_id}')"
    )


# --- Donations --------------------------------------------------------------------------------


async def test_a_donation_cannot_claim_another_chains_entry(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    donation_id = await checkout(client, organisation_id)
    donor = await sign_up(client)
    bonus = welcome_bonus_entry(superuser_sql, await wallet_id_of(database, donor.user_id))

    with pytest.raises(psycopg.errors.CheckViolation, match="must be received by"):
        run_as_app(test_database, complete_with(donation_id, bonus))
    assert one(superuser_sql, "SELECT status FROM donations WHERE id = %s", donation_id) == (
        "pending"
    )


async def test_two_donations_cannot_claim_one_received_entry(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    first = await completed_donation(client, organisation_id)
    second = await checkout(client, organisation_id)  # the same 2,500 EUR, to the same chain

    with pytest.raises(psycopg.errors.UniqueViolation, match="donations_received_entry_key"):
        run_as_app(test_database, complete_with(second, received_entry(superuser_sql, first)))


async def test_a_donation_cannot_be_created_already_received(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    # A copy of a completed donation, created completed with the receipt of the original.
    _, organisation_id = await onboarded_organisation(client)
    original = await completed_donation(client, organisation_id)
    copy = "don_" + "C" * 24
    columns = "organisation_id, amount, currency, provider, stripe_account_id, received_entry_id"

    with pytest.raises(psycopg.errors.CheckViolation, match="must start pending"):
        run_as_app(
            test_database,
            f"INSERT INTO donations (id, {columns}, receipt_token_hash, payment_intent_id, "
            f"status, completed_at) SELECT '{copy}', {columns}, sha256('copy'), 'pi_copy', "
            f"'completed', now() FROM donations WHERE id = '{original}'",
        )
    assert superuser_sql("SELECT 1 FROM donations WHERE id = %s", copy) == []


async def test_a_donations_refunded_amount_grows_only_with_its_refund_entry(
    client: httpx.AsyncClient, test_database: IsolatedDatabase
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    donation_id = await completed_donation(client, organisation_id)

    with pytest.raises(psycopg.errors.CheckViolation, match="donation_refunded entry"):
        run_as_app(
            test_database,
            "UPDATE donations SET amount_refunded = amount, status = 'refunded' "
            f"WHERE id = '{donation_id}'",
        )


async def test_a_donations_fee_entry_is_its_own_fee_and_set_once(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    completed = await completed_donation(client, organisation_id)
    pending = await checkout(client, organisation_id)
    received = received_entry(superuser_sql, completed)

    # A +2,500 receipt passed off as a donation's 2,500 fee...
    with pytest.raises(psycopg.errors.CheckViolation, match=r"fee entry .* must debit"):
        run_as_app(
            test_database,
            "UPDATE donations SET processing_fee = 2500, processing_fee_currency = 'EUR', "
            f"processing_fee_entry_id = '{received}' WHERE id = '{pending}'",
        )
    # ... and a recorded fee swapped for another entry.
    with pytest.raises(psycopg.errors.CheckViolation, match="set once"):
        run_as_app(
            test_database,
            f"UPDATE donations SET processing_fee_entry_id = '{received}' WHERE id = '{completed}'",
        )


async def test_a_donation_received_entry_without_a_donation_is_refused(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)

    with pytest.raises(psycopg.errors.CheckViolation, match="no record names"):
        run_as_app(
            test_database, entry_sql("gift", organisation_id, "donation_received", 1_000_000, "EUR")
        )
    assert superuser_sql("SELECT 1 FROM ledger_entries WHERE chain_id = %s", organisation_id) == []


# --- Refunds and disputes ---------------------------------------------------------------------


async def test_refund_rows_are_never_rewritten(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    donation_id = await completed_donation(client, organisation_id)
    refund_id = "rfd_" + "R" * 24
    run_as_app(
        test_database,
        "INSERT INTO donation_refunds (id, donation_id, amount, reason, status, "
        f"provider_refund_id, requested_by_user_id) VALUES ('{refund_id}', '{donation_id}', "
        f"100, 'duplicate', 'failed', 're_attack', '{owner.user_id}')",
    )
    for change in ("amount = 2500", "provider_refund_id = 're_other'", "status = 'succeeded'"):
        with pytest.raises(psycopg.errors.CheckViolation, match="donation_refunds"):
            run_as_app(
                test_database, f"UPDATE donation_refunds SET {change} WHERE id = '{refund_id}'"
            )
    assert superuser_sql(
        "SELECT amount, provider_refund_id, status FROM donation_refunds WHERE id = %s", refund_id
    ) == [(100, "re_attack", "failed")]


async def test_a_dispute_withdraws_its_funds_once_for_good(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    donation_id = await completed_donation(client, organisation_id)
    async with database.session() as session:
        donation = await session.get(Donation, donation_id, with_for_update=True)
        assert donation is not None
        withdrawal = BalanceMove("txn_guard", -2500, 1500, "EUR")
        dispute = DisputeState("dp_guard", 2500, status="needs_response", moves=(withdrawal,))
        assert await donations.record_dispute(session, donation, dispute=dispute)
        await session.commit()

    # Its record gone, the next event would withdraw the funds a second time.
    for attack in (
        "DELETE FROM charge_balance_transactions WHERE id = 'txn_guard'",
        "UPDATE charge_balance_transactions SET id = 'txn_other' WHERE id = 'txn_guard'",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            run_as_app(test_database, attack)
    assert one(
        superuser_sql,
        "SELECT chain_entry_id FROM charge_balance_transactions WHERE id = 'txn_guard'",
    ).startswith("led_")


async def test_a_dispute_cannot_claim_an_entry_of_other_money(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    # A withdrawal marker set to the donation's own receipt: the funds would never leave.
    _, organisation_id = await onboarded_organisation(client)
    donation_id = await completed_donation(client, organisation_id)
    received = received_entry(superuser_sql, donation_id)

    with pytest.raises(psycopg.errors.CheckViolation, match="must name entries"):
        run_as_app(
            test_database,
            "INSERT INTO donation_disputes (id, donation_id, amount, currency, status, "
            f"withdrawn_entry_id) VALUES ('dp_fake', '{donation_id}', 2500, 'EUR', 'lost', "
            f"'{received}')",
        )


async def test_a_dispute_fee_rides_only_with_its_disputes_withdrawal(
    client: httpx.AsyncClient, database: Database, test_database: IsolatedDatabase
) -> None:
    # An extra fee appended later to an old dispute's journal debits the organisation with
    # no dispute to show for it.
    _, organisation_id = await onboarded_organisation(client)
    donation_id = await completed_donation(client, organisation_id)
    async with database.session() as session:
        donation = await session.get(Donation, donation_id, with_for_update=True)
        assert donation is not None
        withdrawal = BalanceMove("txn_fee", -2500, 1500, "EUR")
        dispute = DisputeState("dp_fee", 2500, status="needs_response", moves=(withdrawal,))
        await donations.record_dispute(session, donation, dispute=dispute)
        await session.commit()

    with pytest.raises(psycopg.errors.CheckViolation, match="no record names"):
        run_as_app(
            test_database,
            "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, journal_id) "
            "SELECT 'led_fee', chain_id, 'dispute_fee', -1500, 'EUR', journal_id "
            "FROM ledger_entries WHERE id = (SELECT chain_entry_id "
            "FROM charge_balance_transactions WHERE id = 'txn_fee')",
        )


# --- Wallet money: deposits, bonuses, journals --------------------------------------------------


async def test_a_deposit_without_a_deposit_record_is_refused(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
) -> None:
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)

    with pytest.raises(psycopg.errors.CheckViolation, match="no record names the deposit"):
        run_as_app(test_database, entry_sql("mint", wallet_id, "deposit", 1_000_000, "USD"))
    assert (
        one(superuser_sql, "SELECT count(*) FROM ledger_entries WHERE chain_id = %s", wallet_id)
        == 1
    )


async def test_a_leg_added_to_a_recorded_journal_is_refused(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
) -> None:
    # The journal of a real 500 deposit, credited a second time under the same journal id.
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)
    await fund_wallet(database, wallet_id, 500)

    with pytest.raises(psycopg.errors.CheckViolation, match="no record names the deposit"):
        run_as_app(
            test_database,
            "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, journal_id) "
            f"SELECT 'led_again', wallet_id, 'deposit', 1000000, currency, journal_id "
            f"FROM transactions WHERE wallet_id = '{wallet_id}' AND kind = 'deposit'",
        )


async def test_an_extra_welcome_bonus_without_its_record_is_refused(
    client: httpx.AsyncClient, database: Database, test_database: IsolatedDatabase
) -> None:
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)

    with pytest.raises(psycopg.errors.CheckViolation, match="no record names the welcome_bonus"):
        run_as_app(
            test_database,
            "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, journal_id) VALUES "
            f"('led_bonus2', '{wallet_id}', 'welcome_bonus', 1000, 'USD', 'jrn_bonus2'), "
            "('led_promo2', 'plat_promotions', 'promotion_granted', -1000, 'USD', 'jrn_bonus2')",
        )


async def test_a_wallet_gets_one_welcome_bonus_even_with_a_record(
    client: httpx.AsyncClient, database: Database, test_database: IsolatedDatabase
) -> None:
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)

    with pytest.raises(psycopg.errors.UniqueViolation, match="transactions_one_welcome_bonus"):
        run_as_app(
            test_database,
            "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, journal_id) VALUES "
            f"('led_bonus3', '{wallet_id}', 'welcome_bonus', 1000, 'USD', 'jrn_bonus3'), "
            "('led_promo3', 'plat_promotions', 'promotion_granted', -1000, 'USD', 'jrn_bonus3')",
            "INSERT INTO transactions (id, kind, status, wallet_id, amount, currency, description, "
            f"journal_id, completed_at) VALUES ('txn_{'B' * 24}', 'welcome_bonus', 'completed', "
            f"'{wallet_id}', 1000, 'USD', 'Welcome again', 'jrn_bonus3', now())",
        )


async def test_a_card_deposit_cannot_be_created_completed(
    client: httpx.AsyncClient, database: Database, test_database: IsolatedDatabase
) -> None:
    # A "card" deposit that no PaymentIntent paid, recorded as completed with its own journal.
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)

    with pytest.raises(psycopg.errors.CheckViolation, match="does not name where"):
        run_as_app(
            test_database,
            entry_sql("card", wallet_id, "deposit", 1_000_000, "USD"),
            "INSERT INTO transactions (id, kind, status, wallet_id, amount, currency, description, "
            f"source, journal_id, completed_at) VALUES ('txn_{'D' * 24}', 'deposit', 'completed', "
            f"'{wallet_id}', 1000000, 'USD', 'Card deposit', 'card', 'jrn_card', now())",
        )


async def test_a_withdrawal_settles_only_naming_its_payout(
    client: httpx.AsyncClient, database: Database, test_database: IsolatedDatabase
) -> None:
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)

    with pytest.raises(psycopg.errors.CheckViolation, match="does not name where"):
        run_as_app(
            test_database,
            entry_sql("out", wallet_id, "withdrawal", -500, "USD"),
            "INSERT INTO transactions (id, kind, status, wallet_id, amount, currency, description, "
            f"speed, journal_id) VALUES ('txn_{'W' * 24}', 'withdrawal', 'pending', "
            f"'{wallet_id}', 500, 'USD', 'Out', 'standard', 'jrn_out')",
            f"UPDATE transactions SET status = 'paid', completed_at = now() "
            f"WHERE id = 'txn_{'W' * 24}'",
        )


async def test_an_ownerless_chain_with_entries_cannot_become_an_organisation(
    client: httpx.AsyncClient, database: Database, test_database: IsolatedDatabase
) -> None:
    # Money minted on a chain nobody owns (exempt from the record rule) stays nobody's.
    owner = await sign_up(client)
    chain_id = await make_chain(database)
    run_as_app(test_database, entry_sql("orphan", chain_id, "donation_received", 10**6, "EUR"))

    with pytest.raises(psycopg.errors.CheckViolation, match="already holds entries"):
        run_as_app(
            test_database,
            "INSERT INTO organisations (id, name, slug, country, default_currency) VALUES "
            f"('{chain_id}', 'Adopted', 'adopted-chain', 'DE', 'EUR')",
            "INSERT INTO organisation_members (organisation_id, user_id, role) VALUES "
            f"('{chain_id}', '{owner.user_id}', 'owner')",
        )


# --- Cards, money requests, API keys, idempotency keys -------------------------------------------


async def test_a_removed_card_stays_removed(
    client: httpx.AsyncClient, database: Database, test_database: IsolatedDatabase
) -> None:
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)
    card_id = "card_" + "K" * 24
    run_as_app(
        test_database,
        "INSERT INTO cards (id, wallet_id, provider, payment_method_id, brand, last4, "
        f"exp_month, exp_year) VALUES ('{card_id}', '{wallet_id}', 'sandbox', 'pm_guard', "
        "'visa', '4242', 12, 2030)",
        f"UPDATE cards SET removed_at = now() WHERE id = '{card_id}'",
    )
    for change in ("removed_at = NULL", "payment_method_id = 'pm_other'", "last4 = '0000'"):
        with pytest.raises(psycopg.errors.CheckViolation, match="cards"):
            run_as_app(test_database, f"UPDATE cards SET {change} WHERE id = '{card_id}'")


async def test_a_money_request_is_paid_only_by_a_completed_transfer(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    from tests.wallets.test_money_requests import ask

    requester, payer = await sign_up(client), await sign_up(client)
    request = await ask(client, requester, payer)

    with pytest.raises(psycopg.errors.CheckViolation, match="paid by no completed transfer"):
        run_as_app(
            test_database,
            "UPDATE money_requests SET status = 'paid', resolved_at = now() "
            f"WHERE id = '{request['id']}'",
        )
    assert one(superuser_sql, "SELECT status FROM money_requests WHERE id = %s", request["id"]) == (
        "pending"
    )


async def test_a_revoked_api_key_stays_revoked(
    client: httpx.AsyncClient, test_database: IsolatedDatabase
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    key_id, _ = await create_api_key(client, owner, organisation_id)
    revoked = await client.delete(
        f"/v1/organisations/{organisation_id}/api-keys/{key_id}", headers=owner.headers
    )
    assert revoked.status_code == 200, revoked.text

    for change in ("revoked_at = NULL", "read_only = NOT read_only", "token_hash = token_hash"):
        statement = f"UPDATE api_keys SET {change} WHERE id = '{key_id}'"
        if change == "token_hash = token_hash":  # no change at all is no attack
            run_as_app(test_database, statement)
            continue
        with pytest.raises(psycopg.errors.CheckViolation, match="stays revoked"):
            run_as_app(test_database, statement)


def store_key(key: str, expires: str) -> str:
    return (
        "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response_body, "
        f"expires_at) VALUES ('guard', '{key}', sha256('x'), 200, '{{}}', now() + {expires})"
    )


async def test_only_expired_idempotency_keys_can_be_deleted(
    test_database: IsolatedDatabase, superuser_sql: SuperuserSql
) -> None:
    run_as_app(
        test_database,
        store_key("live", "interval '1 day'"),
        store_key("gone", "interval '-1 second'"),
    )

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="has not expired"):
        run_as_app(test_database, "DELETE FROM idempotency_keys WHERE scope = 'guard'")
    run_as_app(test_database, "DELETE FROM idempotency_keys WHERE expires_at <= now()")
    assert superuser_sql("SELECT key FROM idempotency_keys WHERE scope = 'guard'") == [("live",)]
