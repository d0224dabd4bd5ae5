"""Withdrawals through the API: fees, ledger effects, available money, every status
transition (and the illegal ones), sandbox settlement, idempotency, bad input, concurrency.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.ledger.service import PLATFORM_FEES_CHAIN, Entry
from amply.models import Transaction
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import Account, count_rows, error_of, fund_wallet, sign_up, wallet_id_of

REPLAYED = "Idempotent-Replayed"


@pytest.fixture
def settings() -> Settings:
    # No welcome bonus: each test funds its wallets with exactly what it needs.
    return Settings(
        environment="test",
        demo_mode=False,
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
    )


def keyed(account: Account, key: str | None = None) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": key or uuid.uuid4().hex}


async def post_withdrawal(
    client: httpx.AsyncClient, account: Account, *, key: str | None = None, **fields: Any
) -> httpx.Response:
    body = {"amount": 2500, "bank_name": "First Community Bank", **fields}
    return await client.post("/v1/withdrawals", json=body, headers=keyed(account, key))


async def withdraw(
    client: httpx.AsyncClient, account: Account, *, key: str | None = None, **fields: Any
) -> dict[str, Any]:
    response = await post_withdrawal(client, account, key=key, **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def settle(
    client: httpx.AsyncClient,
    account: Account,
    withdrawal_id: str,
    action: str,
    *,
    json_body: dict[str, Any] | None = None,
) -> httpx.Response:
    return await client.post(
        f"/v1/sandbox/withdrawals/{withdrawal_id}/{action}", json=json_body, headers=account.headers
    )


async def funded(client: httpx.AsyncClient, database: Database, amount: int) -> tuple[Account, str]:
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)
    if amount:
        await fund_wallet(database, wallet_id, amount)
    return account, wallet_id


async def balance(database: Database, wallet_id: str) -> int:
    async with database.session() as session:
        return (await ledger.get_balances(session, chain_id=wallet_id)).get("USD", 0)


async def journal(database: Database, journal_id: str) -> list[Entry]:
    async with database.session() as session:
        connection = await session.connection()
        rows = await connection.exec_driver_sql(
            "SELECT id FROM ledger_entries WHERE journal_id = $1", (journal_id,)
        )
        ids = [row[0] for row in rows]
        entries = await ledger.get_entries(session, entry_ids=ids)
    return sorted(entries.values(), key=lambda entry: (entry.chain_id, entry.seq))


def legs(entries: list[Entry], wallet_id: str) -> list[tuple[str, str, int]]:
    return [
        ("wallet" if entry.chain_id == wallet_id else entry.chain_id, entry.type, entry.amount)
        for entry in entries
    ]


async def assert_books_balance(database: Database, *wallet_ids: str) -> None:
    """Every chain verifies, and each wallet's entries add up to its balance."""
    async with database.session() as session:
        for chain_id in (*wallet_ids, PLATFORM_FEES_CHAIN):
            result = await ledger.verify_chain(session, chain_id=chain_id)
            assert result.ok, result.verdict()
        for wallet_id in wallet_ids:
            page = await ledger.list_entries(session, chain_id=wallet_id, limit=1000)
            assert not page.has_more
            total = sum(entry.amount for entry in page.entries)
            balances = await ledger.get_balances(session, chain_id=wallet_id)
            assert total == balances.get("USD", 0)
            assert all(entry.balance_after >= 0 for entry in page.entries)


async def ledger_count(superuser_sql: SuperuserSql) -> int:
    return count_rows(superuser_sql, "ledger_entries")


# --- Requesting -----------------------------------------------------------------------------


async def test_a_standard_withdrawal_is_free_and_debits_the_amount(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 10_000)

    body = await withdraw(client, alice, amount=2500, bank_name="  First Community Bank ")

    assert body["object"] == "withdrawal"
    assert body["id"].startswith("txn_")
    assert body["status"] == "pending"
    assert (body["amount"], body["fee"], body["total"]) == (2500, 0, 2500)
    assert (body["currency"], body["speed"], body["provider"]) == ("USD", "standard", "sandbox")
    assert body["bank_name"] == "First Community Bank"
    assert body["payout_id"].startswith("po_sandbox_")
    assert body["created_at"].endswith("Z")
    assert body["completed_at"] is None
    assert body["failure_code"] is body["failure_message"] is None
    assert body["ledger"]["reversal_journal_id"] is None
    assert await balance(database, wallet_id) == 7500

    entries = await journal(database, body["ledger"]["journal_id"])
    assert legs(entries, wallet_id) == [("wallet", "withdrawal", -2500)]
    assert json.loads(entries[0].metadata) == {
        "transaction_id": body["id"],
        "payout": None,
        "speed": "standard",
    }
    fetched = await client.get(f"/v1/withdrawals/{body['id']}", headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body
    await assert_books_balance(database, wallet_id)


async def test_an_instant_withdrawal_pays_its_fee_to_the_platform_fees_chain(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 20_000)

    body = await withdraw(client, alice, amount=10_000, speed="instant")

    assert (body["amount"], body["fee"], body["total"]) == (10_000, 150, 10_150)
    assert body["speed"] == "instant"
    assert await balance(database, wallet_id) == 9_850
    entries = await journal(database, body["ledger"]["journal_id"])
    assert sorted(legs(entries, wallet_id)) == [
        ("plat_fees", "fee_collected", 150),
        ("wallet", "withdrawal", -10_000),
        ("wallet", "withdrawal_fee", -150),
    ]
    [fee_entry] = [entry for entry in entries if entry.chain_id == PLATFORM_FEES_CHAIN]
    # The platform's chains are public: the fee's leg there never names the wallet.
    assert json.loads(fee_entry.metadata) == {"transaction_id": body["id"]}
    # Nothing personal reaches the ledger: not the bank's name.
    assert all("Bank" not in entry.metadata for entry in entries)
    await assert_books_balance(database, wallet_id)


@pytest.mark.parametrize(
    ("amount", "speed", "fee"),
    [
        (1, "instant", 0),  # 0.015 rounds down: no minimum fee
        (33, "instant", 0),  # 0.495 rounds down
        (34, "instant", 1),  # 0.51 rounds up
        (100, "instant", 2),  # 1.5: half rounds up
        (1_033, "instant", 15),  # 15.495
        (1_034, "instant", 16),  # 15.51
        (10_000, "instant", 150),
        (99_999, "instant", 1_500),  # 1499.985
        (99_999, "standard", 0),
    ],
)
async def test_the_fee_quote_rounds_half_up_to_the_minor_unit(
    client: httpx.AsyncClient, amount: int, speed: str, fee: int
) -> None:
    alice = await sign_up(client)
    response = await client.get(
        "/v1/withdrawals/fee", params={"amount": amount, "speed": speed}, headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "object": "withdrawal_fee",
        "amount": amount,
        "speed": speed,
        "currency": "USD",
        "fee": fee,
        "total": amount + fee,
        "fee_basis_points": 150 if speed == "instant" else 0,
    }


async def test_the_fee_rate_is_a_setting(
    make_client: ClientFactory, settings: Settings, database: Database
) -> None:
    custom = settings.model_copy(update={"instant_withdrawal_fee_basis_points": 250})
    async with make_client(custom) as http:
        alice, wallet_id = await funded(http, database, 5_000)
        body = await withdraw(http, alice, amount=1_000, speed="instant")
    assert (body["fee"], body["total"]) == (25, 1_025)
    assert await balance(database, wallet_id) == 3_975


async def test_a_tiny_instant_withdrawal_costs_no_fee_and_writes_no_fee_legs(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 100)
    body = await withdraw(client, alice, amount=33, speed="instant")
    assert (body["fee"], body["total"]) == (0, 33)
    entries = await journal(database, body["ledger"]["journal_id"])
    assert legs(entries, wallet_id) == [("wallet", "withdrawal", -33)]


# --- Available money ------------------------------------------------------------------------


async def test_amount_plus_fee_must_be_available_to_the_minor_unit(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, wallet_id = await funded(client, database, 1_014)
    before = await ledger_count(superuser_sql)

    refused = await post_withdrawal(client, alice, amount=1_000, speed="instant")

    error = error_of(refused, 422)
    assert (error["code"], error["param"]) == ("insufficient_funds", "amount")
    assert "1015" in error["message"]
    assert "fee of 15" in error["message"]
    assert await ledger_count(superuser_sql) == before
    assert superuser_sql("SELECT count(*) FROM transactions WHERE kind = 'withdrawal'") == [(0,)]
    assert await balance(database, wallet_id) == 1_014

    # One more minor unit and it fits exactly; a standard withdrawal of it all fits too.
    await fund_wallet(database, wallet_id, 1)
    await withdraw(client, alice, amount=1_000, speed="instant")
    assert await balance(database, wallet_id) == 0
    bob, bob_wallet = await funded(client, database, 1_014)
    await withdraw(client, bob, amount=1_014)
    assert await balance(database, bob_wallet) == 0
    error = error_of(await post_withdrawal(client, bob, amount=1), 422)
    assert error["code"] == "insufficient_funds"


async def test_money_held_by_a_transfer_awaiting_confirmation_cannot_be_withdrawn(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    _, bob_wallet = await funded(client, database, 0)
    async with database.session() as session:
        session.add(
            Transaction(
                id="txn_" + uuid.uuid4().hex[:24],
                kind="transfer",
                status="pending_confirmation",
                wallet_id=wallet_id,
                counterparty_wallet_id=bob_wallet,
                amount=3_000,
                currency="USD",
                description="Held for confirmation",
                hold_expires_at=datetime.now(UTC) + timedelta(hours=1),
            )
        )
        await session.commit()

    error = error_of(await post_withdrawal(client, alice, amount=2_001), 422)
    assert error["code"] == "insufficient_funds"
    assert "2000" in error["message"]
    await withdraw(client, alice, amount=2_000)
    assert await balance(database, wallet_id) == 3_000  # the held money is still there


# --- Settlement -----------------------------------------------------------------------------


async def test_a_pending_withdrawal_is_paid_and_the_ledger_does_not_move(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    created = await withdraw(client, alice, amount=1_000, speed="instant")
    entries_before = await ledger_count(superuser_sql)

    response = await settle(client, alice, created["id"], "paid")

    assert response.status_code == 200, response.text
    paid = response.json()
    assert paid["status"] == "paid"
    assert paid["completed_at"] is not None
    assert paid["completed_at"].endswith("Z")
    assert {k: v for k, v in paid.items() if k not in ("status", "completed_at")} == {
        k: v for k, v in created.items() if k not in ("status", "completed_at")
    }
    assert await ledger_count(superuser_sql) == entries_before
    assert await balance(database, wallet_id) == 3_985
    fetched = await client.get(f"/v1/withdrawals/{created['id']}", headers=alice.headers)
    assert fetched.json() == paid
    await assert_books_balance(database, wallet_id)


async def test_a_failed_payout_returns_the_amount_and_the_fee(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    created = await withdraw(client, alice, amount=1_000, speed="instant")
    assert await balance(database, wallet_id) == 3_985

    response = await settle(
        client,
        alice,
        created["id"],
        "fail",
        json_body={"failure_code": "account_closed", "failure_message": "Closed."},
    )

    assert response.status_code == 200, response.text
    failed = response.json()
    assert failed["status"] == "failed"
    assert failed["completed_at"] is None
    assert (failed["failure_code"], failed["failure_message"]) == ("account_closed", "Closed.")
    reversal_id = failed["ledger"]["reversal_journal_id"]
    assert reversal_id is not None
    assert reversal_id != failed["ledger"]["journal_id"]
    entries = await journal(database, reversal_id)
    assert sorted(legs(entries, wallet_id)) == [
        ("plat_fees", "fee_refunded", -15),
        ("wallet", "withdrawal_fee_refunded", 15),
        ("wallet", "withdrawal_reversed", 1_000),
    ]
    [returned] = [entry for entry in entries if entry.type == "withdrawal_reversed"]
    assert json.loads(returned.metadata) == {
        "transaction_id": created["id"],
        "payout": created["payout_id"],
    }
    assert await balance(database, wallet_id) == 5_000
    async with database.session() as session:
        fees = await ledger.get_balances(session, chain_id=PLATFORM_FEES_CHAIN)
    assert fees == {"USD": 0}
    await assert_books_balance(database, wallet_id)


async def test_a_failed_standard_payout_without_a_body_uses_a_default_reason(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    created = await withdraw(client, alice, amount=5_000)
    response = await client.post(
        f"/v1/sandbox/withdrawals/{created['id']}/fail", headers=alice.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["failure_code"] == "could_not_process"
    assert response.json()["failure_message"]
    entries = await journal(database, response.json()["ledger"]["reversal_journal_id"])
    assert legs(entries, wallet_id) == [("wallet", "withdrawal_reversed", 5_000)]
    assert await balance(database, wallet_id) == 5_000


@pytest.mark.parametrize(
    ("first", "second"),
    [("paid", "fail"), ("fail", "paid"), ("paid", "paid"), ("fail", "fail")],
)
async def test_only_a_pending_withdrawal_changes_status(
    client: httpx.AsyncClient,
    database: Database,
    superuser_sql: SuperuserSql,
    first: str,
    second: str,
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    created = await withdraw(client, alice, amount=1_000, speed="instant")
    settled = await settle(client, alice, created["id"], first)
    assert settled.status_code == 200, settled.text
    entries_before = await ledger_count(superuser_sql)
    balance_before = await balance(database, wallet_id)
    row_before = superuser_sql("SELECT * FROM transactions WHERE id = %s", created["id"])

    refused = await settle(client, alice, created["id"], second)

    error = error_of(refused, 409)
    assert error["code"] == "withdrawal_not_pending"
    assert settled.json()["status"] in error["message"]
    assert await ledger_count(superuser_sql) == entries_before
    assert await balance(database, wallet_id) == balance_before
    assert superuser_sql("SELECT * FROM transactions WHERE id = %s", created["id"]) == row_before
    fetched = await client.get(f"/v1/withdrawals/{created['id']}", headers=alice.headers)
    assert fetched.json() == settled.json()
    await assert_books_balance(database, wallet_id)


async def test_only_the_owner_sees_or_settles_a_withdrawal(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, _ = await funded(client, database, 5_000)
    mallory = await sign_up(client)
    created = await withdraw(client, alice, amount=1_000)

    responses = [
        await client.get(f"/v1/withdrawals/{created['id']}", headers=mallory.headers),
        await settle(client, mallory, created["id"], "paid"),
        await settle(client, mallory, created["id"], "fail"),
        await client.get("/v1/withdrawals/txn_000000000000000000000000", headers=alice.headers),
        await settle(client, alice, "txn_000000000000000000000000", "paid"),
    ]

    for response in responses:
        error = error_of(response, 404)
        assert (error["message"], error["param"]) == ("No such withdrawal.", "withdrawal_id")
    listed = await client.get("/v1/withdrawals", headers=mallory.headers)
    assert listed.json() == {"object": "list", "data": [], "has_more": False}
    assert superuser_sql("SELECT status FROM transactions WHERE id = %s", created["id"]) == [
        ("pending",)
    ]


async def test_another_kind_of_transaction_is_no_withdrawal(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, _ = await funded(client, database, 100)
    [(deposit_id,)] = superuser_sql("SELECT id FROM transactions WHERE kind = 'deposit'")
    for response in (
        await client.get(f"/v1/withdrawals/{deposit_id}", headers=alice.headers),
        await settle(client, alice, deposit_id, "paid"),
    ):
        assert error_of(response, 404)["message"] == "No such withdrawal."


async def test_api_keys_and_anonymous_callers_cannot_withdraw(
    client: httpx.AsyncClient,
) -> None:
    anonymous = await client.post(
        "/v1/withdrawals",
        json={"amount": 1, "bank_name": "B"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert error_of(anonymous, 401)["type"] == "authentication_error"
    keyed_call = await client.post(
        "/v1/withdrawals",
        json={"amount": 1, "bank_name": "B"},
        headers={"Authorization": "Bearer sk_test_" + "x" * 40, "Idempotency-Key": "k" * 20},
    )
    assert keyed_call.status_code == 401


# --- Listing --------------------------------------------------------------------------------


async def test_withdrawals_are_listed_newest_first_page_by_page(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, _ = await funded(client, database, 10_000)
    made = [await withdraw(client, alice, amount=100 + n) for n in range(3)]
    await settle(client, alice, made[0]["id"], "paid")

    first = await client.get("/v1/withdrawals", params={"limit": 2}, headers=alice.headers)
    assert first.status_code == 200, first.text
    assert [w["id"] for w in first.json()["data"]] == [made[2]["id"], made[1]["id"]]
    assert first.json()["has_more"] is True
    second = await client.get(
        "/v1/withdrawals",
        params={"limit": 2, "starting_after": made[1]["id"]},
        headers=alice.headers,
    )
    assert [w["id"] for w in second.json()["data"]] == [made[0]["id"]]
    assert second.json()["has_more"] is False
    assert second.json()["data"][0]["status"] == "paid"
    paid = await client.get("/v1/withdrawals", params={"status": "paid"}, headers=alice.headers)
    assert [w["id"] for w in paid.json()["data"]] == [made[0]["id"]]
    bad = await client.get("/v1/withdrawals", params={"status": "lost"}, headers=alice.headers)
    assert error_of(bad, 422)["param"] == "status"


# --- Idempotency ----------------------------------------------------------------------------


async def test_a_retry_with_the_same_key_returns_the_first_withdrawal_and_moves_money_once(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    key = uuid.uuid4().hex

    first = await post_withdrawal(client, alice, key=key, amount=1_000, speed="instant")
    retry = await post_withdrawal(client, alice, key=key, amount=1_000, speed="instant")

    assert first.status_code == retry.status_code == 201, retry.text
    assert REPLAYED not in first.headers
    assert retry.headers[REPLAYED] == "true"
    assert retry.json() == first.json()
    assert superuser_sql("SELECT count(*) FROM transactions WHERE kind = 'withdrawal'") == [(1,)]
    assert superuser_sql(
        "SELECT count(DISTINCT journal_id) FROM ledger_entries WHERE type = 'withdrawal'"
    ) == [(1,)]
    assert await balance(database, wallet_id) == 3_985

    reused = await post_withdrawal(client, alice, key=key, amount=1_001, speed="instant")
    error = error_of(reused, 409)
    assert (error["code"], error["param"]) == ("idempotency_key_reused", "Idempotency-Key")
    assert await balance(database, wallet_id) == 3_985


async def test_concurrent_retries_with_one_key_withdraw_once(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    key = uuid.uuid4().hex
    responses = await asyncio.gather(
        *(post_withdrawal(client, alice, key=key, amount=700) for _ in range(6))
    )
    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert sum(REPLAYED in response.headers for response in responses) == 5
    assert superuser_sql("SELECT count(*) FROM transactions WHERE kind = 'withdrawal'") == [(1,)]
    assert await balance(database, wallet_id) == 4_300


async def test_a_refused_withdrawal_leaves_its_key_free_for_the_retry(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 500)
    key = uuid.uuid4().hex
    error_of(await post_withdrawal(client, alice, key=key, amount=1_000), 422)
    await fund_wallet(database, wallet_id, 500)
    assert (await post_withdrawal(client, alice, key=key, amount=1_000)).status_code == 201
    assert await balance(database, wallet_id) == 0


async def test_keys_belong_to_their_user(client: httpx.AsyncClient, database: Database) -> None:
    alice, alice_wallet = await funded(client, database, 1_000)
    bob, bob_wallet = await funded(client, database, 1_000)
    key = uuid.uuid4().hex
    first = await withdraw(client, alice, key=key, amount=400)
    second = await withdraw(client, bob, key=key, amount=400)
    assert first["id"] != second["id"]
    assert await balance(database, alice_wallet) == await balance(database, bob_wallet) == 600


async def test_the_idempotency_key_is_required_and_checked(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 1_000)
    body = {"amount": 100, "bank_name": "Bank"}
    missing = await client.post("/v1/withdrawals", json=body, headers=alice.headers)
    assert error_of(missing, 422)["param"] == "Idempotency-Key"
    short = await client.post("/v1/withdrawals", json=body, headers=keyed(alice, "short"))
    assert error_of(short, 400)["code"] == "idempotency_key_invalid"
    assert await balance(database, wallet_id) == 1_000


# --- Bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": 100.0}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": None}, "amount"),
        ({"amount": 10**15 + 1}, "amount"),
        ({"amount": 10**30}, "amount"),
        ({"speed": "fast"}, "speed"),
        ({"speed": None}, "speed"),
        ({"bank_name": ""}, "bank_name"),
        ({"bank_name": "   "}, "bank_name"),
        ({"bank_name": "x" * 101}, "bank_name"),
        ({"bank_name": "a\x00b"}, "bank_name"),
        ({"bank_name": 7}, "bank_name"),
        ({"currency": "XXX"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"iban": "DE00"}, "iban"),
    ],
)
async def test_bad_input_is_a_clear_422_and_moves_nothing(
    client: httpx.AsyncClient,
    database: Database,
    superuser_sql: SuperuserSql,
    fields: dict[str, Any],
    param: str,
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    response = await post_withdrawal(client, alice, **fields)
    error = error_of(response, 422)
    assert (error["code"], error["param"]) == ("parameter_invalid", param)
    assert error["message"].startswith(f"{param}: ")
    assert await balance(database, wallet_id) == 5_000
    assert superuser_sql("SELECT count(*) FROM transactions WHERE kind = 'withdrawal'") == [(0,)]


async def test_missing_fields_and_broken_json_are_4xx(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, _ = await funded(client, database, 5_000)
    for body, param in (({"bank_name": "B"}, "amount"), ({"amount": 1}, "bank_name")):
        response = await client.post("/v1/withdrawals", json=body, headers=keyed(alice))
        assert error_of(response, 422)["param"] == param
    broken = await client.post(
        "/v1/withdrawals",
        content=b'{"amount": ',
        headers={**keyed(alice), "Content-Type": "application/json"},
    )
    assert error_of(broken, 400)["code"] == "body_invalid_json"
    queries: list[dict[str, str | int]] = [
        {"amount": 0},
        {"amount": "x"},
        {"amount": 1, "speed": "fast"},
        {},
    ]
    for params in queries:
        quote = await client.get("/v1/withdrawals/fee", params=params, headers=alice.headers)
        assert error_of(quote, 422)["code"] == "parameter_invalid"
    bad_failure = await settle(
        client, alice, "txn_000000000000000000000000", "fail", json_body={"failure_code": "No!"}
    )
    assert error_of(bad_failure, 422)["param"] == "failure_code"


async def test_a_currency_other_than_the_wallets_is_refused(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    error = error_of(await post_withdrawal(client, alice, currency="EUR"), 422)
    assert (error["code"], error["param"]) == ("currency_mismatch", "currency")
    assert await balance(database, wallet_id) == 5_000
    # The wallet's own currency is fine, in any case.
    assert (await withdraw(client, alice, currency="usd", amount=100))["currency"] == "USD"


# --- Stripe mode ----------------------------------------------------------------------------


async def test_with_stripe_keys_withdrawals_are_refused_before_any_money_moves(
    client: httpx.AsyncClient,
    make_client: ClientFactory,
    settings: Settings,
    database: Database,
    superuser_sql: SuperuserSql,
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    created = await withdraw(client, alice, amount=1_000)
    entries_before = await ledger_count(superuser_sql)
    with_keys = settings.model_copy(update={"stripe_secret_key": SecretStr("sk_test_x")})

    async with make_client(with_keys) as stripe_client:
        refused = await post_withdrawal(stripe_client, alice, amount=1_000, speed="instant")
        sandbox = [
            await settle(stripe_client, alice, created["id"], action) for action in ("paid", "fail")
        ]
        listed = await stripe_client.get("/v1/withdrawals", headers=alice.headers)

    error = error_of(refused, 503)
    assert error["code"] == "payouts_unavailable"
    assert "No money has moved" in error["message"]
    for response in sandbox:
        assert error_of(response, 404)["code"] == "sandbox_disabled"
    assert [w["id"] for w in listed.json()["data"]] == [created["id"]]
    assert await ledger_count(superuser_sql) == entries_before
    assert await balance(database, wallet_id) == 4_000
    assert count_rows(superuser_sql, "idempotency_keys") == 1  # the first withdrawal's only


# --- Concurrency ----------------------------------------------------------------------------


async def test_concurrent_withdrawals_never_overdraw_the_wallet(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, wallet_id = await funded(client, database, 10_000)

    responses = await asyncio.gather(
        *(post_withdrawal(client, alice, amount=1_000, speed="instant") for _ in range(12))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 9 + [422] * 3, [r.text for r in responses if r.status_code >= 500]
    for response in responses:
        if response.status_code == 422:
            assert response.json()["error"]["code"] == "insufficient_funds"
    assert await balance(database, wallet_id) == 10_000 - 9 * 1_015
    assert superuser_sql(
        "SELECT count(*), sum(amount + fee) FROM transactions WHERE kind = 'withdrawal'"
    ) == [(9, 9 * 1_015)]
    async with database.session() as session:
        fees = await ledger.get_balances(session, chain_id=PLATFORM_FEES_CHAIN)
    assert fees == {"USD": 9 * 15}
    await assert_books_balance(database, wallet_id)


async def test_concurrent_settlements_of_one_withdrawal_apply_once(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, wallet_id = await funded(client, database, 5_000)
    created = await withdraw(client, alice, amount=1_000, speed="instant")

    responses = await asyncio.gather(
        *(settle(client, alice, created["id"], "fail") for _ in range(4)),
        *(settle(client, alice, created["id"], "paid") for _ in range(4)),
    )

    assert sorted(r.status_code for r in responses) == [200] + [409] * 7
    [winner] = [r.json() for r in responses if r.status_code == 200]
    assert superuser_sql(
        "SELECT count(*) FROM ledger_entries WHERE type = 'withdrawal_reversed'"
    ) == [(1 if winner["status"] == "failed" else 0,)]
    expected = 5_000 if winner["status"] == "failed" else 3_985
    assert await balance(database, wallet_id) == expected
    await assert_books_balance(database, wallet_id)
