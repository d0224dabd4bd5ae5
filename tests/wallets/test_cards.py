"""Saved cards in sandbox mode: added through a SetupIntent, listed, made the default,
removed; what is stored (never a number); and who may see which card."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from amply.kit.db import Database
from amply.kit.errors import PaymentProviderError
from amply.kit.settings import Settings
from amply.payments.gateway import (
    CardDetails,
    PaymentGateway,
    SandboxGateway,
    sandbox_customer_id,
)
from amply.webhooks import stripe_events
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import Account, error_of, sign_up, wallet_id_of


async def start_setup(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.post("/v1/cards/setup-intents", headers=account.headers)
    assert response.status_code == 201, response.text
    setup_intent_id: str = response.json()["setup_intent_id"]
    return setup_intent_id


async def sandbox_confirm(
    client: httpx.AsyncClient, account: Account, setup_intent_id: str, card: str
) -> None:
    response = await client.post(
        f"/v1/sandbox/setup-intents/{setup_intent_id}/succeed",
        json={"card": card},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text


async def add_sandbox_card(
    client: httpx.AsyncClient, account: Account, card: str = "visa"
) -> dict[str, Any]:
    """A new SetupIntent, confirmed with a sandbox test card and saved: the card."""
    setup_intent_id = await start_setup(client, account)
    await sandbox_confirm(client, account, setup_intent_id, card)
    response = await client.post(
        "/v1/cards", json={"setup_intent_id": setup_intent_id}, headers=account.headers
    )
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def listed(client: httpx.AsyncClient, account: Account) -> list[tuple[str, bool]]:
    response = await client.get("/v1/cards", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["has_more"] is False
    return [(card["id"], card["is_default"]) for card in response.json()["data"]]


def card_rows(superuser_sql: SuperuserSql) -> list[tuple[Any, ...]]:
    return superuser_sql(
        "SELECT id, is_default, removed_at IS NOT NULL FROM cards ORDER BY created_at, id"
    )


async def test_a_card_is_added_through_a_setup_intent_and_stored_without_its_number(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    started = await client.post("/v1/cards/setup-intents", headers=user.headers)
    intent = started.json()
    confirmed = await client.post(
        f"/v1/sandbox/setup-intents/{intent['setup_intent_id']}/succeed",
        json={"card": "mastercard"},
        headers=user.headers,
    )
    added = await client.post(
        "/v1/cards", json={"setup_intent_id": intent["setup_intent_id"]}, headers=user.headers
    )
    again = await client.post(
        "/v1/cards", json={"setup_intent_id": intent["setup_intent_id"]}, headers=user.headers
    )

    assert started.status_code == 201, started.text
    assert intent["object"] == "setup_intent"
    assert intent["provider"] == "sandbox"
    assert intent["publishable_key"] is None
    assert intent["setup_intent_id"].startswith("seti_sandbox_")
    assert intent["client_secret"].startswith(intent["setup_intent_id"] + "_secret_")
    assert confirmed.json()["status"] == "succeeded"
    assert confirmed.json()["payment_method_id"].startswith("pm_sandbox_mastercard_")
    # The sandbox's success saved the card (as Stripe's event would): adding it answers 200.
    assert added.status_code == again.status_code == 200, added.text
    card = added.json()
    assert again.json() == card
    assert card["id"].startswith("card_")
    assert {k: card[k] for k in ("brand", "last4", "exp_month", "exp_year")} == {
        "brand": "mastercard",
        "last4": "4444",
        "exp_month": 12,
        "exp_year": 2034,
    }
    assert card["is_default"] is True
    assert card["removed_at"] is None
    assert card["provider"] == "sandbox"
    wallet_id = await wallet_id_of(database, user.user_id)
    assert superuser_sql("SELECT wallet_id, payment_method_id, setup_intent_id FROM cards") == [
        (wallet_id, confirmed.json()["payment_method_id"], intent["setup_intent_id"])
    ]
    # The sandbox's Customer is derived from the wallet, never stored (it could not be
    # replaced by a real one later: the column is set once).
    assert superuser_sql("SELECT stripe_customer_id FROM wallets") == [(None,)]
    assert superuser_sql("SELECT type, source, account FROM stripe_events") == [
        ("setup_intent.succeeded", "sandbox", None)
    ]
    columns = {
        row[0]
        for row in superuser_sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'cards'"
        )
    }
    assert not columns & {"number", "card_number", "cvc", "pan"}


async def test_a_setup_intent_that_has_not_succeeded_saves_no_card(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    setup_intent_id = await start_setup(client, user)

    response = await client.post(
        "/v1/cards", json={"setup_intent_id": setup_intent_id}, headers=user.headers
    )

    error = error_of(response, 409)
    assert error["code"] == "setup_intent_not_succeeded"
    assert error["param"] == "setup_intent_id"
    assert card_rows(superuser_sql) == []


async def test_a_setup_intent_succeeds_once(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    setup_intent_id = await start_setup(client, user)
    await sandbox_confirm(client, user, setup_intent_id, "visa")

    again = await client.post(
        f"/v1/sandbox/setup-intents/{setup_intent_id}/succeed", headers=user.headers
    )
    unknown = await client.post(
        f"/v1/sandbox/setup-intents/seti_sandbox_{'0' * 24}{'1' * 24}/succeed",
        headers=user.headers,
    )
    malformed = await client.post(
        "/v1/sandbox/setup-intents/seti_123/succeed", headers=user.headers
    )
    bad_card = await client.post(
        f"/v1/sandbox/setup-intents/{setup_intent_id}/succeed",
        json={"card": "diners"},
        headers=user.headers,
    )

    assert error_of(again, 409)["code"] == "setup_intent_already_succeeded"
    assert error_of(unknown, 404)["param"] == "setup_intent_id"
    assert error_of(malformed, 404)["code"] == "resource_missing"
    assert error_of(bad_card, 422)["param"] == "card"
    assert len(card_rows(superuser_sql)) == 1


async def test_bad_setup_intent_ids_are_clear_errors(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    bodies: list[Any] = [
        {},
        {"setup_intent_id": "pi_123"},
        {"setup_intent_id": 7},
        {"setup_intent_id": "seti_" + "a" * 200},
        {"setup_intent_id": "seti_abc", "card_number": "4242424242424242"},
    ]

    refused = [await client.post("/v1/cards", json=body, headers=user.headers) for body in bodies]
    unknown = await client.post(
        "/v1/cards", json={"setup_intent_id": "seti_sandbox_nope"}, headers=user.headers
    )

    assert [r.status_code for r in refused] == [422] * len(bodies)
    assert all(error_of(r, 422)["type"] == "invalid_request_error" for r in refused)
    assert error_of(unknown, 404)["param"] == "setup_intent_id"
    assert card_rows(superuser_sql) == []


async def test_the_first_card_is_the_default_until_another_is_chosen(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    first = await add_sandbox_card(client, user, "visa")
    second = await add_sandbox_card(client, user, "mastercard")
    third = await add_sandbox_card(client, user, "amex")

    before = await listed(client, user)
    chosen = await client.post(f"/v1/cards/{second['id']}/default", headers=user.headers)
    chosen_again = await client.post(f"/v1/cards/{second['id']}/default", headers=user.headers)
    after = await listed(client, user)

    assert [first["is_default"], second["is_default"], third["is_default"]] == [True, False, False]
    # The default first, then the newest first.
    assert before == [(first["id"], True), (third["id"], False), (second["id"], False)]
    assert chosen.status_code == chosen_again.status_code == 200, chosen.text
    assert chosen.json()["is_default"] is True
    assert chosen_again.json() == chosen.json()
    assert after == [(second["id"], True), (third["id"], False), (first["id"], False)]
    assert superuser_sql("SELECT count(*) FROM cards WHERE is_default") == [(1,)]


async def test_removing_the_default_card_makes_the_newest_remaining_card_the_default(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    first = await add_sandbox_card(client, user, "visa")
    second = await add_sandbox_card(client, user, "mastercard")
    third = await add_sandbox_card(client, user, "amex")
    await client.post(f"/v1/cards/{second['id']}/default", headers=user.headers)

    removed = await client.delete(f"/v1/cards/{second['id']}", headers=user.headers)

    assert removed.status_code == 200, removed.text
    assert removed.json()["removed_at"] is not None
    assert removed.json()["is_default"] is False
    assert await listed(client, user) == [(third["id"], True), (first["id"], False)]
    # Kept as removed: deposits made with it still name it.
    assert superuser_sql(
        "SELECT removed_at IS NOT NULL FROM cards WHERE id = %s", second["id"]
    ) == [(True,)]


async def test_removing_another_card_keeps_the_default_and_the_last_leaves_none(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    first = await add_sandbox_card(client, user)
    second = await add_sandbox_card(client, user)

    await client.delete(f"/v1/cards/{second['id']}", headers=user.headers)
    kept = await listed(client, user)
    await client.delete(f"/v1/cards/{first['id']}", headers=user.headers)

    assert kept == [(first["id"], True)]
    assert await listed(client, user) == []


async def test_a_removed_card_can_be_neither_used_nor_changed_nor_added_again(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    card = await add_sandbox_card(client, user)
    [(setup_intent_id,)] = superuser_sql("SELECT setup_intent_id FROM cards")
    await client.delete(f"/v1/cards/{card['id']}", headers=user.headers)
    before = card_rows(superuser_sql)

    read = await client.get(f"/v1/cards/{card['id']}", headers=user.headers)
    default = await client.post(f"/v1/cards/{card['id']}/default", headers=user.headers)
    removed_again = await client.delete(f"/v1/cards/{card['id']}", headers=user.headers)
    added_again = await client.post(
        "/v1/cards", json={"setup_intent_id": setup_intent_id}, headers=user.headers
    )
    deposit = await client.post(
        "/v1/deposits",
        json={"source": "card", "amount": 1000, "card_id": card["id"]},
        headers={**user.headers, "Idempotency-Key": "removed-card-deposit-0001"},
    )

    for response in (read, default, removed_again, deposit):
        assert error_of(response, 404)["param"] == "card_id"
    assert error_of(added_again, 409)["code"] == "card_removed"
    assert card_rows(superuser_sql) == before


async def test_another_users_cards_and_setup_intents_are_missing(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, stranger = await sign_up(client), await sign_up(client)
    card = await add_sandbox_card(client, owner)
    [(confirmed,)] = superuser_sql("SELECT setup_intent_id FROM cards")
    unconfirmed = await start_setup(client, owner)
    before = card_rows(superuser_sql)

    responses = [
        await client.get(f"/v1/cards/{card['id']}", headers=stranger.headers),
        await client.post(f"/v1/cards/{card['id']}/default", headers=stranger.headers),
        await client.delete(f"/v1/cards/{card['id']}", headers=stranger.headers),
    ]
    claims = [
        await client.post("/v1/cards", json={"setup_intent_id": seti}, headers=stranger.headers)
        for seti in (confirmed, unconfirmed)
    ]
    mine = await client.get(f"/v1/cards/{card['id']}", headers=owner.headers)

    assert [error_of(r, 404)["message"] for r in responses] == ["No such card."] * 3
    assert [error_of(r, 404)["message"] for r in claims] == ["No such SetupIntent."] * 2
    assert await listed(client, stranger) == []
    assert mine.json() == card
    assert card_rows(superuser_sql) == before


async def test_cards_are_listed_in_pages(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    cards = [await add_sandbox_card(client, user) for _ in range(3)]

    first = await client.get("/v1/cards", params={"limit": 2}, headers=user.headers)
    rest = await client.get(
        "/v1/cards",
        params={"limit": 2, "starting_after": first.json()["data"][-1]["id"]},
        headers=user.headers,
    )
    too_many = await client.get("/v1/cards", params={"limit": 101}, headers=user.headers)

    assert first.json()["has_more"] is True
    assert rest.json()["has_more"] is False
    ids = [card["id"] for card in first.json()["data"] + rest.json()["data"]]
    assert ids == [cards[0]["id"], cards[2]["id"], cards[1]["id"]]
    assert error_of(too_many, 422)["param"] == "limit"


async def test_sandbox_setup_intents_do_not_exist_with_stripe_keys(
    make_client: ClientFactory, settings: Settings
) -> None:
    with_keys = Settings(**{**settings.model_dump(), "stripe_secret_key": "sk_test_unused"})
    async with make_client(with_keys) as client:
        response = await client.post(f"/v1/sandbox/setup-intents/seti_sandbox_{'0' * 48}/succeed")

    assert error_of(response, 404)["code"] == "sandbox_disabled"


async def process(
    database: Database,
    event_type: str,
    obj: dict[str, Any],
    gateway: PaymentGateway | None = None,
    **kw: Any,
) -> str:
    """Apply a Stripe-shaped event as the webhook would (already verified)."""
    event = stripe_events.Event(
        id=f"evt_test_{secrets.token_hex(8)}",
        type=event_type,
        account=kw.get("account"),
        livemode=False,
        created=1,
        object=obj,
        payload={},
    )
    async with database.session() as session:
        outcome = await stripe_events.process(
            session, event=event, source="webhook", gateway=gateway or SandboxGateway()
        )
        await session.commit()
    return outcome


async def test_setup_intent_events_save_only_a_wallets_own_succeeded_card(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user, other = await sign_up(client), await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    other_wallet = await wallet_id_of(database, other.user_id)
    intent = {
        "id": "seti_elsewhere_1",
        "object": "setup_intent",
        "customer": sandbox_customer_id(wallet_id),
        "payment_method": "pm_sandbox_visa_" + "A" * 24,
        "status": "succeeded",
        "metadata": {"wallet_id": wallet_id},
    }
    ignored = [
        ({**intent, "customer": sandbox_customer_id(other_wallet)}, {}),  # not its Customer
        ({**intent, "status": "processing"}, {}),
        ({**intent, "metadata": {}}, {}),
        ({**intent, "metadata": {"wallet_id": "wal_" + "0" * 24}}, {}),
        (intent, {"account": "acct_connected"}),  # a connected account's SetupIntent
    ]

    for obj, fields in ignored:
        assert await process(database, "setup_intent.succeeded", obj, **fields) == "processed"
    assert card_rows(superuser_sql) == []

    await process(database, "setup_intent.succeeded", intent)
    # Another event about the same SetupIntent, or the same payment method: saved already.
    await process(database, "setup_intent.succeeded", intent)
    await process(database, "setup_intent.succeeded", {**intent, "id": "seti_elsewhere_2"})
    assert len(card_rows(superuser_sql)) == 1
    assert [card for card, _ in await listed(client, user)] == [card_rows(superuser_sql)[0][0]]


class _OddCards(SandboxGateway):
    """A provider that describes cards in a way the cards table cannot hold."""

    def __init__(self, details: CardDetails) -> None:
        self.details = details

    async def retrieve_card(self, *, payment_method_id: str) -> CardDetails:
        return self.details


@pytest.mark.parametrize(
    "details",
    [
        CardDetails(brand="", last4="4242", exp_month=12, exp_year=2030),
        CardDetails(brand="visa", last4="42", exp_month=12, exp_year=2030),
        CardDetails(brand="visa", last4="4242", exp_month=13, exp_year=2030),
        CardDetails(brand="visa", last4="4242", exp_month=12, exp_year=30),
    ],
)
async def test_card_details_that_cannot_be_stored_are_a_provider_error_not_a_crash(
    client: httpx.AsyncClient,
    database: Database,
    superuser_sql: SuperuserSql,
    details: CardDetails,
) -> None:
    user = await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    intent = {
        "id": "seti_odd",
        "customer": sandbox_customer_id(wallet_id),
        "payment_method": "pm_odd",
        "status": "succeeded",
        "metadata": {"wallet_id": wallet_id},
    }

    with pytest.raises(PaymentProviderError):
        await process(database, "setup_intent.succeeded", intent, gateway=_OddCards(details))

    assert card_rows(superuser_sql) == []
