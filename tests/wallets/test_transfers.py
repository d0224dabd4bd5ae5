"""Transfers through the API: risk rules, holds, confirmation, cancellation, expiry, hard
limits, errors and idempotency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import Account, fund_wallet, sign_up, wallet_id_of

BONUS = 10_000


def keyed(account: Account, key: str | None = None) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": key or uuid.uuid4().hex}


async def send(
    client: httpx.AsyncClient,
    sender: Account,
    recipient: Account | str,
    amount: int,
    *,
    expect: int = 201,
    key: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    username = recipient if isinstance(recipient, str) else recipient.username
    response = await client.post(
        "/v1/transfers",
        json={"recipient": username, "amount": amount, "description": "Lunch", **fields},
        headers=keyed(sender, key),
    )
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


async def act(
    client: httpx.AsyncClient, account: Account, transfer_id: str, action: str, expect: int = 200
) -> dict[str, Any]:
    response = await client.post(f"/v1/transfers/{transfer_id}/{action}", headers=account.headers)
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


async def wallet(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    response = await client.get("/v1/wallet", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def befriend(client: httpx.AsyncClient, sender: Account, recipient: Account) -> None:
    """One confirmed transfer, so the new-recipient rule no longer matches."""
    first = await send(client, sender, recipient, 1)
    assert first["status"] == "pending_confirmation"
    await act(client, sender, first["id"], "confirm")


def expire_hold(superuser_sql: SuperuserSql, transfer_id: str) -> None:
    """Move a hold's expiry into the past, past the guard that keeps terms fixed."""
    assert transfer_id.isalnum() or transfer_id.startswith("txn_")
    superuser_sql(
        "SET session_replication_role = replica; "
        "UPDATE transactions SET hold_expires_at = now() - interval '1 second' "
        f"WHERE id = '{transfer_id}'"
    )


def rules(transfer: dict[str, Any]) -> list[str]:
    return [flag["rule"] for flag in transfer["risk_flags"]]


@pytest.fixture
async def pair(client: httpx.AsyncClient) -> tuple[Account, Account]:
    return await sign_up(client), await sign_up(client)


async def test_a_new_wallet_holds_the_welcome_bonus_from_the_promotions_chain(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice = await sign_up(client)
    body = await wallet(client, alice)
    assert body["balance"] == body["available"] == BONUS
    assert body["held"] == 0
    assert body["currency"] == "USD"
    assert body["ledger"]["head_seq"] == 1
    async with database.session() as session:
        [bonus] = (await ledger.list_entries(session, chain_id=body["id"])).entries
        promotions = await ledger.list_entries(session, chain_id=ledger.PLATFORM_PROMOTIONS_CHAIN)
        # The public promotions chain never names the wallet: the journal links the legs.
        [granted] = [e for e in promotions.entries if e.journal_id == bonus.journal_id]
        assert granted.amount == -BONUS
        assert granted.type == "promotion_granted"
        assert body["id"] not in granted.metadata


async def test_no_bonus_outside_demo_mode(make_client: ClientFactory, settings: Settings) -> None:
    async with make_client(settings.model_copy(update={"demo_mode": False})) as http:
        alice = await sign_up(http)
        body = await wallet(http, alice)
        assert body["balance"] == 0
        assert body["ledger"]["head_seq"] == 0


def test_demo_mode_cannot_be_on_with_live_keys() -> None:
    from pydantic import SecretStr, ValidationError

    with pytest.raises(ValidationError, match="demo_mode"):
        Settings(demo_mode=True, stripe_secret_key=SecretStr("sk_live_x"))
    assert not Settings(stripe_secret_key=SecretStr("sk_live_x")).demo
    assert Settings().demo


async def test_a_first_transfer_to_someone_waits_for_confirmation_and_holds_its_amount(
    client: httpx.AsyncClient, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    transfer = await send(client, alice, bob, 2_000)
    assert transfer["status"] == "pending_confirmation"
    assert rules(transfer) == ["new_recipient"]
    assert transfer["risk_flags"][0]["reason"] == "This is your first transfer to this recipient."
    assert transfer["ledger_entries"] == []
    assert transfer["hold_expires_at"]
    body = await wallet(client, alice)
    assert (body["balance"], body["held"], body["available"]) == (BONUS, 2_000, BONUS - 2_000)
    assert (await wallet(client, bob))["balance"] == BONUS

    confirmed = await act(client, alice, transfer["id"], "confirm")
    assert confirmed["status"] == "completed"
    assert confirmed["completed_at"]
    legs = {leg["type"]: leg for leg in confirmed["ledger_entries"]}
    assert legs["transfer_out"]["amount"] == -2_000
    assert legs["transfer_out"]["balance_after"] == BONUS - 2_000
    assert legs["transfer_in"]["amount"] == 2_000
    assert legs["transfer_in"]["balance_after"] is None
    assert (await wallet(client, alice))["held"] == 0
    assert (await wallet(client, bob))["balance"] == BONUS + 2_000


async def test_a_transfer_to_a_known_recipient_completes_at_once(
    client: httpx.AsyncClient, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    await befriend(client, alice, bob)
    transfer = await send(client, alice, bob, 500)
    assert transfer["status"] == "completed"
    assert transfer["risk_flags"] == []
    assert transfer["sender"]["username"] == alice.username
    assert transfer["recipient"]["username"] == bob.username
    assert (await wallet(client, bob))["balance"] == BONUS + 501


@pytest.fixture
async def strict(
    make_client: ClientFactory, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    tight = settings.model_copy(
        update={
            "risk_large_transfer_threshold": 1_000,
            "risk_rapid_transfer_count": 2,
            "risk_rapid_transfer_window_seconds": 600,
        }
    )
    async with make_client(tight) as http:
        yield http


async def test_the_large_amount_rule_alone_follows_its_setting(
    make_client: ClientFactory, settings: Settings
) -> None:
    update = {"risk_large_transfer_threshold": 1_000}
    async with make_client(settings.model_copy(update=update)) as http:
        alice, bob = await sign_up(http), await sign_up(http)
        await befriend(http, alice, bob)
        assert (await send(http, alice, bob, 1_000))["status"] == "completed"  # not above
        transfer = await send(http, alice, bob, 1_001)
        assert rules(transfer) == ["large_amount"]
        assert transfer["risk_flags"][0]["reason"] == (
            "10.01 USD is above the large-transfer threshold of 10.00 USD."
        )


async def test_the_rapid_transfers_rule_alone_counts_the_window(
    make_client: ClientFactory, settings: Settings
) -> None:
    update = {"risk_rapid_transfer_count": 2, "risk_rapid_transfer_window_seconds": 600}
    async with make_client(settings.model_copy(update=update)) as http:
        alice, bob = await sign_up(http), await sign_up(http)
        await befriend(http, alice, bob)  # transfer 1
        assert (await send(http, alice, bob, 10))["status"] == "completed"  # transfer 2
        transfer = await send(http, alice, bob, 10)  # transfer 3: more than 2 in the window
        assert rules(transfer) == ["rapid_transfers"]
        assert transfer["risk_flags"][0]["reason"] == (
            "This is your transfer number 3 within 10 minutes; more than 2 need confirming."
        )


async def test_every_matching_rule_is_reported_together(strict: httpx.AsyncClient) -> None:
    alice, bob, carol = await sign_up(strict), await sign_up(strict), await sign_up(strict)
    await befriend(strict, alice, bob)
    await send(strict, alice, bob, 10)
    transfer = await send(strict, alice, carol, 5_000)
    assert rules(transfer) == ["large_amount", "new_recipient", "rapid_transfers"]
    assert all(flag["reason"] for flag in transfer["risk_flags"])


async def test_the_daily_limit_blocks_a_transfer_and_moves_nothing(
    make_client: ClientFactory, settings: Settings
) -> None:
    async with make_client(settings.model_copy(update={"transfer_daily_limit": 3_000})) as http:
        alice, bob = await sign_up(http), await sign_up(http)
        held = await send(http, alice, bob, 2_000)  # held money counts against the cap
        blocked = await send(http, alice, bob, 1_001)
        assert blocked["status"] == "blocked"
        assert blocked["risk_flags"] == []
        assert blocked["blocked_reason"] == (
            "Daily sending limit: this transfer would take your transfers of the last 24 "
            "hours to 30.01 USD, above the limit of 30.00 USD."
        )
        await act(http, alice, blocked["id"], "confirm", expect=409)
        body = await wallet(http, alice)
        assert (body["balance"], body["held"]) == (BONUS, 2_000)
        await act(http, alice, held["id"], "cancel")
        assert (await send(http, alice, bob, 1_001))["status"] == "pending_confirmation"


@pytest.mark.parametrize(
    ("fields", "status", "code", "param"),
    [
        ({"amount": 0}, 422, "parameter_invalid", "amount"),
        ({"amount": -5}, 422, "parameter_invalid", "amount"),
        ({"amount": 1.5}, 422, "parameter_invalid", "amount"),
        ({"amount": "100"}, 422, "parameter_invalid", "amount"),
        ({"description": ""}, 422, "parameter_invalid", "description"),
        ({"description": None}, 422, "parameter_invalid", "description"),
        ({"recipient": "nobody_here"}, 404, "user_not_found", "recipient"),
        ({"currency": "EUR"}, 422, "currency_mismatch", "currency"),
        ({"amount": BONUS + 1}, 422, "insufficient_funds", "amount"),
    ],
)
async def test_bad_transfers_are_clear_errors_and_change_nothing(
    client: httpx.AsyncClient,
    pair: tuple[Account, Account],
    fields: dict[str, Any],
    status: int,
    code: str,
    param: str,
) -> None:
    alice, bob = pair
    body = {"recipient": bob.username, "amount": 100, "description": "Lunch", **fields}
    response = await client.post("/v1/transfers", json=body, headers=keyed(alice))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    listed = await client.get("/v1/transfers", headers=alice.headers)
    assert listed.json()["data"] == []
    assert (await wallet(client, alice))["balance"] == BONUS


async def test_sending_to_yourself_is_refused(
    client: httpx.AsyncClient, pair: tuple[Account, Account]
) -> None:
    alice, _ = pair
    response = await client.post(
        "/v1/transfers",
        json={"recipient": alice.username.upper(), "amount": 100, "description": "Me"},
        headers=keyed(alice),
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "self_transfer"


async def test_a_transfer_needs_an_idempotency_key(
    client: httpx.AsyncClient, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    response = await client.post(
        "/v1/transfers",
        json={"recipient": bob.username, "amount": 100, "description": "Lunch"},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "Idempotency-Key"


async def test_a_retried_transfer_moves_money_once(
    client: httpx.AsyncClient, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    await befriend(client, alice, bob)
    key = uuid.uuid4().hex
    results = await asyncio.gather(*(send(client, alice, bob, 700, key=key) for _ in range(5)))
    assert len({result["id"] for result in results}) == 1
    assert (await wallet(client, bob))["balance"] == BONUS + 701
    reused = await client.post(
        "/v1/transfers",
        json={"recipient": bob.username, "amount": 701, "description": "Lunch"},
        headers=keyed(alice, key),
    )
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("first", ["confirm", "cancel"])
@pytest.mark.parametrize("second", ["confirm", "cancel"])
async def test_a_settled_transfer_cannot_be_confirmed_or_cancelled_again(
    client: httpx.AsyncClient, pair: tuple[Account, Account], first: str, second: str
) -> None:
    alice, bob = pair
    transfer = await send(client, alice, bob, 300)
    await act(client, alice, transfer["id"], first)
    before = await wallet(client, bob)
    error = (await act(client, alice, transfer["id"], second, expect=409))["error"]
    assert error["code"] == "transfer_not_pending"
    assert await wallet(client, bob) == before


async def test_only_the_sender_confirms_or_cancels(
    client: httpx.AsyncClient, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    transfer = await send(client, alice, bob, 300)
    for action in ("confirm", "cancel"):
        error = (await act(client, bob, transfer["id"], action, expect=404))["error"]
        assert error["code"] == "transfer_not_found"
    # A held transfer is not the recipient's business yet; a completed one is.
    assert (
        await client.get(f"/v1/transfers/{transfer['id']}", headers=bob.headers)
    ).status_code == 404
    await act(client, alice, transfer["id"], "confirm")
    seen = await client.get(f"/v1/transfers/{transfer['id']}", headers=bob.headers)
    assert seen.status_code == 200
    assert seen.json()["status"] == "completed"


async def test_confirmation_rechecks_the_balance(
    client: httpx.AsyncClient, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    held = await send(client, alice, bob, 6_000)
    # The hold leaves 4,000 available: a bigger second transfer is refused outright.
    await send(client, alice, bob, 4_001, expect=422)
    second = await send(client, alice, bob, 4_000)
    await act(client, alice, second["id"], "confirm")
    error = await act(client, alice, held["id"], "confirm", expect=200)
    assert error["status"] == "completed"
    assert (await wallet(client, alice))["balance"] == 0


async def test_confirming_fails_when_the_money_is_gone(
    client: httpx.AsyncClient, database: Database, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    held = await send(client, alice, bob, 6_000)
    await befriend(client, alice, bob)
    # Spend what the hold did not cover, then a withdrawal-like debit of the rest.
    await send(client, alice, bob, 3_999)
    assert (await wallet(client, alice))["available"] == 0
    wallet_id = await wallet_id_of(database, alice.user_id)
    await fund_wallet(database, wallet_id, 1)
    transfer = await send(client, alice, bob, 1)
    assert transfer["status"] == "completed"
    confirmed = await act(client, alice, held["id"], "confirm")
    assert confirmed["status"] == "completed"
    assert (await wallet(client, alice))["balance"] == 0


async def test_an_unconfirmed_hold_expires_and_cannot_be_confirmed(
    client: httpx.AsyncClient, pair: tuple[Account, Account], superuser_sql: SuperuserSql
) -> None:
    alice, bob = pair
    transfer = await send(client, alice, bob, 2_500)
    expire_hold(superuser_sql, transfer["id"])
    body = await wallet(client, alice)
    assert body["held"] == 0
    assert body["available"] == BONUS
    shown = await client.get(f"/v1/transfers/{transfer['id']}", headers=alice.headers)
    assert shown.json()["status"] == "expired"
    error = (await act(client, alice, transfer["id"], "confirm", expect=409))["error"]
    assert error["code"] == "transfer_expired"
    # The refusal was recorded: it is expired for good.
    [(status,)] = superuser_sql("SELECT status FROM transactions WHERE id = %s", transfer["id"])
    assert status == "expired"
    error = (await act(client, alice, transfer["id"], "cancel", expect=409))["error"]
    assert error["code"] == "transfer_not_pending"
    assert (await wallet(client, bob))["balance"] == BONUS


async def test_concurrent_transfers_never_overspend(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    await befriend(client, alice, bob)  # alice has BONUS - 1 left
    results = await asyncio.gather(
        *(
            client.post(
                "/v1/transfers",
                json={"recipient": bob.username, "amount": 1_000, "description": "Race"},
                headers=keyed(alice),
            )
            for _ in range(16)
        )
    )
    statuses = sorted(response.status_code for response in results)
    assert statuses.count(201) == 9
    assert statuses.count(422) == 7
    body = await wallet(client, alice)
    # Some completed, the rest are held (rapid transfers): together, exactly what was there.
    assert body["available"] == BONUS - 1 - 9_000
    assert body["held"] % 1_000 == 0
    wallet_id = await wallet_id_of(database, alice.user_id)
    async with database.session() as session:
        result = await ledger.verify_chain(session, chain_id=wallet_id)
        assert result.ok
        page = await ledger.list_entries(session, chain_id=wallet_id, limit=1000)
        assert sum(entry.amount for entry in page.entries) == body["balance"]


async def test_transfers_list_pages_newest_first(
    client: httpx.AsyncClient, pair: tuple[Account, Account]
) -> None:
    alice, bob = pair
    await befriend(client, alice, bob)
    ids = [(await send(client, alice, bob, 10 + n))["id"] for n in range(3)]
    first = (await client.get("/v1/transfers?limit=2", headers=alice.headers)).json()
    assert [t["id"] for t in first["data"]] == ids[::-1][:2]
    assert first["has_more"]
    rest = await client.get(
        f"/v1/transfers?limit=2&starting_after={first['data'][-1]['id']}", headers=alice.headers
    )
    assert next(t["id"] for t in rest.json()["data"]) == ids[0]
    received = (await client.get("/v1/transfers?status=completed", headers=bob.headers)).json()
    assert len(received["data"]) == 4
