"""Saved cards and card deposits end to end over real HTTP: the app (uvicorn) and a
Stripe-protocol server (localstripe, ``tests/support``) talking with the official ``stripe``
library; Stripe's signed webhooks complete the deposits. Everything happens on the platform
account: no ``Stripe-Account`` header is ever sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe

from amply.kit.db import Database
from amply.kit.ids import derived_id
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.main import create_app
from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import Account, error_of, sign_up, wallet_id_of
from tests.integration.test_stripe_donations import eventually
from tests.stripe_harness import StripeServer, sign_payload

WEBHOOK_SECRET = "whsec_amply_wallet_integration"
VISA = "4242424242424242"
DECLINED_WHEN_CHARGED = "4000000000000341"  # saves fine, declines every charge


@dataclass
class World:
    http: httpx.AsyncClient
    stripe: stripe.StripeClient
    server: StripeServer


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
        stripe_webhook_secret=WEBHOOK_SECRET,
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
            yield World(http, client, stripe_server)
    finally:
        stripe_server.reset()
        await app.state.database.dispose()


async def start_setup(world: World, user: Account) -> dict[str, Any]:
    response = await world.http.post("/v1/cards/setup-intents", headers=user.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def confirm_setup(world: World, setup_intent_id: str, number: str = VISA) -> str:
    """Confirm the SetupIntent with a card, as Stripe.js does on the user's page; the new
    payment method's id. The card number goes to Stripe, never to Amply."""
    card: Any = {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = await world.stripe.v1.payment_methods.create_async({"type": "card", "card": card})
    await world.stripe.v1.setup_intents.confirm_async(
        setup_intent_id, {"payment_method": method.id}
    )
    return method.id


async def add_card(world: World, user: Account, number: str = VISA) -> dict[str, Any]:
    intent = await start_setup(world, user)
    await confirm_setup(world, intent["setup_intent_id"], number)
    response = await world.http.post(
        "/v1/cards", json={"setup_intent_id": intent["setup_intent_id"]}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def read_deposit(world: World, user: Account, deposit_id: str) -> dict[str, Any]:
    response = await world.http.get(f"/v1/deposits/{deposit_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def deposits_on_chain(database: Database, wallet_id: str) -> list[int]:
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=wallet_id)
        assert (await ledger.verify_chain(session, chain_id=wallet_id)).ok
    return [entry.amount for entry in page.entries if entry.type == "deposit"]


async def test_a_card_is_saved_through_a_setup_intent_on_the_wallets_customer(
    world: World, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(world.http)
    wallet_id = await wallet_id_of(database, user.user_id)
    intent = await start_setup(world, user)
    payment_method_id = await confirm_setup(world, intent["setup_intent_id"])

    added = await world.http.post(
        "/v1/cards", json={"setup_intent_id": intent["setup_intent_id"]}, headers=user.headers
    )
    again = await world.http.post(
        "/v1/cards", json={"setup_intent_id": intent["setup_intent_id"]}, headers=user.headers
    )
    second_intent = await start_setup(world, user)

    assert intent["provider"] == "stripe"
    assert intent["publishable_key"] == world.server.publishable_key
    assert intent["client_secret"].startswith(intent["setup_intent_id"] + "_secret_")
    assert added.status_code == 201, added.text
    assert again.status_code == 200
    assert again.json() == added.json()
    card = added.json()
    assert (card["brand"], card["last4"], card["exp_month"], card["exp_year"]) == (
        "visa",
        "4242",
        12,
        2030,
    )
    assert card["is_default"] is True
    assert card["provider"] == "stripe"
    [(customer_id,)] = superuser_sql("SELECT stripe_customer_id FROM wallets")
    assert customer_id.startswith("cus_")
    assert superuser_sql("SELECT payment_method_id FROM cards") == [(payment_method_id,)]
    # One Customer per wallet, made once; SetupIntents for off-session card payments.
    [create_customer] = world.server.requests("/v1/customers")
    assert create_customer.headers["idempotency-key"] == f"customer:{wallet_id}"
    assert create_customer.params["metadata"] == {"wallet_id": wallet_id}
    setups = [r for r in world.server.requests("/v1/setup_intents") if r.method == "POST"]
    creates = [r for r in setups if r.path == "/v1/setup_intents"]
    assert len(creates) == 2
    assert creates[0].params["customer"] == customer_id
    assert creates[0].params["usage"] == "off_session"
    assert creates[0].params["allowed_payment_method_types"] == ["card"]
    assert second_intent["setup_intent_id"] != intent["setup_intent_id"]
    assert all("stripe-account" not in r.headers for r in world.server.requests())


async def test_only_a_succeeded_setup_intent_of_ones_own_customer_saves_a_card(
    world: World, superuser_sql: SuperuserSql
) -> None:
    owner, stranger = await sign_up(world.http), await sign_up(world.http)
    unconfirmed = await start_setup(world, owner)
    confirmed = await start_setup(world, owner)
    await confirm_setup(world, confirmed["setup_intent_id"])
    await start_setup(world, stranger)  # the stranger has a Customer too

    pending = await world.http.post(
        "/v1/cards", json={"setup_intent_id": unconfirmed["setup_intent_id"]}, headers=owner.headers
    )
    stolen = await world.http.post(
        "/v1/cards",
        json={"setup_intent_id": confirmed["setup_intent_id"]},
        headers=stranger.headers,
    )
    unknown = await world.http.post(
        "/v1/cards", json={"setup_intent_id": "seti_doesnotexist"}, headers=owner.headers
    )
    no_customer = await world.http.post(
        "/v1/cards",
        json={"setup_intent_id": confirmed["setup_intent_id"]},
        headers=(await sign_up(world.http)).headers,
    )

    assert error_of(pending, 409)["code"] == "setup_intent_not_succeeded"
    assert error_of(stolen, 404)["message"] == "No such SetupIntent."
    assert error_of(unknown, 404)["param"] == "setup_intent_id"
    assert error_of(no_customer, 404)["param"] == "setup_intent_id"
    assert superuser_sql("SELECT count(*) FROM cards") == [(0,)]


async def test_a_card_deposit_is_credited_once_by_stripes_signed_webhook(
    world: World, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(world.http)
    wallet_id = await wallet_id_of(database, user.user_id)
    card = await add_card(world, user)
    [(customer_id,)] = superuser_sql("SELECT stripe_customer_id FROM wallets")
    [(payment_method_id,)] = superuser_sql("SELECT payment_method_id FROM cards")
    world.server.clear_requests()
    headers = {**user.headers, "Idempotency-Key": "wallet-integration-deposit-1"}

    first = await world.http.post(
        "/v1/deposits", json={"source": "card", "amount": 5000}, headers=headers
    )
    retried = await world.http.post(
        "/v1/deposits", json={"source": "card", "amount": 5000}, headers=headers
    )

    assert first.status_code == 201, first.text
    deposit = first.json()
    assert retried.json() == deposit
    assert deposit["card_id"] == card["id"]
    assert deposit["provider"] == "stripe"
    [create] = world.server.requests("/v1/payment_intents")
    assert "stripe-account" not in create.headers  # the platform's own PaymentIntent
    assert create.headers["idempotency-key"] == f"deposit:{deposit['id']}"
    assert create.params["customer"] == customer_id
    assert create.params["payment_method"] == payment_method_id
    assert (create.params["confirm"], create.params["off_session"]) == ("true", "true")
    assert (create.params["amount"], create.params["currency"]) == ("5000", "usd")
    assert create.params["metadata"] == {"amply_deposit": deposit["id"], "wallet_id": wallet_id}

    async def completed() -> bool:
        return (await read_deposit(world, user, deposit["id"]))["status"] == "completed"

    await eventually(completed)
    done = await read_deposit(world, user, deposit["id"])
    assert done["ledger_entry"]["amount"] == 5000
    assert await deposits_on_chain(database, wallet_id) == [5000]

    # Stripe delivers the success again: stored once, credited once.
    [(payload,)] = superuser_sql(
        "SELECT payload::text FROM stripe_events WHERE type = 'payment_intent.succeeded'"
    )
    body = payload.encode()
    replayed = await world.http.post(
        "/v1/webhooks/stripe",
        content=body,
        headers={
            "Stripe-Signature": sign_payload(body, WEBHOOK_SECRET),
            "Content-Type": "application/json",
        },
    )
    assert replayed.json()["outcome"] == "duplicate"
    assert await deposits_on_chain(database, wallet_id) == [5000]


async def test_a_declined_card_is_refused_at_once_and_credits_nothing(
    world: World, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(world.http)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_card(world, user, DECLINED_WHEN_CHARGED)

    response = await world.http.post(
        "/v1/deposits",
        json={"source": "card", "amount": 5000},
        headers={**user.headers, "Idempotency-Key": "wallet-integration-declined-1"},
    )

    assert error_of(response, 409)["code"] == "card_declined"

    async def failure_event_seen() -> bool:
        rows = superuser_sql(
            "SELECT outcome FROM stripe_events WHERE type = 'payment_intent.payment_failed'"
        )
        return rows == [("processed",)]

    await eventually(failure_event_seen)
    assert superuser_sql("SELECT count(*) FROM transactions WHERE kind = 'deposit'") == [(0,)]
    assert await deposits_on_chain(database, wallet_id) == []


async def test_a_payment_whose_request_never_committed_is_still_credited(
    world: World, database: Database, superuser_sql: SuperuserSql
) -> None:
    # Amply asked Stripe for the payment, then failed before committing: Stripe took the
    # money under Idempotency-Key deposit:<id>. The success event records the deposit, and
    # the client's retry with its key gets that deposit without charging the card again.
    user = await sign_up(world.http)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_card(world, user)
    [(customer_id,)] = superuser_sql("SELECT stripe_customer_id FROM wallets")
    [(payment_method_id,)] = superuser_sql("SELECT payment_method_id FROM cards")
    key = "wallet-integration-lost-commit-1"
    deposit_id = derived_id("txn", seed=f"user:{user.user_id}\0{key}".encode())
    params: Any = {
        "amount": 3000,
        "currency": "usd",
        "customer": customer_id,
        "payment_method": payment_method_id,
        "confirm": True,
        "off_session": True,
        "metadata": {"amply_deposit": deposit_id, "wallet_id": wallet_id},
    }
    intent = await world.stripe.v1.payment_intents.create_async(
        params, options={"idempotency_key": f"deposit:{deposit_id}"}
    )

    async def recorded() -> bool:
        response = await world.http.get(f"/v1/deposits/{deposit_id}", headers=user.headers)
        return response.status_code == 200 and response.json()["status"] == "completed"

    await eventually(recorded)
    retry = await world.http.post(
        "/v1/deposits",
        json={"source": "card", "amount": 3000},
        headers={**user.headers, "Idempotency-Key": key},
    )
    await asyncio.sleep(0.2)  # any further event would have arrived

    assert (await read_deposit(world, user, deposit_id))["payment_intent_id"] == intent.id
    assert retry.status_code == 201, retry.text
    assert (retry.json()["id"], retry.json()["status"]) == (deposit_id, "completed")
    assert len(world.server.requests("/v1/payment_intents")) == 1
    assert await deposits_on_chain(database, wallet_id) == [3000]


async def test_removing_a_card_detaches_it_at_stripe(
    world: World, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(world.http)
    first = await add_card(world, user)
    second = await add_card(world, user)
    [(payment_method_id,)] = superuser_sql(
        "SELECT payment_method_id FROM cards WHERE id = %s", first["id"]
    )
    world.server.clear_requests()

    removed = await world.http.delete(f"/v1/cards/{first['id']}", headers=user.headers)
    listed = await world.http.get("/v1/cards", headers=user.headers)

    assert removed.status_code == 200, removed.text
    [detach] = world.server.requests("/v1/payment_methods")
    assert detach.path == f"/v1/payment_methods/{payment_method_id}/detach"
    assert [(c["id"], c["is_default"]) for c in listed.json()["data"]] == [(second["id"], True)]
    assert removed.json()["removed_at"] is not None


async def test_a_payment_method_saved_twice_is_one_card_and_only_cards_are_saved(
    world: World, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(world.http)
    card = await add_card(world, user)
    [(payment_method_id,)] = superuser_sql("SELECT payment_method_id FROM cards")
    again = await start_setup(world, user)
    await world.stripe.v1.setup_intents.confirm_async(
        again["setup_intent_id"], {"payment_method": payment_method_id}
    )
    debit = await start_setup(world, user)
    iban: Any = {"iban": "DE89370400440532013000"}
    method = await world.stripe.v1.payment_methods.create_async(
        {"type": "sepa_debit", "sepa_debit": iban}
    )
    await world.stripe.v1.setup_intents.confirm_async(
        debit["setup_intent_id"], {"payment_method": method.id}
    )

    same = await world.http.post(
        "/v1/cards", json={"setup_intent_id": again["setup_intent_id"]}, headers=user.headers
    )
    not_a_card = await world.http.post(
        "/v1/cards", json={"setup_intent_id": debit["setup_intent_id"]}, headers=user.headers
    )

    assert same.status_code == 200, same.text
    assert same.json() == card
    assert error_of(not_a_card, 409)["code"] == "payment_method_not_card"
    assert superuser_sql("SELECT count(*) FROM cards") == [(1,)]


async def test_a_card_stripe_no_longer_knows_is_still_removed(
    world: World, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(world.http)
    card = await add_card(world, user)
    # Deleted at Stripe meanwhile (say, from its dashboard): detaching it is refused. (A card's
    # payment method never changes, so the superuser sets this up with cards_guard disabled.)
    superuser_sql("ALTER TABLE cards DISABLE TRIGGER cards_guard")
    superuser_sql("UPDATE cards SET payment_method_id = 'pm_gone_from_stripe'")
    superuser_sql("ALTER TABLE cards ENABLE TRIGGER cards_guard")

    removed = await world.http.delete(f"/v1/cards/{card['id']}", headers=user.headers)

    assert removed.status_code == 200, removed.text
    assert superuser_sql("SELECT removed_at IS NOT NULL FROM cards") == [(True,)]
