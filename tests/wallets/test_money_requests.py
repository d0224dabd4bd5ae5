"""Money requests: create, pay (through the transfer risk rules), decline, cancel, expire;
every transition, and the illegal ones changing nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import SuperuserSql
from tests.factories import Account, sign_up
from tests.wallets.test_transfers import BONUS, act, befriend, expire_hold, keyed, wallet


async def ask(
    client: httpx.AsyncClient,
    requester: Account,
    payer: Account,
    amount: int = 1_500,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/requests",
        json={
            "payer": payer.username,
            "amount": amount,
            "description": "Concert tickets",
            **fields,
        },
        headers=requester.headers,
    )
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


async def call(
    client: httpx.AsyncClient,
    account: Account,
    request_id: str,
    action: str,
    expect: int,
    key: str | None = None,
) -> dict[str, Any]:
    headers = keyed(account, key) if action == "pay" else account.headers
    response = await client.post(f"/v1/requests/{request_id}/{action}", headers=headers)
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


async def status_of(client: httpx.AsyncClient, account: Account, request_id: str) -> str:
    response = await client.get(f"/v1/requests/{request_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


@pytest.fixture
async def friends(client: httpx.AsyncClient) -> tuple[Account, Account]:
    """Bob has paid Alice before, so his transfers to her complete at once."""
    alice, bob = await sign_up(client), await sign_up(client)
    await befriend(client, bob, alice)
    return alice, bob


async def test_the_payer_sees_the_request_and_paying_it_moves_the_money(
    client: httpx.AsyncClient, friends: tuple[Account, Account]
) -> None:
    alice, bob = friends
    request = await ask(client, alice, bob)
    assert request["status"] == "pending"
    assert request["payment"] is None
    assert request["requester"]["username"] == alice.username
    incoming = (await client.get("/v1/requests?role=payer", headers=bob.headers)).json()
    assert [r["id"] for r in incoming["data"]] == [request["id"]]
    assert (await client.get("/v1/requests?role=payer", headers=alice.headers)).json()["data"] == []

    paid = await call(client, bob, request["id"], "pay", 201)
    assert paid["request"]["status"] == "paid"
    assert paid["request"]["resolved_at"]
    assert paid["transfer"]["status"] == "completed"
    assert paid["transfer"]["money_request_id"] == request["id"]
    assert paid["transfer"]["description"] == "Concert tickets"
    assert (await wallet(client, alice))["balance"] == BONUS + 1 + 1_500
    seen = await client.get(f"/v1/requests/{request['id']}", headers=alice.headers)
    assert seen.json()["payment"]["id"] == paid["transfer"]["id"]


async def test_paying_twice_pays_once(
    client: httpx.AsyncClient, friends: tuple[Account, Account]
) -> None:
    alice, bob = friends
    request = await ask(client, alice, bob)
    results = await asyncio.gather(
        *(client.post(f"/v1/requests/{request['id']}/pay", headers=keyed(bob)) for _ in range(6))
    )
    assert sorted(r.status_code for r in results) == [201] + [409] * 5
    assert {r.json()["error"]["code"] for r in results if r.status_code == 409} == {
        "request_not_pending"
    }
    assert (await wallet(client, alice))["balance"] == BONUS + 1 + 1_500


async def test_a_retried_payment_replays_the_first_response(
    client: httpx.AsyncClient, friends: tuple[Account, Account]
) -> None:
    alice, bob = friends
    request = await ask(client, alice, bob)
    key = uuid.uuid4().hex
    first = await call(client, bob, request["id"], "pay", 201, key=key)
    again = await call(client, bob, request["id"], "pay", 201, key=key)
    assert again == first
    assert (await wallet(client, alice))["balance"] == BONUS + 1 + 1_500


async def test_a_risky_payment_waits_for_the_payers_confirmation(
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    request = await ask(client, alice, bob)
    paid = await call(client, bob, request["id"], "pay", 201)
    assert paid["transfer"]["status"] == "pending_confirmation"
    assert [f["rule"] for f in paid["transfer"]["risk_flags"]] == ["new_recipient"]
    assert paid["request"]["status"] == "pending"
    # The requester does not see a payment that is not made yet; the payer does.
    assert (await client.get(f"/v1/requests/{request['id']}", headers=alice.headers)).json()[
        "payment"
    ] is None
    # While it waits: no second payment, no decline, no cancel.
    for account, action in ((bob, "pay"), (bob, "decline"), (alice, "cancel")):
        error = (await call(client, account, request["id"], action, 409))["error"]
        assert error["code"] == "request_payment_in_progress"
    await act(client, bob, paid["transfer"]["id"], "confirm")
    assert await status_of(client, alice, request["id"]) == "paid"


async def test_cancelling_the_payment_makes_the_request_payable_again(
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    request = await ask(client, alice, bob)
    paid = await call(client, bob, request["id"], "pay", 201)
    await act(client, bob, paid["transfer"]["id"], "cancel")
    assert await status_of(client, bob, request["id"]) == "pending"
    again = await call(client, bob, request["id"], "pay", 201)
    await act(client, bob, again["transfer"]["id"], "confirm")
    assert await status_of(client, alice, request["id"]) == "paid"
    assert (await wallet(client, alice))["balance"] == BONUS + 1_500


async def test_a_request_is_payable_again_after_its_held_payment_expired(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    request = await ask(client, alice, bob)
    held = await call(client, bob, request["id"], "pay", 201)
    assert held["transfer"]["status"] == "pending_confirmation"
    # Time passes; housekeeping never runs here: the stored status stays pending_confirmation.
    expire_hold(superuser_sql, held["transfer"]["id"])
    assert await status_of(client, bob, request["id"]) == "pending"

    again = await call(client, bob, request["id"], "pay", 201)
    assert again["transfer"]["id"] != held["transfer"]["id"]
    assert again["transfer"]["status"] == "pending_confirmation"  # still a new recipient
    # The stale hold was marked expired in the same transaction, by the transitions allowed.
    [(stale,)] = superuser_sql(
        "SELECT status FROM transactions WHERE id = %s", held["transfer"]["id"]
    )
    assert stale == "expired"
    await act(client, bob, again["transfer"]["id"], "confirm")
    assert await status_of(client, alice, request["id"]) == "paid"
    assert (await wallet(client, alice))["balance"] == BONUS + 1_500
    assert (await wallet(client, bob))["balance"] == BONUS - 1_500


async def test_paying_again_concurrently_after_an_expired_hold_pays_once(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    request = await ask(client, alice, bob)
    held = await call(client, bob, request["id"], "pay", 201)
    expire_hold(superuser_sql, held["transfer"]["id"])
    results = await asyncio.gather(
        *(client.post(f"/v1/requests/{request['id']}/pay", headers=keyed(bob)) for _ in range(6))
    )
    assert sorted(r.status_code for r in results) == [201] + [409] * 5, [r.text for r in results]
    assert {r.json()["error"]["code"] for r in results if r.status_code == 409} == {
        "request_payment_in_progress"
    }
    rows = superuser_sql(
        "SELECT status FROM transactions WHERE money_request_id = %s ORDER BY created_at",
        request["id"],
    )
    assert [status for (status,) in rows] == ["expired", "pending_confirmation"]


@pytest.mark.parametrize(
    ("settle", "by_payer", "status"),
    [("decline", True, "declined"), ("cancel", False, "cancelled")],
)
async def test_declined_and_cancelled_requests_are_final(
    client: httpx.AsyncClient,
    friends: tuple[Account, Account],
    settle: str,
    by_payer: bool,
    status: str,
) -> None:
    alice, bob = friends
    request = await ask(client, alice, bob)
    actor, other = (bob, alice) if by_payer else (alice, bob)
    # The other party may not do this one.
    assert (await call(client, other, request["id"], settle, 404))["error"]["code"] == (
        "request_not_found"
    )
    settled = await call(client, actor, request["id"], settle, 200)
    assert settled["status"] == status
    assert settled["resolved_at"]
    for account, action in ((bob, "pay"), (bob, "decline"), (alice, "cancel")):
        error = (await call(client, account, request["id"], action, 409))["error"]
        assert error["code"] == "request_not_pending"
    assert await status_of(client, alice, request["id"]) == status
    assert (await wallet(client, alice))["balance"] == BONUS + 1


async def test_a_paid_request_cannot_be_declined_or_cancelled(
    client: httpx.AsyncClient, friends: tuple[Account, Account]
) -> None:
    alice, bob = friends
    request = await ask(client, alice, bob)
    await call(client, bob, request["id"], "pay", 201)
    for account, action in ((bob, "decline"), (alice, "cancel"), (bob, "pay")):
        error = (await call(client, account, request["id"], action, 409))["error"]
        assert error["code"] == "request_not_pending"
    assert await status_of(client, alice, request["id"]) == "paid"


async def test_an_expired_request_cannot_be_paid(
    client: httpx.AsyncClient, friends: tuple[Account, Account], superuser_sql: SuperuserSql
) -> None:
    alice, bob = friends
    request = await ask(client, alice, bob)
    superuser_sql(
        "SET session_replication_role = replica; UPDATE money_requests "
        f"SET expires_at = now() - interval '1 second' WHERE id = '{request['id']}'"
    )
    assert await status_of(client, bob, request["id"]) == "expired"
    error = (await call(client, bob, request["id"], "pay", 409))["error"]
    assert error["code"] == "request_expired"
    [(stored,)] = superuser_sql("SELECT status FROM money_requests WHERE id = %s", request["id"])
    assert stored == "expired"
    error = (await call(client, alice, request["id"], "cancel", 409))["error"]
    assert error["code"] == "request_not_pending"
    assert (await wallet(client, alice))["balance"] == BONUS + 1


async def test_a_payment_that_exceeds_the_balance_is_refused_and_the_request_stays(
    client: httpx.AsyncClient, friends: tuple[Account, Account]
) -> None:
    alice, bob = friends
    request = await ask(client, alice, bob, amount=BONUS)
    error = (await call(client, bob, request["id"], "pay", 422))["error"]
    assert error["code"] == "insufficient_funds"
    assert await status_of(client, bob, request["id"]) == "pending"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"amount": 0}, 422, "parameter_invalid"),
        ({"description": " "}, 422, "parameter_invalid"),
        ({"payer": "nobody_here"}, 404, "user_not_found"),
        ({"currency": "EUR"}, 422, "currency_mismatch"),
    ],
)
async def test_bad_requests_are_clear_errors(
    client: httpx.AsyncClient,
    friends: tuple[Account, Account],
    fields: dict[str, Any],
    status: int,
    code: str,
) -> None:
    alice, bob = friends
    body = {"payer": bob.username, "amount": 100, "description": "Tickets", **fields}
    response = await client.post("/v1/requests", json=body, headers=alice.headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert (await client.get("/v1/requests", headers=alice.headers)).json()["data"] == []


async def test_nobody_requests_from_themselves_and_strangers_see_nothing(
    client: httpx.AsyncClient, friends: tuple[Account, Account]
) -> None:
    alice, bob = friends
    response = await client.post(
        "/v1/requests",
        json={"payer": alice.username, "amount": 100, "description": "Me"},
        headers=alice.headers,
    )
    assert response.json()["error"]["code"] == "self_request"
    request = await ask(client, alice, bob)
    mallory = await sign_up(client)
    assert (
        await client.get(f"/v1/requests/{request['id']}", headers=mallory.headers)
    ).status_code == 404
    await call(client, mallory, request["id"], "pay", 404)


async def test_paying_needs_an_idempotency_key(
    client: httpx.AsyncClient, friends: tuple[Account, Account]
) -> None:
    alice, bob = friends
    request = await ask(client, alice, bob)
    response = await client.post(f"/v1/requests/{request['id']}/pay", headers=bob.headers)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "Idempotency-Key"
    assert await status_of(client, bob, request["id"]) == "pending"
