"""Donations end to end over real HTTP: the app (uvicorn) and a Stripe-protocol server
(localstripe, extended with recorded Connect responses, ``tests/support``) talking to each
other with the official ``stripe`` library and signed webhooks.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.main import create_app
from tests.conftest import ClientFactory, IsolatedDatabase, SuperuserSql
from tests.factories import Account, create_organisation, sign_up
from tests.stripe_harness import StripeServer, make_event, recorded, sign_payload

WEBHOOK_SECRET = "whsec_amply_integration"


@dataclass
class World:
    http: httpx.AsyncClient
    stripe: stripe.StripeClient
    server: StripeServer
    owner: Account
    organisation_id: str
    account_id: str


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Wait for a webhook's effect: localstripe delivers events a moment after the call."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("the webhook's effect did not arrive")
        await asyncio.sleep(0.05)


@pytest.fixture
async def world(
    stripe_server: StripeServer,
    serve_app: Callable[[Any], AbstractAsyncContextManager[str]],
    test_database: IsolatedDatabase,
) -> AsyncIterator[World]:
    stripe_server.reset()
    settings = Settings(
        environment="test",
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
        stripe_secret_key=stripe_server.secret_key,
        stripe_publishable_key=stripe_server.publishable_key,
        stripe_connect_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_server.url,
    )
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
            yield World(
                http, client, stripe_server, owner, organisation_id, created.json()["account_id"]
            )
    finally:
        stripe_server.reset()
        await app.state.database.dispose()


async def enable_charges(world: World) -> None:
    world.server.set_account(
        world.account_id, charges_enabled=True, payouts_enabled=True, details_submitted=True
    )

    async def accepting() -> bool:
        status = await world.http.get(
            f"/v1/organisations/{world.organisation_id}/stripe-account",
            headers=world.owner.headers,
        )
        return bool(status.json()["accepts_donations"])

    await eventually(accepting)


async def pay(world: World, payment_intent_id: str) -> None:
    """Confirm the PaymentIntent with a test card, as Stripe.js does on the donor's page."""
    on_account: Any = {"stripe_account": world.account_id}
    card: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = await world.stripe.v1.payment_methods.create_async(
        {"type": "card", "card": card}, options=on_account
    )
    await world.stripe.v1.payment_intents.update_async(
        payment_intent_id, {"payment_method": method.id}, options=on_account
    )
    await world.stripe.v1.payment_intents.confirm_async(payment_intent_id, options=on_account)


async def donation_status(world: World, checkout: dict[str, Any]) -> dict[str, Any]:
    response = await world.http.get(
        f"/v1/donations/{checkout['donation']['id']}", headers=world.owner.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def checkout(world: World, *, key: str, amount: int = 10_000) -> dict[str, Any]:
    response = await world.http.post(
        "/v1/donations",
        json={
            "organisation_id": world.organisation_id,
            "amount": amount,
            "currency": "USD",
            "donor_name": "Grace",
            "donor_email": "grace@example.org",
        },
        headers={"Idempotency-Key": key, "User-Agent": "donor-browser/1.0"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_onboarding_creates_a_connected_account_and_a_link(world: World) -> None:
    link = await world.http.post(
        f"/v1/organisations/{world.organisation_id}/stripe-account/links",
        json={"refresh_url": "https://org.example/refresh", "return_url": "https://org.example/"},
        headers=world.owner.headers,
    )
    refused = await world.http.post(
        "/v1/donations",
        json={"organisation_id": world.organisation_id, "amount": 500, "currency": "USD"},
    )

    assert world.account_id.startswith("acct_")
    assert link.status_code == 200, link.text
    assert link.json()["url"].startswith("https://connect.stripe.com/setup/s/")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "organisation_not_accepting_donations"
    assert link.json()["purpose"] == "onboarding"
    [create] = world.server.requests("/v1/accounts")
    assert "type" not in create.params
    assert create.params["controller"] == {
        "fees": {"payer": "account"},
        "losses": {"payments": "stripe"},
        "requirement_collection": "stripe",
        "stripe_dashboard": {"type": "full"},
    }
    [asked] = world.server.requests("/v1/account_links")
    assert asked.params["type"] == "account_onboarding"
    assert asked.params["collection_options"] == {
        "fields": "currently_due",
        "future_requirements": "omit",
    }
    assert create.params["metadata"] == {"organisation_id": world.organisation_id}
    assert create.headers["idempotency-key"] == f"account:{world.organisation_id}"


async def test_after_onboarding_the_link_updates_what_stripe_asks_for_next(
    world: World,
) -> None:
    await enable_charges(world)
    world.server.clear_requests()

    link = await world.http.post(
        f"/v1/organisations/{world.organisation_id}/stripe-account/links",
        json={"refresh_url": "https://org.example/refresh", "return_url": "https://org.example/"},
        headers=world.owner.headers,
    )

    assert link.status_code == 200, link.text
    assert link.json()["purpose"] == "update"
    [asked] = world.server.requests("/v1/account_links")
    # Stripe makes no `account_update` links for accounts with their own Dashboard.
    assert asked.params["type"] == "account_onboarding"
    assert asked.params["collection_options"] == {
        "fields": "eventually_due",
        "future_requirements": "include",
    }


async def test_a_paid_donation_reaches_the_chain_once_net_of_stripes_fee(
    world: World, database: Database
) -> None:
    await enable_charges(world)
    world.server.clear_requests()
    first = await checkout(world, key="integration-donation-0001")
    retried = await checkout(world, key="integration-donation-0001")

    assert retried == first
    payment = first["payment"]
    assert payment["stripe_account"] == world.account_id
    assert payment["publishable_key"] == world.server.publishable_key
    assert payment["client_secret"].startswith(payment["payment_intent_id"])
    [create] = world.server.requests("/v1/payment_intents")
    assert create.headers["stripe-account"] == world.account_id
    assert create.headers["idempotency-key"] == f"donation:{first['donation']['id']}"
    assert "application_fee_amount" not in create.params
    assert create.params["metadata"]["donation_id"] == first["donation"]["id"]
    # Nothing about the donor's network or browser: a retry from elsewhere is the same request.
    assert create.params["metadata"] == {
        "donation_id": first["donation"]["id"],
        "organisation_id": world.organisation_id,
    }
    assert create.params["amount"] == "10000"

    await pay(world, payment["payment_intent_id"])

    async def completed() -> bool:
        return (await donation_status(world, first))["status"] == "completed"

    await eventually(completed)
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=world.organisation_id)
        assert (await ledger.verify_chain(session, chain_id=world.organisation_id)).ok
    assert [(e.type, e.amount) for e in page.entries] == [
        ("donation_received", 10_000),
        ("payment_processing_fee", -320),
    ]
    assert '"platform_fee":0' in page.entries[0].metadata
    assert "grace@example.org" not in page.entries[0].metadata
    assert "donor-browser" not in page.entries[0].metadata


async def test_partial_then_full_refund_match_stripes_balance(
    world: World, database: Database
) -> None:
    await enable_charges(world)
    donation = await checkout(world, key="integration-donation-0002")
    await pay(world, donation["payment"]["payment_intent_id"])

    async def status_is(status: str, refunded: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            body = await donation_status(world, donation)
            return bool(body["status"] == status and body["amount_refunded"] == refunded)

        return check

    await eventually(await status_is("completed", 0))
    for key, amount, expected in (
        ("integration-refund-0001", 3_000, ("completed", 3_000)),
        ("integration-refund-0002", None, ("refunded", 10_000)),
    ):
        response = await world.http.post(
            f"/v1/donations/{donation['donation']['id']}/refunds",
            json={"amount": amount, "reason": "requested_by_customer"},
            headers={**world.owner.headers, "Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
        await eventually(await status_is(*expected))

    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=world.organisation_id)
        balances = await ledger.get_balances(session, chain_id=world.organisation_id)
        assert (await ledger.verify_chain(session, chain_id=world.organisation_id)).ok
    refunds = [e.amount for e in page.entries if e.type == "donation_refunded"]
    assert refunds == [-3_000, -7_000]
    transactions = await world.stripe.v1.balance_transactions.list_async(
        options={"stripe_account": world.account_id}
    )
    assert balances == {"USD": sum(t.net for t in transactions.data)} == {"USD": -320}
    refund_requests = world.server.requests("/v1/refunds")
    assert [r.params.get("reason") for r in refund_requests] == ["requested_by_customer"] * 2
    detail = await donation_status(world, donation)
    assert [r["amount"] for r in detail["refunds"]] == [3_000, 7_000]


async def test_a_dispute_arriving_before_the_success_event_fetches_the_payment_fresh(
    world: World, database: Database
) -> None:
    await enable_charges(world)
    donation = await checkout(world, key="integration-donation-0003")
    # Stripe's success event is lost on the way (the endpoint is unreachable)...
    world.server.register_webhook("http://127.0.0.1:9/unreachable", WEBHOOK_SECRET)
    await pay(world, donation["payment"]["payment_intent_id"])
    dispute = {
        **recorded("dispute"),
        "id": "du_integration0003",
        "amount": 10_000,
        "currency": "usd",
        "payment_intent": donation["payment"]["payment_intent_id"],
        "status": "needs_response",
    }
    # The recorded withdrawal, for this dispute's amount: Stripe's record of what it took.
    [withdrawal] = dispute["balance_transactions"]
    dispute["balance_transactions"] = [{**withdrawal, "amount": -10_000, "net": -11_500}]
    event = make_event("charge.dispute.created", dispute, account=world.account_id)
    payload = json.dumps(event).encode()

    # ...and the dispute comes first: the app asks Stripe whether the payment succeeded.
    response = await world.http.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": sign_payload(payload, WEBHOOK_SECRET)},
    )

    assert response.status_code == 200, response.text
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=world.organisation_id)
    assert [(e.type, e.amount) for e in page.entries] == [
        ("donation_received", 10_000),
        ("payment_processing_fee", -320),
        ("dispute_funds_withdrawn", -10_000),
        ("dispute_fee", -1_500),  # from the dispute's recorded balance transaction
    ]
    fetched = world.server.requests(
        f"/v1/payment_intents/{donation['payment']['payment_intent_id']}"
    )
    assert [r.method for r in fetched if r.method == "GET"] == ["GET"]  # POSTs: update, confirm


async def test_when_stripe_is_unreachable_checkout_fails_with_503_and_writes_nothing(
    world: World,
    make_client: ClientFactory,
    superuser_sql: SuperuserSql,
) -> None:
    await enable_charges(world)
    unreachable = Settings(
        environment="test",
        stripe_secret_key=world.server.secret_key,
        stripe_api_base="http://127.0.0.1:9",
        stripe_timeout_seconds=2,
    )
    async with make_client(unreachable) as client:
        response = await client.post(
            "/v1/donations",
            json={"organisation_id": world.organisation_id, "amount": 500, "currency": "USD"},
        )

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "payment_provider_unavailable"
    assert superuser_sql("SELECT count(*) FROM donations") == [(0,)]


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 0},
        {"amount": -100},
        {"amount": 12.5},
        {"amount": "1000"},
        {"amount": 10**13},
        {"currency": "XXX"},
        {"organisation_id": "org_000000000000000000000000"},
        {"fund_id": "fund_000000000000000000000000"},
        {"donor_name": "x" * 101},
        {"message": "x" * 501},
    ],
    ids=lambda change: "-".join(f"{k}={str(v)[:12]}" for k, v in change.items()),
)
async def test_refused_checkouts_never_reach_stripe(
    world: World, superuser_sql: SuperuserSql, change: dict[str, Any]
) -> None:
    await enable_charges(world)
    world.server.clear_requests()
    body = {"organisation_id": world.organisation_id, "amount": 500, "currency": "USD", **change}

    response = await world.http.post("/v1/donations", json=body)

    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()["error"]) == {"type", "code", "message", "param"}
    assert world.server.requests("/v1/payment_intents") == []
    assert superuser_sql("SELECT count(*) FROM donations") == [(0,)]


async def test_creating_the_account_again_returns_it_and_refresh_asks_stripe(world: World) -> None:
    again = await world.http.post(
        f"/v1/organisations/{world.organisation_id}/stripe-account", headers=world.owner.headers
    )
    # Stripe knows more than Amply was told: no account.updated reached Amply for this change.
    world.server.register_webhook("http://127.0.0.1:9/unreachable", WEBHOOK_SECRET)
    world.server.set_account(
        world.account_id, charges_enabled=True, payouts_enabled=False, details_submitted=True
    )
    refreshed = await world.http.post(
        f"/v1/organisations/{world.organisation_id}/stripe-account/refresh",
        headers=world.owner.headers,
    )

    assert again.json()["account_id"] == world.account_id
    assert len(world.server.requests("/v1/accounts")) == 2  # the create, then the refresh
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json() | {"account_id": None} == {
        "object": "stripe_account",
        "provider": "stripe",
        "account_id": None,
        "charges_enabled": True,
        "payouts_enabled": False,
        "details_submitted": True,
        "accepts_donations": True,
        "requirements_due": [],
        "disabled_reason": "requirements.pending_verification",
        "reconnect_reason": None,
    }


# --- The account lifecycle ----------------------------------------------------------------------


async def _account(world: World, http: httpx.AsyncClient | None = None) -> dict[str, Any]:
    response = await (http or world.http).get(
        f"/v1/organisations/{world.organisation_id}/stripe-account", headers=world.owner.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_disconnected_account_takes_no_donations_until_the_organisation_reconnects(
    world: World,
) -> None:
    await enable_charges(world)
    world.server.deauthorize(world.account_id)

    async def disconnected() -> bool:
        return (await _account(world))["reconnect_reason"] == "deauthorized"

    await eventually(disconnected)
    world.server.clear_requests()
    refused = await world.http.post(
        "/v1/donations",
        json={"organisation_id": world.organisation_id, "amount": 500, "currency": "USD"},
    )
    reconnected = await world.http.post(
        f"/v1/organisations/{world.organisation_id}/stripe-account", headers=world.owner.headers
    )

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "organisation_not_accepting_donations"
    assert world.server.requests("/v1/payment_intents") == []
    new = reconnected.json()
    assert new["account_id"] not in (None, world.account_id)
    assert new["reconnect_reason"] is None
    [create] = world.server.requests("/v1/accounts")
    assert create.headers["idempotency-key"] == (
        f"account:{world.organisation_id}:after:{world.account_id}"
    )


async def test_going_live_does_not_take_donations_through_a_test_mode_account(
    world: World, test_database: IsolatedDatabase
) -> None:
    await enable_charges(world)
    live = Settings(
        environment="test",
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
        stripe_secret_key="sk_live_amply_integration",
        stripe_publishable_key="pk_live_amply_integration",
        stripe_connect_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=world.server.url,
    )
    app = create_app(live, database_url=test_database.urls.app)
    world.server.clear_requests()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://amply.test") as http:
            before = await _account(world, http)
            refused = await http.post(
                "/v1/donations",
                json={"organisation_id": world.organisation_id, "amount": 500, "currency": "USD"},
            )
            reconnected = await http.post(
                f"/v1/organisations/{world.organisation_id}/stripe-account",
                headers=world.owner.headers,
            )
    finally:
        await app.state.database.dispose()

    assert before["account_id"] is None
    assert before["reconnect_reason"] == "other_mode"
    assert before["accepts_donations"] is False
    assert refused.status_code == 409, refused.text
    assert world.server.requests("/v1/payment_intents") == []
    assert reconnected.json()["account_id"] not in (None, world.account_id)
    # Back on the test keys, the live account counts as none in turn.
    assert (await _account(world))["reconnect_reason"] == "other_mode"


async def test_a_manual_refresh_outdates_older_account_events(world: World) -> None:
    await enable_charges(world)
    refreshed = await world.http.post(
        f"/v1/organisations/{world.organisation_id}/stripe-account/refresh",
        headers=world.owner.headers,
    )
    account = world.server.set_account(
        world.account_id, charges_enabled=True, payouts_enabled=True, details_submitted=True
    )
    stale = make_event(
        "account.updated",
        {**account, "charges_enabled": False},
        account=world.account_id,
        created=int(time.time()) - 60,
    )
    payload = json.dumps(stale).encode()
    response = await world.http.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": sign_payload(payload, WEBHOOK_SECRET)},
    )

    assert refreshed.json()["accepts_donations"] is True
    assert response.status_code == 200, response.text
    assert (await _account(world))["accepts_donations"] is True


async def test_what_stripe_still_needs_is_shown_to_the_organisations_admins(
    world: World,
) -> None:
    world.server.set_account(
        world.account_id, charges_enabled=False, payouts_enabled=False, details_submitted=False
    )
    refreshed = await world.http.post(
        f"/v1/organisations/{world.organisation_id}/stripe-account/refresh",
        headers=world.owner.headers,
    )

    body = refreshed.json()
    assert body["accepts_donations"] is False
    assert body["requirements_due"], body
    assert all(isinstance(item, str) for item in body["requirements_due"])
