"""``amply reconcile``, run as an operator runs it (a child process) against the Stripe test
server and the test's database, and the periodic job's metrics: every difference between an
organisation's chain and its balance transactions is a row, and the exit code says which."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from amply.kit.db import Database
from amply.webhooks import reconciliation
from tests.conftest import IsolatedDatabase
from tests.factories import donate, onboarded_organisation, sandbox_succeed
from tests.integration.test_stripe_payouts import (
    World,
    chain,
    donate_and_pay,
    eventually,
    open_world,
)
from tests.stripe_harness import ServeApp, StripeServer
from tests.support.serving import environment_without, free_port
from tests.test_wallet_schema import run_as_app


@pytest.fixture
async def world(
    stripe_server: StripeServer, serve_app: ServeApp, test_database: IsolatedDatabase
) -> AsyncIterator[World]:
    """An organisation with a connected account on the Stripe test server, taking donations."""
    async with open_world(stripe_server, serve_app, test_database) as found:
        yield found


def run_reconcile(
    test_database: IsolatedDatabase, tmp_path: Path, *args: str, stripe_base: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``amply reconcile ARGS`` in a fresh process: Stripe mode with ``stripe_base``, else
    sandbox mode."""
    settings = {"DATABASE_URL": test_database.urls.app, "AMPLY_ENVIRONMENT": "test"}
    if stripe_base is not None:
        settings |= {"AMPLY_STRIPE_SECRET_KEY": "sk_test_amply_harness"}
        settings |= {"AMPLY_STRIPE_API_BASE": stripe_base, "AMPLY_STRIPE_TIMEOUT_SECONDS": "5"}
    return subprocess.run(
        [sys.executable, "-m", "amply.cli", "reconcile", *args],
        cwd=tmp_path,  # no .env of the repository
        env=environment_without("AMPLY_STRIPE", "DATABASE_", **settings),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def rows(stdout: str) -> list[list[str]]:
    """The table's rows (the header line left out), each split into its cells."""
    lines = stdout.strip().splitlines()
    assert lines[0].split() == [
        "organisation",
        "difference",
        "group",
        "currency",
        "stripe",
        "chain",
    ]
    return [line.split() for line in lines[1:]]


async def settled(world: World, database: Database, count: int) -> None:
    """Wait until the organisation's chain holds ``count`` entries (webhooks landed)."""

    async def done() -> bool:
        return len(await chain(database, world.organisation_id)) >= count

    await eventually(done)


async def test_a_chain_that_agrees_with_stripe_exits_0_with_an_empty_table(
    world: World, database: Database, test_database: IsolatedDatabase, tmp_path: Path
) -> None:
    intent = await donate_and_pay(world, 10_000, key="integration-reconcile-0001")
    await donate_and_pay(world, 2_500, key="integration-reconcile-0002")
    await world.stripe.v1.refunds.create_async(
        {"payment_intent": intent, "amount": 4_000}, options={"stripe_account": world.account_id}
    )
    world.server.payout(world.account_id, 3_000)
    world.server.payout(world.account_id, 1_000, fail=True)
    # 2 donations with fees, a refund, a payout, a payout and its failure.
    await settled(world, database, 4 + 1 + 1 + 2)

    done = run_reconcile(
        test_database, tmp_path, world.organisation_id, stripe_base=world.server.url
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(done.stdout) == []
    assert "1 organisations reconciled, 0 differences" in done.stderr


async def test_each_difference_is_a_row_and_exits_1(
    world: World, database: Database, test_database: IsolatedDatabase, tmp_path: Path
) -> None:
    refunded = await donate_and_pay(world, 10_000, key="integration-reconcile-0003")
    await settled(world, database, 2)
    world.server._control("DELETE", "/_config/webhooks")  # from here on, events are lost
    on_account: Any = {"stripe_account": world.account_id}
    # A refund whose event never arrived: the entry is missing.
    await world.stripe.v1.refunds.create_async(
        {"payment_intent": refunded, "amount": 2_500}, options=on_account
    )
    # A payout the chain never heard of: a balance transaction missing on the chain.
    payout = world.server.payout(world.account_id, 1_000)
    # A donation recorded without Stripe's fee: its fee is missing.
    unfeed = await world.http.post(
        "/v1/donations",
        json={"organisation_id": world.organisation_id, "amount": 4_000, "currency": "USD"},
        headers={"Idempotency-Key": "integration-reconcile-0004"},
    )
    donation_id = unfeed.json()["donation"]["id"]
    intent_id = unfeed.json()["payment"]["payment_intent_id"]
    card: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = await world.stripe.v1.payment_methods.create_async(
        {"type": "card", "card": card}, options=on_account
    )
    await world.stripe.v1.payment_intents.update_async(
        intent_id, {"payment_method": method.id}, options=on_account
    )
    intent = await world.stripe.v1.payment_intents.confirm_async(intent_id, options=on_account)
    charge = str(intent.latest_charge)
    metadata = json.dumps({"charge": charge, "donation_id": donation_id})
    run_as_app(
        test_database,
        "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, metadata, journal_id) "
        f"VALUES ('led_nofee', '{world.organisation_id}', 'donation_received', 4000, 'USD', "
        f"'{metadata}', 'jrn_nofee')",
        "UPDATE donations SET status = 'completed', received_entry_id = 'led_nofee', "
        f"completed_at = now(), charge_id = '{charge}' WHERE id = '{donation_id}'",
    )
    # A charge on the account that is no donation of Amply's: an extra balance transaction.
    stranger = await world.stripe.v1.payment_intents.create_async(
        {"amount": 700, "currency": "usd", "payment_method": method.id}, options=on_account
    )
    stranger = await world.stripe.v1.payment_intents.confirm_async(stranger.id, options=on_account)
    # (A second passes, so that every balance transaction predates the chain's reading.)
    await asyncio.sleep(1.1)

    done = run_reconcile(test_database, tmp_path, stripe_base=world.server.url)

    assert done.returncode == 1, done.stdout + done.stderr
    org = world.organisation_id
    refunded_charge = (
        await world.stripe.v1.payment_intents.retrieve_async(refunded, options=on_account)
    ).latest_charge
    assert sorted(rows(done.stdout)) == sorted(
        [
            [org, "amount_differs", "charge", str(refunded_charge), "USD", "7500", "10000"],
            [org, "fee_differs", "charge", charge, "USD", "146", "0"],
            [org, "missing_on_chain", "charge", str(stranger.latest_charge), "USD", "700", "0"],
            [org, "missing_on_chain", "payout", payout["id"], "USD", "-1000", "0"],
        ]
    )
    as_json = run_reconcile(test_database, tmp_path, org, "--json", stripe_base=world.server.url)
    assert as_json.returncode == 1
    [report] = json.loads(as_json.stdout)
    assert report["error"] is None
    assert len(report["differences"]) == 4


async def test_an_unreachable_stripe_exits_2(
    world: World, test_database: IsolatedDatabase, tmp_path: Path
) -> None:
    done = run_reconcile(test_database, tmp_path, stripe_base=f"http://127.0.0.1:{free_port()}")

    assert done.returncode == 2, done.stdout + done.stderr
    assert world.organisation_id in done.stderr
    assert "could not" in done.stderr or "did not list" in done.stderr


async def test_an_unknown_organisation_exits_2(
    test_database: IsolatedDatabase, tmp_path: Path
) -> None:
    done = run_reconcile(test_database, tmp_path, "org_NoSuchOrganisation")

    assert done.returncode == 2
    assert "no organisation org_NoSuchOrganisation" in done.stderr


async def test_the_sandbox_reconciles_against_its_own_balance_transactions(
    client: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    tmp_path: Path,
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    checkout = await donate(client, organisation_id)
    await sandbox_succeed(client, checkout)
    await sandbox_succeed(client, await donate(client, organisation_id, amount=1_000))
    payment = checkout["payment"]
    assert isinstance(payment, dict)
    refund = await client.post(
        f"/v1/sandbox/payments/{payment['payment_intent_id']}/refund",
        json={"amount": 500},
        headers=owner.headers,
    )
    assert refund.status_code == 200, refund.text
    payouts = f"/v1/sandbox/organisations/{organisation_id}/payouts"
    too_much = await client.post(payouts, json={"amount": 100_000}, headers=owner.headers)
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "payout_exceeds_balance"
    first = (await client.post(payouts, json={"amount": 1_500}, headers=owner.headers)).json()
    second = (await client.post(payouts, json={"amount": 700}, headers=owner.headers)).json()
    assert first["sent_entry_id"] is not None
    paid = await client.post(f"{payouts}/{first['id']}/paid", headers=owner.headers)
    failed = await client.post(f"{payouts}/{second['id']}/fail", headers=owner.headers)
    assert (paid.json()["status"], failed.json()["status"]) == ("paid", "failed")
    assert failed.json()["failed_entry_id"] is not None
    again = await client.post(f"{payouts}/{second['id']}/fail", headers=owner.headers)
    assert again.status_code == 409
    public = await client.get(f"/v1/public/organisations/{organisation_id}")
    [totals] = public.json()["totals"]
    assert totals["payouts"] == 1_500
    await asyncio.sleep(1.1)  # every simulated transaction predates the chain's reading

    agreed = run_reconcile(test_database, tmp_path, organisation_id)
    assert agreed.returncode == 0, agreed.stdout + agreed.stderr
    assert rows(agreed.stdout) == []

    # A balance transaction the chain knows nothing of.
    run_as_app(
        test_database,
        "INSERT INTO sandbox_balance_transactions (id, stripe_account_id, type, source, amount, "
        "fee, currency, created_at) SELECT 'txn_sandbox_extra', stripe_account_id, 'payout', "
        "'po_sandbox_extra', -100, 0, 'EUR', now() - interval '1 minute' FROM organisations "
        f"WHERE id = '{organisation_id}'",
    )
    differs = run_reconcile(test_database, tmp_path, organisation_id)
    assert differs.returncode == 1
    assert rows(differs.stdout) == [
        [organisation_id, "missing_on_chain", "payout", "po_sandbox_extra", "EUR", "-100", "0"]
    ]


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_periodic_job_updates_the_metrics(world: World, database: Database) -> None:
    await donate_and_pay(world, 10_000, key="integration-reconcile-0005")
    await settled(world, database, 2)
    await asyncio.sleep(1.1)
    before = time.time()
    source = reconciliation.StripeBalance(world.settings)
    job = asyncio.create_task(
        reconciliation.run_reconciliation(database, source=source, interval=0.2)
    )
    try:

        async def reconciled() -> bool:
            last = sample("amply_reconciliation_last_success_timestamp")
            return last is not None and last >= before

        await eventually(reconciled)
        assert sample("amply_reconciliation_differences", organisation=world.organisation_id) == 0
        world.server._control("DELETE", "/_config/webhooks")
        world.server.payout(world.account_id, 2_000)  # never reaches the chain
        await asyncio.sleep(1.1)

        async def noticed() -> bool:
            found = sample("amply_reconciliation_differences", organisation=world.organisation_id)
            return found == 1

        await eventually(noticed)
    finally:
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job


def entry(
    entry_id: str, entry_type: str, amount: int, **metadata: str
) -> reconciliation.ChainEntry:
    return reconciliation.ChainEntry(entry_id, entry_type, amount, "USD", dict(metadata))


def transaction(
    txn_id: str, type_: str, amount: int, fee: int, source: str, charge: str | None = None
) -> reconciliation.BalanceTxn:
    group = reconciliation.group_of(
        transaction_id=txn_id, type_=type_, source=source, charge=charge
    )
    return reconciliation.BalanceTxn(txn_id, type_, amount, fee, "USD", "available", 0, group)


def test_matching_groups_by_charge_and_payout_and_leaves_wallet_gifts_out() -> None:
    entries = [
        entry("led_1", "donation_received", 1_000, charge="ch_1", donation_id="don_1"),
        entry("led_2", "payment_processing_fee", -59, balance_transaction="txn_1"),
        entry("led_3", "donation_refunded", -400, charge="ch_1", donation_id="don_1"),
        # A failed refund's reversal names only its donation and refund.
        entry("led_4", "donation_refund_reversed", 400, donation_id="don_1", refund="re_1"),
        entry("led_5", "wallet_donation_received", 5_000),  # Amply's own money
        entry("led_6", "payout_sent", -500, payout="po_1"),
        entry("led_7", "donation_received", 300, charge="ch_gone", donation_id="don_2"),
    ]
    transactions = [
        transaction("txn_1", "charge", 1_000, 59, "ch_1"),
        transaction("txn_2", "refund", -400, 0, "re_1", charge="ch_1"),
        transaction("txn_3", "refund_failure", 400, 0, "re_1", charge="ch_1"),
        transaction("txn_4", "payout", -500, 0, "po_1"),
    ]

    report = reconciliation.compare(
        organisation_id="org_1", account_id="acct_1", entries=entries, transactions=transactions
    )

    assert report.differences == [
        reconciliation.Difference("org_1", "missing_at_stripe", "charge ch_gone", "USD", 0, 300)
    ]
    assert report.entries == 6  # the wallet gift is not counted
    assert "missing_at_stripe" in reconciliation.table([report])
