"""Payouts of a connected account on the organisation's public chain, over real HTTP: the app
(uvicorn) and the Stripe test server (``tests/support/stripe_payouts.py``) with signed
webhooks. Each payout lands once, whatever the order or repetition of its events, and the
chain's balance equals the sum of the account's balance transactions.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import text

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.main import create_app
from tests.conftest import IsolatedDatabase
from tests.factories import Account, create_organisation, sign_up
from tests.stripe_harness import StripeServer, make_event, sign_payload

WEBHOOK_SECRET = "whsec_amply_payouts"


@dataclass
class World:
    http: httpx.AsyncClient
    stripe: stripe.StripeClient
    server: StripeServer
    owner: Account
    organisation_id: str
    account_id: str
    settings: Settings


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Wait for a webhook's effect: the server delivers events a moment after the call."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the webhook's effect did not arrive")
        await asyncio.sleep(0.05)


def stripe_settings(server: StripeServer, **extra: Any) -> Settings:
    return Settings(
        environment="test",
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
        stripe_secret_key=server.secret_key,
        stripe_publishable_key=server.publishable_key,
        stripe_connect_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=server.url,
        **extra,
    )


@asynccontextmanager
async def open_world(
    stripe_server: StripeServer,
    serve_app: Callable[[Any], AbstractAsyncContextManager[str]],
    test_database: IsolatedDatabase,
) -> AsyncIterator[World]:
    """The app served over HTTP in Stripe mode, with an organisation whose connected account
    takes donations and whose events reach the app as signed webhooks."""
    stripe_server.reset()
    settings = stripe_settings(stripe_server)
    app = create_app(settings, database_url=test_database.urls.app)
    client = stripe.StripeClient(
        stripe_server.secret_key,
        base_addresses={"api": stripe_server.url},
        http_client=stripe.HTTPXClient(allow_sync_methods=False),
    )
    try:
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            stripe_server.register_webhook(f"{url}/v1/webhooks/stripe", WEBHOOK_SECRET)
            owner = await sign_up(http)
            organisation_id = await create_organisation(http, owner)
            created = await http.post(
                f"/v1/organisations/{organisation_id}/stripe-account", headers=owner.headers
            )
            assert created.status_code == 200, created.text
            account_id = created.json()["account_id"]
            stripe_server.set_account(
                account_id, charges_enabled=True, payouts_enabled=True, details_submitted=True
            )
            found = World(http, client, stripe_server, owner, organisation_id, account_id, settings)
            await eventually(lambda: _accepting(found))
            yield found
    finally:
        stripe_server.reset()
        await app.state.database.dispose()


@pytest.fixture
async def world(
    stripe_server: StripeServer,
    serve_app: Callable[[Any], AbstractAsyncContextManager[str]],
    test_database: IsolatedDatabase,
) -> AsyncIterator[World]:
    async with open_world(stripe_server, serve_app, test_database) as found:
        yield found


async def _accepting(world: World) -> bool:
    status = await world.http.get(
        f"/v1/organisations/{world.organisation_id}/stripe-account", headers=world.owner.headers
    )
    return bool(status.json()["accepts_donations"])


async def donate_and_pay(world: World, amount: int, *, key: str) -> str:
    """A donation paid by card on the connected account, on the chain: its PaymentIntent."""
    response = await world.http.post(
        "/v1/donations",
        json={"organisation_id": world.organisation_id, "amount": amount, "currency": "USD"},
        headers={"Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    on_account: Any = {"stripe_account": world.account_id}
    card: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = await world.stripe.v1.payment_methods.create_async(
        {"type": "card", "card": card}, options=on_account
    )
    intent_id = body["payment"]["payment_intent_id"]
    await world.stripe.v1.payment_intents.update_async(
        intent_id, {"payment_method": method.id}, options=on_account
    )
    await world.stripe.v1.payment_intents.confirm_async(intent_id, options=on_account)

    async def completed() -> bool:
        status = await world.http.get(
            f"/v1/donations/{body['donation']['id']}", headers=world.owner.headers
        )
        return bool(status.json()["status"] == "completed")

    await eventually(completed)
    payment_intent_id: str = intent_id
    return payment_intent_id


async def chain(database: Database, organisation_id: str) -> list[ledger.Entry]:
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=organisation_id, limit=1000)
        assert (await ledger.verify_chain(session, chain_id=organisation_id)).ok
    return page.entries


async def stripe_balance(world: World) -> int:
    """The sum of the account's balance transactions (net of fees), over every page."""
    page = await world.stripe.v1.balance_transactions.list_async(
        {"limit": 2}, options={"stripe_account": world.account_id}
    )
    total = 0
    async for transaction in page.auto_paging_iter():
        total += transaction.amount - transaction.fee
    return total


def payout_entries(entries: list[ledger.Entry]) -> list[tuple[str, int, str]]:
    return [
        (e.type, e.amount, json.loads(e.metadata)["payout"])
        for e in entries
        if e.type.startswith("payout_")
    ]


async def deliver(world: World, event: dict[str, Any]) -> httpx.Response:
    """Post a signed event to the app as Stripe would (a redelivery, or one out of order)."""
    payload = json.dumps(event).encode()
    return await world.http.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={
            "Stripe-Signature": sign_payload(payload, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )


async def test_a_paid_payout_lands_once_and_the_chain_equals_stripes_balance(
    world: World, database: Database
) -> None:
    await donate_and_pay(world, 10_000, key="integration-payouts-0001")
    await donate_and_pay(world, 2_500, key="integration-payouts-0002")

    payout = world.server.payout(world.account_id, 9_000)

    async def paid() -> bool:
        rows = await world.http.get(f"/v1/public/organisations/{world.organisation_id}")
        return bool(rows.json()["totals"][0]["payouts"] == 9_000)

    await eventually(paid)
    # Stripe redelivers, and sends the same payout in another event of its own.
    created = make_event(
        "payout.created", {**payout, "status": "pending"}, account=world.account_id
    )
    for event in (created, created, make_event("payout.paid", payout, account=world.account_id)):
        assert (await deliver(world, event)).status_code == 200
    entries = await chain(database, world.organisation_id)
    assert payout_entries(entries) == [("payout_sent", -9_000, payout["id"])]
    assert json.loads(entries[-1].metadata)["balance_transaction"] == payout["balance_transaction"]
    # 12,500 received, Stripe's fees 320 + 103, 9,000 paid out: what Stripe holds.
    assert entries[-1].balance_after == await stripe_balance(world) == 12_500 - 423 - 9_000
    public = await world.http.get(f"/v1/public/organisations/{world.organisation_id}")
    [totals] = public.json()["totals"]
    assert (totals["payouts"], totals["net"]) == (9_000, 3_077)


async def test_a_failed_payout_returns_to_the_chain_once_in_any_order(
    world: World, database: Database
) -> None:
    await donate_and_pay(world, 10_000, key="integration-payouts-0003")
    world.server._control("DELETE", "/_config/webhooks")  # Stripe's events held back...
    failed = world.server.payout(world.account_id, 5_000, fail=True)
    assert failed["status"] == "failed"
    assert failed["failure_balance_transaction"]
    created = {**copy.deepcopy(failed), "status": "pending"}
    created.update(failure_balance_transaction=None, failure_code=None, failure_message=None)
    on = {"account": world.account_id}
    # ...then delivered newest first, with repeats: failed, paid (stale), created, failed.
    for event in (
        make_event("payout.failed", failed, **on),
        make_event("payout.paid", {**created, "status": "paid"}, **on),
        make_event("payout.created", created, **on),
        make_event("payout.failed", failed, **on),
    ):
        response = await deliver(world, event)
        assert response.status_code == 200, response.text

    entries = await chain(database, world.organisation_id)
    assert payout_entries(entries) == [
        ("payout_sent", -5_000, failed["id"]),
        ("payout_failed", 5_000, failed["id"]),
    ]
    assert (
        json.loads(entries[-1].metadata)["balance_transaction"]
        == (failed["failure_balance_transaction"])
    )
    assert entries[-1].balance_after == await stripe_balance(world) == 10_000 - 320
    async with database.session() as session:
        status = await session.scalar(
            text("SELECT status FROM connected_payouts WHERE id = :id"), {"id": failed["id"]}
        )
    assert status == "failed"  # the stale payout.paid did not undo the failure


async def test_a_payout_that_fails_after_it_was_paid_comes_back(
    world: World, database: Database
) -> None:
    await donate_and_pay(world, 4_000, key="integration-payouts-0004")
    payout = world.server.payout(world.account_id, 3_000)

    async def entries_of_types(*types: str) -> bool:
        found = [e.type for e in await chain(database, world.organisation_id)]
        return all(t in found for t in types)

    await eventually(lambda: entries_of_types("payout_sent"))
    world.server.fail_payout(world.account_id, payout["id"])
    await eventually(lambda: entries_of_types("payout_sent", "payout_failed"))

    entries = await chain(database, world.organisation_id)
    assert payout_entries(entries) == [
        ("payout_sent", -3_000, payout["id"]),
        ("payout_failed", 3_000, payout["id"]),
    ]
    assert entries[-1].balance_after == await stripe_balance(world) == 4_000 - 146


async def test_another_accounts_payouts_and_the_platforms_own_touch_no_chain(
    world: World, database: Database
) -> None:
    await donate_and_pay(world, 4_000, key="integration-payouts-0005")
    payout = {
        "id": "po_1Stranger000000",
        "object": "payout",
        "amount": 1_000,
        "currency": "usd",
        "status": "paid",
    }
    for account in ("acct_1Stranger000000", None):
        response = await deliver(world, make_event("payout.paid", payout, account=account))
        assert response.status_code == 200, response.text
    assert payout_entries(await chain(database, world.organisation_id)) == []


async def test_a_canceled_payout_returns_and_a_malformed_one_is_refused(
    world: World, database: Database
) -> None:
    await donate_and_pay(world, 4_000, key="integration-payouts-0006")
    payout = {
        "id": "po_1Canceled0000000",
        "object": "payout",
        "amount": 1_500,
        "currency": "usd",
        "status": "pending",
        "balance_transaction": "txn_1Payout00000000",
    }
    broken = make_event("payout.created", {**payout, "amount": 0}, account=world.account_id)
    refused = await deliver(world, broken)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "webhook_payload_invalid"
    assert payout_entries(await chain(database, world.organisation_id)) == []

    canceled = {**payout, "status": "canceled", "failure_balance_transaction": "txn_1Cancel0"}
    for event in (
        make_event("payout.canceled", canceled, account=world.account_id),
        make_event("payout.created", payout, account=world.account_id),
    ):
        assert (await deliver(world, event)).status_code == 200
    entries = await chain(database, world.organisation_id)
    assert payout_entries(entries) == [
        ("payout_sent", -1_500, payout["id"]),
        ("payout_failed", 1_500, payout["id"]),
    ]
    assert json.loads(entries[-1].metadata)["status"] == "canceled"
