"""The database's guards on what Stripe takes back from a charge (migration
0012_charge_reversals), attacked directly in SQL as the service's role, amply_app: dispute and
deposit reversal entries exist only with the record of the balance transaction they book, and
that record tells the truth and is written once. The honest flows are
tests/integration/test_stripe_disputes.py and test_stripe_deposit_reversals.py."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from amply.donations import service as donations
from amply.kit.db import Database
from amply.ledger import service as ledger
from amply.models import Donation, Transaction
from amply.payments.stripe_objects import BalanceMove, DisputeState
from amply.wallets import deposit_reversals
from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import fund_wallet, onboarded_organisation, sign_up, wallet_id_of
from tests.test_money_row_guards import completed_donation, entry_sql, one
from tests.test_wallet_schema import run_as_app

COLUMNS = (
    "INSERT INTO charge_balance_transactions (id, kind, dispute_id, donation_id, deposit_id, "
    "chain_id, currency, amount, fee, chain_amount, loss_amount, journal_id, chain_entry_id, "
    "loss_entry_id, fee_entry_id) VALUES "
)


def record_sql(
    record_id: str,
    *,
    kind: str,
    deposit_id: str,
    chain_id: str,
    amount: int,
    chain_amount: int,
    journal: str,
    chain_entry: str | None,
    loss_entry: str | None = None,
    currency: str = "USD",
) -> str:
    def quoted(value: str | None) -> str:
        return "NULL" if value is None else f"'{value}'"

    dispute = "'dp_attack'" if kind == "deposit_dispute" else "NULL"
    return (
        f"{COLUMNS}('{record_id}', '{kind}', {dispute}, NULL, '{deposit_id}', '{chain_id}', "
        f"'{currency}', {amount}, 0, {chain_amount}, {amount - chain_amount}, '{journal}', "
        f"{quoted(chain_entry)}, {quoted(loss_entry)}, NULL)"
    )


async def funded_wallet(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> tuple[str, str]:
    """A wallet with a completed 1,000 deposit: (wallet id, deposit id)."""
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)
    await fund_wallet(database, wallet_id, 1_000)
    deposit_id = one(
        superuser_sql,
        "SELECT id FROM transactions WHERE wallet_id = %s AND kind = 'deposit'",
        wallet_id,
    )
    return wallet_id, str(deposit_id)


async def test_a_deposit_reversal_without_its_record_is_refused(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
) -> None:
    # A reversal nobody recorded would take a user's money with no refund or dispute behind it.
    wallet_id, _ = await funded_wallet(client, database, superuser_sql)

    for entry_type, amount, chain in (
        ("deposit_reversed", -500, wallet_id),
        ("deposit_reinstated", 500, wallet_id),
        ("deposit_loss_recovered", 500, "plat_losses"),
    ):
        with pytest.raises(psycopg.errors.CheckViolation, match="no record names"):
            run_as_app(test_database, entry_sql("unrecorded", chain, entry_type, amount, "USD"))
    assert (
        one(superuser_sql, "SELECT count(*) FROM ledger_entries WHERE chain_id = %s", wallet_id)
        == 2
    )


async def test_an_honest_refund_record_is_accepted_and_never_changes(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
) -> None:
    wallet_id, deposit_id = await funded_wallet(client, database, superuser_sql)
    run_as_app(
        test_database,
        entry_sql("honest", wallet_id, "deposit_reversed", -400, "USD"),
        record_sql(
            "ch_honest:refunded:400",
            kind="deposit_refund",
            deposit_id=deposit_id,
            chain_id=wallet_id,
            amount=-400,
            chain_amount=-400,
            journal="jrn_honest",
            chain_entry="led_honest",
        ),
    )

    # The service may neither rewrite nor forget a record (forgetting it would take the money
    # twice); not even the owner can change one.
    for attack in (
        "UPDATE charge_balance_transactions SET amount = -1 WHERE id = 'ch_honest:refunded:400'",
        "DELETE FROM charge_balance_transactions WHERE id = 'ch_honest:refunded:400'",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            run_as_app(test_database, attack)
    with pytest.raises(psycopg.errors.CheckViolation, match="written once"):
        superuser_sql(
            "UPDATE charge_balance_transactions SET chain_amount = 0 "
            "WHERE id = 'ch_honest:refunded:400'"
        )
    assert one(superuser_sql, "SELECT chain_amount FROM charge_balance_transactions") == -400


async def test_a_forged_record_cannot_claim_other_money(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
) -> None:
    wallet_id, deposit_id = await funded_wallet(client, database, superuser_sql)
    bonus = one(
        superuser_sql,
        "SELECT id FROM ledger_entries WHERE chain_id = %s AND type = 'welcome_bonus'",
        wallet_id,
    )

    # A record naming the wallet's welcome bonus as its reversal: no money would leave.
    with pytest.raises(psycopg.errors.CheckViolation, match="do not move"):
        run_as_app(
            test_database,
            record_sql(
                "ch_forged:refunded:500",
                kind="deposit_refund",
                deposit_id=deposit_id,
                chain_id=wallet_id,
                amount=-500,
                chain_amount=-500,
                journal="jrn_forged",
                chain_entry=str(bonus),
            ),
        )
    # A record that says 500 left the wallet when its entry took 100.
    with pytest.raises(psycopg.errors.CheckViolation, match="do not move"):
        run_as_app(
            test_database,
            entry_sql("short", wallet_id, "deposit_reversed", -100, "USD"),
            record_sql(
                "ch_short:refunded:500",
                kind="deposit_refund",
                deposit_id=deposit_id,
                chain_id=wallet_id,
                amount=-500,
                chain_amount=-500,
                journal="jrn_short",
                chain_entry="led_short",
            ),
        )
    # A record on another wallet than its deposit's.
    other = await wallet_id_of(database, (await sign_up(client)).user_id)
    with pytest.raises(psycopg.errors.CheckViolation, match="does not belong"):
        run_as_app(
            test_database,
            entry_sql("elsewhere", other, "deposit_reinstated", 100, "USD"),
            record_sql(
                "txn_elsewhere",
                kind="deposit_dispute",
                deposit_id=deposit_id,
                chain_id=other,
                amount=100,
                chain_amount=100,
                journal="jrn_elsewhere",
                chain_entry="led_elsewhere",
            ),
        )
    assert one(superuser_sql, "SELECT count(*) FROM charge_balance_transactions") == 0


async def test_a_wallet_never_gets_back_more_than_it_lost(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
) -> None:
    # A "reinstatement" of a chargeback that never happened mints money into the wallet, and
    # a "recovery" of a loss that never happened mints it on the platform's chain.
    wallet_id, deposit_id = await funded_wallet(client, database, superuser_sql)

    with pytest.raises(psycopg.errors.CheckViolation, match="returns more than"):
        run_as_app(
            test_database,
            entry_sql("minted", wallet_id, "deposit_reinstated", 5_000, "USD"),
            record_sql(
                "txn_minted",
                kind="deposit_dispute",
                deposit_id=deposit_id,
                chain_id=wallet_id,
                amount=5_000,
                chain_amount=5_000,
                journal="jrn_minted",
                chain_entry="led_minted",
            ),
        )
    with pytest.raises(psycopg.errors.CheckViolation, match="returns more than"):
        run_as_app(
            test_database,
            entry_sql("recovered", "plat_losses", "deposit_loss_recovered", 300, "USD"),
            entry_sql("repaid", wallet_id, "deposit_reversed", -300, "USD").replace(
                "jrn_repaid", "jrn_recovered"
            ),
            record_sql(
                f"{deposit_id}:repayment",
                kind="deposit_repayment",
                deposit_id=deposit_id,
                chain_id=wallet_id,
                amount=0,
                chain_amount=-300,
                journal="jrn_recovered",
                chain_entry="led_repaid",
                loss_entry="led_recovered",
            ),
        )
    # Nor can a deposit be refunded beyond what it paid.
    with pytest.raises(psycopg.errors.CheckViolation, match="returns more than"):
        run_as_app(
            test_database,
            entry_sql("overrefund", wallet_id, "deposit_reversed", -1_000, "USD"),
            entry_sql("overloss", "plat_losses", "deposit_loss", -500, "USD").replace(
                "jrn_overloss", "jrn_overrefund"
            ),
            record_sql(
                "ch_over:refunded:1500",
                kind="deposit_refund",
                deposit_id=deposit_id,
                chain_id=wallet_id,
                amount=-1_500,
                chain_amount=-1_000,
                journal="jrn_overrefund",
                chain_entry="led_overrefund",
                loss_entry="led_overloss",
            ),
        )


async def test_a_dispute_entry_without_its_balance_transaction_record_is_refused(
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
        await donations.record_dispute(
            session,
            donation,
            dispute=DisputeState(
                "dp_recorded",
                2500,
                status="lost",
                moves=(BalanceMove("txn_recorded", -2500, 1500, "EUR"),),
            ),
        )
        await session.commit()

    # A reinstatement (or a returned fee) no balance transaction of Stripe's stands behind.
    for entry_type, amount in (("dispute_funds_reinstated", 2500), ("dispute_fee_refunded", 1500)):
        with pytest.raises(psycopg.errors.CheckViolation, match="no record names"):
            run_as_app(
                test_database, entry_sql("unbacked", organisation_id, entry_type, amount, "EUR")
            )
    # A record of a dispute the donation does not have.
    with pytest.raises(psycopg.errors.CheckViolation, match="does not belong"):
        run_as_app(
            test_database,
            entry_sql("stranger", organisation_id, "dispute_funds_reinstated", 2500, "EUR"),
            f"{COLUMNS}('txn_stranger', 'donation_dispute', 'dp_other', '{donation_id}', NULL, "
            f"'{organisation_id}', 'EUR', 2500, 0, 2500, 0, 'jrn_stranger', 'led_stranger', "
            "NULL, NULL)",
        )
    assert (
        one(
            superuser_sql,
            "SELECT sum(amount) FROM ledger_entries WHERE chain_id = %s AND type LIKE 'dispute%%'",
            organisation_id,
        )
        == -4000
    )


# --- The restriction, through the API ----------------------------------------------------------


async def test_a_wallet_owing_a_shortfall_sends_no_money_out(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    # A deposit charged back for more than the wallet still holds: the wallet gives all it
    # holds, plat_losses bears the rest, and no money may leave the wallet until it is repaid.
    alice, bob = await sign_up(client), await sign_up(client)
    wallet_id = await wallet_id_of(database, alice.user_id)
    await fund_wallet(database, wallet_id, 1_000)
    deposit_id = one(
        superuser_sql,
        "SELECT id FROM transactions WHERE wallet_id = %s AND kind = 'deposit'",
        wallet_id,
    )
    async with database.session() as session:
        deposit = await session.get(Transaction, deposit_id, with_for_update=True)
        assert deposit is not None
        held = (await ledger.get_balances(session, chain_id=wallet_id))["USD"]
        await deposit_reversals.record_dispute(
            session,
            deposit,
            dispute_id="dp_shortfall",
            charge_id="ch_shortfall",
            moves=[BalanceMove("txn_shortfall", -(held + 700), 1_500, "USD")],
        )
        await session.commit()
    await fund_wallet(database, wallet_id, 300)  # money may still come in
    _, organisation_id = await onboarded_organisation(client)
    asked = await client.post(
        "/v1/requests",
        json={"payer": alice.username, "amount": 100, "description": "Tickets"},
        headers={**bob.headers, "Idempotency-Key": "restricted-request-0001"},
    )
    assert asked.status_code == 201, asked.text

    def keyed(key: str) -> dict[str, str]:
        return {**alice.headers, "Idempotency-Key": key}

    refused = [
        await client.post(
            "/v1/transfers",
            json={"recipient": bob.username, "amount": 100, "description": "Lunch"},
            headers=keyed("restricted-transfer-0001"),
        ),
        await client.post(
            "/v1/wallet/donations",
            json={"organisation_id": organisation_id, "amount": 100},
            headers=keyed("restricted-gift-00000001"),
        ),
        await client.post(
            "/v1/withdrawals",
            json={"amount": 100, "bank_name": "First Community Bank", "speed": "standard"},
            headers=keyed("restricted-withdrawal-01"),
        ),
        await client.post(
            f"/v1/requests/{asked.json()['id']}/pay", headers=keyed("restricted-pay-00000001")
        ),
    ]

    assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [
        (409, "wallet_restricted")
    ] * 4
    assert one(
        superuser_sql, "SELECT sum(amount) FROM ledger_entries WHERE chain_id = 'plat_losses'"
    ) == -(700 + 1_500)
    async with database.session() as session:
        assert await deposit_reversals.shortfall(session, wallet_id=wallet_id) == 700
        assert (await ledger.get_balances(session, chain_id=wallet_id))["USD"] == 300
