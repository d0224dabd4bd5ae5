"""Deposits in sandbox mode: from a simulated bank (at once) and from a saved card (when its
payment succeeds); every status transition, the illegal ones refused with nothing changed;
idempotency; the ledger; the webhook path for platform PaymentIntents."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.models import Wallet
from amply.payments.gateway import sandbox_customer_id
from amply.wallets import service as wallets
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import Account, error_of, sign_up, wallet_id_of
from tests.stripe_harness import make_event, sign_payload
from tests.wallets.test_cards import add_sandbox_card

SECRET = "whsec_amply_deposit_tests"
_keys = iter(range(10**6))


def key() -> str:
    return f"deposit-test-key-{next(_keys):06d}"


async def deposit(
    client: httpx.AsyncClient,
    account: Account,
    body: dict[str, Any],
    *,
    idempotency_key: str | None = None,
) -> httpx.Response:
    return await client.post(
        "/v1/deposits",
        json=body,
        headers={**account.headers, "Idempotency-Key": idempotency_key or key()},
    )


async def card_deposit(
    client: httpx.AsyncClient, account: Account, amount: int = 2500, **fields: Any
) -> dict[str, Any]:
    response = await deposit(client, account, {"source": "card", "amount": amount, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def chain_of(database: Database, wallet_id: str) -> list[tuple[str, int, dict[str, Any]]]:
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=wallet_id)
        assert (await ledger.verify_chain(session, chain_id=wallet_id)).ok
    return [(e.type, e.amount, json.loads(e.metadata)) for e in page.entries]


async def deposits_on_chain(database: Database, wallet_id: str) -> list[tuple[int, Any]]:
    return [
        (amount, metadata)
        for kind, amount, metadata in await chain_of(database, wallet_id)
        if kind == "deposit"
    ]


def chain_sum(superuser_sql: SuperuserSql, wallet_id: str) -> int:
    """What the wallet's chain adds up to (a demo welcome bonus, say, before any deposit)."""
    [(total,)] = superuser_sql(
        "SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE chain_id = %s", wallet_id
    )
    return int(total)


def deposit_rows(superuser_sql: SuperuserSql) -> list[tuple[Any, ...]]:
    return superuser_sql(
        "SELECT id, status, journal_id IS NOT NULL, failure_code FROM transactions "
        "WHERE kind = 'deposit' ORDER BY created_at, id"
    )


async def test_a_sandbox_bank_deposit_credits_the_wallet_at_once(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    before = chain_sum(superuser_sql, wallet_id)

    response = await deposit(
        client, user, {"source": "bank", "amount": 10_000, "bank_name": "  Demo Bank "}
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["object"] == "deposit"
    assert body["status"] == "completed"
    assert (body["source"], body["bank_name"], body["provider"]) == ("bank", "Demo Bank", "sandbox")
    assert (body["amount"], body["currency"]) == (10_000, "USD")
    assert body["description"] == "Deposit from Demo Bank"
    assert body["payment_intent_id"] is None
    assert body["card_id"] is None
    assert body["completed_at"] is not None
    entry = body["ledger_entry"]
    assert (entry["chain_id"], entry["amount"]) == (wallet_id, 10_000)
    assert entry["balance_after"] == before + 10_000
    assert await deposits_on_chain(database, wallet_id) == [
        (10_000, {"transaction_id": body["id"], "payment_intent": None, "source": "bank"})
    ]


async def test_a_card_deposit_credits_the_wallet_only_when_its_payment_succeeds(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    before = chain_sum(superuser_sql, wallet_id)
    card = await add_sandbox_card(client, user, "amex")

    pending = await card_deposit(client, user, 2500)
    on_chain_while_pending = await deposits_on_chain(database, wallet_id)
    succeeded = await client.post(
        f"/v1/sandbox/payments/{pending['payment_intent_id']}/succeed", headers=user.headers
    )
    read = await client.get(f"/v1/deposits/{pending['id']}", headers=user.headers)

    assert pending["status"] == "pending"
    assert pending["card_id"] == card["id"]
    assert pending["payment_intent_id"].startswith("pi_sandbox_")
    assert pending["description"] == "Deposit from American Express card ending 0005"
    assert pending["ledger_entry"] is None
    assert pending["completed_at"] is None
    assert on_chain_while_pending == []
    assert succeeded.status_code == 200, succeeded.text
    assert succeeded.json()["status"] == "completed"
    assert read.json() == succeeded.json()
    assert read.json()["ledger_entry"]["balance_after"] == before + 2500
    assert await deposits_on_chain(database, wallet_id) == [
        (
            2500,
            {
                "transaction_id": pending["id"],
                "payment_intent": pending["payment_intent_id"],
                "source": "card",
            },
        )
    ]
    [(event_type, account, metadata)] = superuser_sql(
        "SELECT type, account, payload->'data'->'object'->'metadata' FROM stripe_events "
        "WHERE type LIKE 'payment_intent.%'"
    )
    assert (event_type, account) == ("payment_intent.succeeded", None)
    assert metadata == {"amply_deposit": pending["id"], "wallet_id": wallet_id}


async def test_a_completed_deposit_can_neither_succeed_again_nor_fail_nor_be_refunded(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_sandbox_card(client, user)
    pending = await card_deposit(client, user)
    payment = f"/v1/sandbox/payments/{pending['payment_intent_id']}"
    await client.post(f"{payment}/succeed", headers=user.headers)
    before = deposit_rows(superuser_sql), await chain_of(database, wallet_id)

    again = await client.post(f"{payment}/succeed", headers=user.headers)
    failed = await client.post(f"{payment}/fail", headers=user.headers)
    refunded = await client.post(f"{payment}/refund", headers=user.headers)

    assert error_of(again, 409)["code"] == "payment_already_succeeded"
    assert error_of(failed, 409)["code"] == "payment_not_pending"
    assert error_of(refunded, 409)["code"] == "deposit_not_refundable"
    assert (deposit_rows(superuser_sql), await chain_of(database, wallet_id)) == before


async def test_a_failed_deposit_credits_nothing_cannot_fail_twice_and_may_still_succeed(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_sandbox_card(client, user)
    pending = await card_deposit(client, user, 4000)
    payment = f"/v1/sandbox/payments/{pending['payment_intent_id']}"

    failed = await client.post(f"{payment}/fail", headers=user.headers)
    failed_again = await client.post(f"{payment}/fail", headers=user.headers)
    after_failure = await deposits_on_chain(database, wallet_id)
    succeeded = await client.post(f"{payment}/succeed", headers=user.headers)

    assert failed.status_code == 200, failed.text
    assert failed.json()["status"] == "failed"
    assert failed.json()["failure_code"] == "card_declined"
    assert failed.json()["failure_message"] == "Your card was declined. (sandbox)"
    assert error_of(failed_again, 409)["code"] == "payment_not_pending"
    assert after_failure == []
    assert succeeded.json()["status"] == "completed"
    assert succeeded.json()["failure_code"] is None
    assert [amount for amount, _ in await deposits_on_chain(database, wallet_id)] == [4000]
    assert deposit_rows(superuser_sql) == [(pending["id"], "completed", True, None)]


async def test_two_concurrent_successes_credit_once(
    client: httpx.AsyncClient, database: Database
) -> None:
    user = await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_sandbox_card(client, user)
    pending = await card_deposit(client, user)
    url = f"/v1/sandbox/payments/{pending['payment_intent_id']}/succeed"

    responses = await asyncio.gather(
        client.post(url, headers=user.headers), client.post(url, headers=user.headers)
    )

    assert sorted(r.status_code for r in responses) == [200, 409]
    assert [amount for amount, _ in await deposits_on_chain(database, wallet_id)] == [2500]


async def test_a_retried_deposit_moves_money_once(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_sandbox_card(client, user)
    bank = {"source": "bank", "amount": 700, "bank_name": "Demo Bank"}
    card = {"source": "card", "amount": 900}

    bank_first = await deposit(client, user, bank, idempotency_key="retried-bank-deposit-1")
    bank_retry = await deposit(client, user, bank, idempotency_key="retried-bank-deposit-1")
    card_first = await deposit(client, user, card, idempotency_key="retried-card-deposit-1")
    card_retry = await deposit(client, user, card, idempotency_key="retried-card-deposit-1")
    reused = await deposit(
        client, user, {**bank, "amount": 701}, idempotency_key="retried-bank-deposit-1"
    )
    other_user = await deposit(
        client, await sign_up(client), bank, idempotency_key="retried-bank-deposit-1"
    )

    assert bank_first.status_code == bank_retry.status_code == 201
    assert bank_retry.json() == bank_first.json()
    assert bank_retry.headers["Idempotent-Replayed"] == "true"
    assert card_retry.json() == card_first.json()
    assert error_of(reused, 409)["code"] == "idempotency_key_reused"
    # Keys belong to their user: another user's identical key is another deposit.
    assert other_user.status_code == 201
    assert other_user.json()["id"] != bank_first.json()["id"]
    assert [amount for amount, _ in await deposits_on_chain(database, wallet_id)] == [700]
    mine = superuser_sql(
        "SELECT amount FROM transactions WHERE kind = 'deposit' AND wallet_id = %s ORDER BY amount",
        wallet_id,
    )
    assert mine == [(700,), (900,)]


async def test_bad_deposits_are_clear_errors_and_store_nothing(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    await add_sandbox_card(client, user)
    card, bank = {"source": "card", "amount": 500}, {"source": "bank", "amount": 500}
    invalid = "parameter_invalid"
    cases: list[tuple[dict[str, Any], int, str, str | None]] = [
        ({**card, "amount": 0}, 422, invalid, "amount"),
        ({**card, "amount": -5}, 422, invalid, "amount"),
        ({**card, "amount": "2500"}, 422, invalid, "amount"),
        ({**card, "amount": 25.0}, 422, invalid, "amount"),
        ({**card, "amount": 49}, 422, "amount_too_small", "amount"),
        ({**card, "amount": 100_000_000}, 422, "amount_too_large", "amount"),
        ({**bank, "amount": 100_000_000, "bank_name": "B"}, 422, "amount_too_large", "amount"),
        ({**card, "currency": "EUR"}, 422, "currency_mismatch", "currency"),
        ({**card, "currency": "XXX"}, 422, invalid, "currency"),
        ({**card, "card_id": "card_" + "0" * 24}, 404, "resource_missing", "card_id"),
        ({**card, "card_id": "pm_123"}, 422, invalid, "card_id"),
        ({**card, "bank_name": "B"}, 422, invalid, "bank_name"),
        (bank, 422, invalid, "bank_name"),
        ({**bank, "bank_name": " "}, 422, invalid, "bank_name"),
        ({**bank, "bank_name": "B" * 101}, 422, invalid, "bank_name"),
        ({**bank, "bank_name": "B", "card_id": "card_1"}, 422, invalid, "card_id"),
        ({**card, "source": "cash"}, 422, invalid, "source"),
        ({"amount": 500}, 422, invalid, "source"),
        ({**card, "note": "hi"}, 422, invalid, "note"),
    ]

    for body, status, code, param in cases:
        error = error_of(await deposit(client, user, body), status)
        assert (error["code"], error["param"]) == (code, param), (body, error)
    no_key = await client.post(
        "/v1/deposits", json={"source": "card", "amount": 500}, headers=user.headers
    )
    bad_key = await deposit(client, user, {"source": "card", "amount": 500}, idempotency_key="x")

    assert error_of(no_key, 422)["param"] == "Idempotency-Key"
    assert error_of(bad_key, 400)["code"] == "idempotency_key_invalid"
    assert deposit_rows(superuser_sql) == []


async def test_a_card_deposit_needs_a_card(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)

    response = await deposit(client, user, {"source": "card", "amount": 500})

    error = error_of(response, 422)
    assert (error["code"], error["param"]) == ("no_default_card", "card_id")
    assert deposit_rows(superuser_sql) == []


async def test_a_card_deposit_charges_the_card_named_or_else_the_default(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    default = await add_sandbox_card(client, user, "visa")
    other = await add_sandbox_card(client, user, "mastercard")

    by_default = await card_deposit(client, user)
    named = await card_deposit(client, user, card_id=other["id"])

    assert by_default["card_id"] == default["id"]
    assert named["card_id"] == other["id"]
    assert named["description"] == "Deposit from Mastercard card ending 4444"


async def test_another_users_deposits_and_payments_are_missing(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, stranger = await sign_up(client), await sign_up(client)
    card = await add_sandbox_card(client, owner)
    mine = await card_deposit(client, owner)
    before = deposit_rows(superuser_sql)

    read = await client.get(f"/v1/deposits/{mine['id']}", headers=stranger.headers)
    listed = await client.get("/v1/deposits", headers=stranger.headers)
    cursor = await client.get(
        "/v1/deposits", params={"starting_after": mine["id"]}, headers=stranger.headers
    )
    charged = await deposit(
        client, stranger, {"source": "card", "amount": 500, "card_id": card["id"]}
    )
    not_a_deposit = await client.get(
        "/v1/deposits/txn_000000000000000000000000", headers=owner.headers
    )

    assert error_of(read, 404)["message"] == "No such deposit."
    assert listed.json() == {"object": "list", "data": [], "has_more": False}
    assert cursor.json()["data"] == []
    assert error_of(charged, 404)["param"] == "card_id"
    assert error_of(not_a_deposit, 404)["param"] == "deposit_id"
    assert deposit_rows(superuser_sql) == before


async def test_an_unknown_sandbox_payment_is_missing(client: httpx.AsyncClient) -> None:
    user = await sign_up(client)
    for action in ("succeed", "fail", "refund"):
        response = await client.post(
            f"/v1/sandbox/payments/pi_sandbox_nope/{action}", headers=user.headers
        )
        assert error_of(response, 404)["param"] == "payment_id"


async def test_deposits_are_listed_newest_first_in_pages_and_by_status(
    client: httpx.AsyncClient,
) -> None:
    user = await sign_up(client)
    await add_sandbox_card(client, user)
    bank = await deposit(client, user, {"source": "bank", "amount": 100, "bank_name": "B"})
    pending = await card_deposit(client, user, 600)
    failed = await card_deposit(client, user, 700)
    await client.post(
        f"/v1/sandbox/payments/{failed['payment_intent_id']}/fail", headers=user.headers
    )

    first = await client.get("/v1/deposits", params={"limit": 2}, headers=user.headers)
    rest = await client.get(
        "/v1/deposits",
        params={"limit": 2, "starting_after": first.json()["data"][-1]["id"]},
        headers=user.headers,
    )
    only_pending = await client.get(
        "/v1/deposits", params={"status": "pending"}, headers=user.headers
    )
    bad_status = await client.get("/v1/deposits", params={"status": "paid"}, headers=user.headers)

    page = [d["id"] for d in first.json()["data"]] + [d["id"] for d in rest.json()["data"]]
    assert page == [failed["id"], pending["id"], bank.json()["id"]]
    assert [first.json()["has_more"], rest.json()["has_more"]] == [True, False]
    assert [d["id"] for d in only_pending.json()["data"]] == [pending["id"]]
    assert first.json()["data"][0]["status"] == "failed"
    assert rest.json()["data"][0]["ledger_entry"]["amount"] == 100
    assert error_of(bad_status, 422)["param"] == "status"


async def test_the_wallet_balance_is_the_sum_of_its_chain_after_deposits(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    wallet_id = await wallet_id_of(database, user.user_id)
    before = chain_sum(superuser_sql, wallet_id)
    await add_sandbox_card(client, user)
    await deposit(client, user, {"source": "bank", "amount": 1234, "bank_name": "B"})
    for amount, outcome in ((2000, "succeed"), (3000, "fail"), (4000, None), (5000, "succeed")):
        pending = await card_deposit(client, user, amount)
        if outcome:
            await client.post(
                f"/v1/sandbox/payments/{pending['payment_intent_id']}/{outcome}",
                headers=user.headers,
            )

    async with database.session() as session:
        wallet = await session.get(Wallet, wallet_id)
        assert wallet is not None
        balance = await wallets.balance_of(session, wallet=wallet)
    [(completed,)] = superuser_sql(
        "SELECT coalesce(sum(amount), 0) FROM transactions "
        "WHERE wallet_id = %s AND status = 'completed'",
        wallet_id,
    )

    # The chain holds what the completed transactions (deposits, a demo bonus) say, and the
    # balance is the chain's: failed and pending deposits added nothing.
    assert balance.balance == chain_sum(superuser_sql, wallet_id) == completed
    assert balance.balance == before + 1234 + 2000 + 5000
    assert [amount for amount, _ in await deposits_on_chain(database, wallet_id)] == [
        1234,
        2000,
        5000,
    ]


async def test_bank_deposits_exist_only_in_the_sandbox(
    make_client: ClientFactory, settings: Settings, superuser_sql: SuperuserSql
) -> None:
    with_keys = Settings(**{**settings.model_dump(), "stripe_secret_key": "sk_test_unused"})
    async with make_client(with_keys) as client:
        user = await sign_up(client)
        response = await deposit(client, user, {"source": "bank", "amount": 500, "bank_name": "B"})
        sandbox = await client.post("/v1/sandbox/payments/pi_sandbox_x/succeed")

    error = error_of(response, 422)
    assert (error["code"], error["param"]) == ("bank_deposits_unavailable", "source")
    assert error_of(sandbox, 404)["code"] == "sandbox_disabled"
    assert deposit_rows(superuser_sql) == []


# --- The webhook path: signed Stripe events about platform PaymentIntents ---------------------


@pytest.fixture
async def hooks(make_client: ClientFactory, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app in sandbox mode that also accepts signed webhooks."""
    with_secret = Settings(**{**settings.model_dump(), "stripe_webhook_secret": SECRET})
    async with make_client(with_secret) as http:
        yield http


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    payload = json.dumps(event).encode()
    return await client.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={
            "Stripe-Signature": sign_payload(payload, SECRET),
            "Content-Type": "application/json",
        },
    )


def intent_of(deposit: dict[str, Any], wallet_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": deposit["payment_intent_id"],
        "object": "payment_intent",
        "amount": deposit["amount"],
        "amount_received": deposit["amount"],
        "currency": "usd",
        "status": "succeeded",
        "customer": sandbox_customer_id(wallet_id),
        "metadata": {"amply_deposit": deposit["id"], "wallet_id": wallet_id},
        **fields,
    }


async def test_a_replayed_success_event_credits_once(
    hooks: httpx.AsyncClient, database: Database
) -> None:
    user = await sign_up(hooks)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_sandbox_card(hooks, user)
    pending = await card_deposit(hooks, user)
    event = make_event("payment_intent.succeeded", intent_of(pending, wallet_id), account=None)

    outcomes = [(await deliver(hooks, event)).json()["outcome"] for _ in range(3)]
    # Another event about the same success (the sandbox's, say) finds it completed.
    other = await hooks.post(
        f"/v1/sandbox/payments/{pending['payment_intent_id']}/succeed", headers=user.headers
    )
    late = make_event("payment_intent.succeeded", intent_of(pending, wallet_id), account=None)
    late_outcome = (await deliver(hooks, late)).json()["outcome"]
    read = await hooks.get(f"/v1/deposits/{pending['id']}", headers=user.headers)

    assert outcomes == ["processed", "duplicate", "duplicate"]
    assert error_of(other, 409)["code"] == "payment_already_succeeded"
    assert late_outcome == "processed"
    assert read.json()["status"] == "completed"
    assert [amount for amount, _ in await deposits_on_chain(database, wallet_id)] == [2500]


async def test_a_payment_other_than_the_deposit_asked_is_refused(
    hooks: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(hooks)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_sandbox_card(hooks, user)
    pending = await card_deposit(hooks, user)

    more = await deliver(
        hooks,
        make_event(
            "payment_intent.succeeded",
            intent_of(pending, wallet_id, amount=9999, amount_received=9999),
            account=None,
        ),
    )
    other_currency = await deliver(
        hooks,
        make_event(
            "payment_intent.succeeded", intent_of(pending, wallet_id, currency="eur"), account=None
        ),
    )

    assert (
        error_of(more, 409)["code"] == error_of(other_currency, 409)["code"] == "payment_mismatch"
    )
    assert deposit_rows(superuser_sql) == [(pending["id"], "pending", False, None)]
    assert superuser_sql("SELECT count(*) FROM stripe_events WHERE type LIKE 'payment%'") == [(0,)]


async def test_canceled_and_failed_events_fail_only_a_pending_deposit(
    hooks: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(hooks)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_sandbox_card(hooks, user)
    canceled = await card_deposit(hooks, user)
    completed = await card_deposit(hooks, user, 3000)
    await hooks.post(
        f"/v1/sandbox/payments/{completed['payment_intent_id']}/succeed", headers=user.headers
    )

    await deliver(
        hooks,
        make_event(
            "payment_intent.canceled",
            intent_of(canceled, wallet_id, status="canceled"),
            account=None,
        ),
    )
    late_failure = await deliver(
        hooks,
        make_event(
            "payment_intent.payment_failed",
            intent_of(completed, wallet_id, status="requires_payment_method"),
            account=None,
        ),
    )

    assert late_failure.json()["outcome"] == "processed"
    assert deposit_rows(superuser_sql) == [
        (canceled["id"], "failed", False, "canceled"),
        (completed["id"], "completed", True, None),
    ]


async def test_a_success_whose_deposit_was_never_committed_is_recorded_from_its_metadata(
    hooks: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    # The request that asked for the payment failed after Stripe took the money: the success
    # event carries what the deposit needs (the wallet, the amount), so nothing is lost.
    user = await sign_up(hooks)
    wallet_id = await wallet_id_of(database, user.user_id)
    card = await add_sandbox_card(hooks, user)
    [(payment_method_id,)] = superuser_sql("SELECT payment_method_id FROM cards")
    lost = {"id": "txn_" + "L" * 24, "payment_intent_id": "pi_lost_1", "amount": 1500}
    intent = intent_of(lost, wallet_id, payment_method=payment_method_id)

    recorded = await deliver(hooks, make_event("payment_intent.succeeded", intent, account=None))

    def stranger(number: int, **fields: Any) -> dict[str, Any]:
        metadata = {**intent["metadata"], "amply_deposit": f"txn_{number:024d}"}
        return {**intent, "id": f"pi_stranger_{number}", "metadata": metadata, **fields}

    strangers = [
        stranger(1, metadata={**intent["metadata"], "amply_deposit": "txn_short"}),
        stranger(2, metadata={"amply_deposit": f"txn_{2:024d}", "wallet_id": "wal_x"}),
        stranger(3, metadata={"amply_deposit": f"txn_{3:024d}"}),
        stranger(4, customer="cus_someone_else"),
        stranger(5, customer=None),
        stranger(6, currency="eur"),
        stranger(7, amount=0, amount_received=0),
        # The deposit it names exists, paid by another PaymentIntent.
        {**intent, "id": "pi_stranger_8"},
    ]
    ignored = [
        await deliver(hooks, make_event("payment_intent.succeeded", obj, account=None))
        for obj in strangers
    ]
    read = await hooks.get(f"/v1/deposits/{lost['id']}", headers=user.headers)
    # A PaymentIntent whose card the wallet does not hold (any more) is still its money.
    cardless = {"id": "txn_" + "C" * 24, "payment_intent_id": "pi_lost_2", "amount": 600}
    await deliver(
        hooks,
        make_event("payment_intent.succeeded", intent_of(cardless, wallet_id), account=None),
    )
    read_cardless = await hooks.get(f"/v1/deposits/{cardless['id']}", headers=user.headers)

    assert recorded.status_code == 200, recorded.text
    assert [r.status_code for r in ignored] == [200] * len(strangers)
    assert read.json()["status"] == "completed"
    assert read.json()["card_id"] == card["id"]
    assert read.json()["payment_intent_id"] == "pi_lost_1"
    assert read_cardless.json()["card_id"] is None
    assert read_cardless.json()["description"] == "Deposit from a card"
    assert [amount for amount, _ in await deposits_on_chain(database, wallet_id)] == [1500, 600]
    assert deposit_rows(superuser_sql) == [
        (lost["id"], "completed", True, None),
        (cardless["id"], "completed", True, None),
    ]
