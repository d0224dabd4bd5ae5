"""The wallet's history (types, statuses, dates, pages, ledger links) and giving from a wallet
to an organisation's public ledger."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from amply.kit.db import Database
from amply.ledger import service as ledger
from amply.wallets import housekeeping
from tests.conftest import SuperuserSql
from tests.factories import (
    Account,
    create_fund,
    create_organisation,
    fund_wallet,
    sign_up,
    wallet_id_of,
)
from tests.wallets.test_money_requests import ask, call
from tests.wallets.test_transfers import BONUS, act, befriend, expire_hold, keyed, send, wallet


async def history(
    client: httpx.AsyncClient, account: Account, query: str = ""
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/transactions?limit=100{query}", headers=account.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def give(
    client: httpx.AsyncClient,
    account: Account,
    organisation_id: str,
    amount: int,
    expect: int = 201,
    key: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/wallet/donations",
        json={"organisation_id": organisation_id, "amount": amount, **fields},
        headers=keyed(account, key),
    )
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_history_shows_each_movement_from_the_users_side(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    await befriend(client, alice, bob)
    sent = await send(client, alice, bob, 300)
    held = await send(client, alice, bob, 60_000, expect=422)  # more than available
    assert held["error"]["code"] == "insufficient_funds"
    request = await ask(client, bob, alice, amount=200)
    await call(client, alice, request["id"], "pay", 201)
    await fund_wallet(database, await wallet_id_of(database, alice.user_id), 5_000)

    items = await history(client, alice)
    assert [i["type"] for i in items] == ["deposit", "sent", "sent", "sent", "bonus"]
    paid, plain = items[1], items[2]
    assert paid["money_request_id"] == request["id"]
    assert plain["id"] == sent["id"]
    assert plain["direction"] == "out"
    assert plain["counterparty"]["username"] == bob.username
    own = [leg for leg in plain["ledger_entries"] if leg["type"] == "transfer_out"]
    assert own[0]["amount"] == -300
    assert own[0]["balance_after"] is not None

    bobs = await history(client, bob)
    assert [i["type"] for i in bobs] == ["received", "received", "received", "bonus"]
    assert bobs[1]["direction"] == "in"
    assert bobs[1]["counterparty"]["username"] == alice.username

    assert [i["id"] for i in await history(client, alice, "&type=request")] == [paid["id"]]
    assert len(await history(client, alice, "&type=sent&type=deposit")) == 4
    assert [i["type"] for i in await history(client, alice, "&type=bonus")] == ["bonus"]


async def test_history_time_filters_beyond_the_years_a_datetime_holds_are_open_ended(
    client: httpx.AsyncClient,
) -> None:
    alice = await sign_up(client)
    everything = await history(client, alice)
    # Valid RFC 3339 times whose UTC reading is in the year 0 or the year 10000.
    first = quote("0001-01-01T00:00:00+01:00")
    last = quote("9999-12-31T23:59:59-01:00")

    assert [i["type"] for i in everything] == ["bonus"]
    assert await history(client, alice, f"&created_gte={first}") == everything
    assert await history(client, alice, f"&created_lt={last}") == everything
    assert await history(client, alice, f"&created_lt={first}") == []
    assert await history(client, alice, f"&created_gte={last}") == []


async def test_history_filters_by_status_and_time_and_pages(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    alice, bob, carol = await sign_up(client), await sign_up(client), await sign_up(client)
    waiting = await send(client, alice, bob, 100)
    stale = await send(client, alice, carol, 100)
    expire_hold(superuser_sql, stale["id"])
    pending = await history(client, alice, "&status=pending_confirmation")
    assert [i["id"] for i in pending] == [waiting["id"]]
    assert [i["id"] for i in await history(client, alice, "&status=expired")] == [stale["id"]]
    first = await history(client, alice)
    cutoff = first[0]["created_at"]
    assert [i["id"] for i in await history(client, alice, f"&created_gte={cutoff}")] == [
        stale["id"]
    ]
    page = (await client.get("/v1/transactions?limit=2", headers=alice.headers)).json()
    assert page["has_more"]
    rest = await client.get(
        f"/v1/transactions?limit=2&starting_after={page['data'][-1]['id']}",
        headers=alice.headers,
    )
    assert [i["type"] for i in rest.json()["data"]] == ["bonus"]
    # A held transfer is not in the recipient's history; nobody else's items are readable.
    assert [i["type"] for i in await history(client, bob)] == ["bonus"]
    response = await client.get(f"/v1/transactions/{waiting['id']}", headers=bob.headers)
    assert response.status_code == 404
    response = await client.get(f"/v1/transactions/{waiting['id']}", headers=alice.headers)
    assert response.json()["type"] == "sent"


async def test_housekeeping_marks_expired_holds_and_requests(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    stale = await send(client, alice, bob, 100)
    expire_hold(superuser_sql, stale["id"])
    request = await ask(client, alice, bob)
    paying = await ask(client, bob, alice, amount=50)
    await call(client, alice, paying["id"], "pay", 201)  # held: keeps the request pending
    superuser_sql(
        "SET session_replication_role = replica; UPDATE money_requests "
        "SET expires_at = now() - interval '1 second'"
    )
    done = await housekeeping.expire_stale(database)
    assert (done.holds, done.requests) == (1, 1)
    rows = dict(superuser_sql("SELECT id, status FROM money_requests"))
    assert rows == {request["id"]: "expired", paying["id"]: "pending"}
    [(status,)] = superuser_sql("SELECT status FROM transactions WHERE id = %s", stale["id"])
    assert status == "expired"
    assert await housekeeping.expire_stale(database) == housekeeping.Expired(0, 0)


async def test_giving_moves_money_to_the_organisations_public_chain(
    client: httpx.AsyncClient, database: Database
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    fund_id = await create_fund(client, owner, organisation_id)
    alice = await sign_up(client)
    gift = await give(client, alice, organisation_id, 2_500, fund_id=fund_id)
    assert gift["public_name"] == "Anonymous"
    assert gift["fund_id"] == fund_id
    named = await give(client, alice, organisation_id, 500, anonymous=False)
    assert named["public_name"] == alice.username.title()
    assert (await wallet(client, alice))["balance"] == BONUS - 3_000

    public = await client.get(f"/v1/public/organisations/{organisation_id}/ledger")
    entries = public.json()["data"]
    assert [e["type"] for e in entries] == ["wallet_donation_received"] * 2
    assert entries[0]["amount"] == 2_500
    assert entries[0]["currency"] == "USD"
    for entry in entries:  # no username, email or wallet id on the public chain
        for secret in (alice.username, alice.email, await wallet_id_of(database, alice.user_id)):
            assert secret not in entry["metadata"]
    assert '"donor":"Anonymous"' in entries[0]["metadata"]
    assert f'"donor":"{alice.username.title()}"' in entries[1]["metadata"]
    verified = await client.get(f"/v1/public/organisations/{organisation_id}/ledger/verify")
    assert verified.json()["ok"]
    shown = await client.get(f"/v1/public/organisations/{organisation_id}")
    totals = shown.json()["totals"]
    assert [(t["currency"], t["received"]) for t in totals] == [("USD", 3_000)]
    assert [i["type"] for i in await history(client, alice, "&type=donation")] == ["donation"] * 2


async def test_a_retried_gift_gives_once(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    alice = await sign_up(client)
    key = uuid.uuid4().hex
    first = await give(client, alice, organisation_id, 700, key=key)
    assert await give(client, alice, organisation_id, 700, key=key) == first
    assert (await wallet(client, alice))["balance"] == BONUS - 700


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"amount": BONUS + 1}, 422, "insufficient_funds"),
        ({"amount": 0}, 422, "parameter_invalid"),
        ({"currency": "EUR"}, 422, "currency_mismatch"),
        ({"organisation_id": "org_000000000000000000000000"}, 404, "resource_missing"),
        ({"fund_id": "fund_000000000000000000000000"}, 404, None),
    ],
)
async def test_bad_gifts_are_clear_errors_and_move_nothing(
    client: httpx.AsyncClient, fields: dict[str, Any], status: int, code: str | None
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    alice = await sign_up(client)
    body = {"organisation_id": organisation_id, "amount": 100, **fields}
    response = await client.post("/v1/wallet/donations", json=body, headers=keyed(alice))
    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code
    assert (await wallet(client, alice))["balance"] == BONUS
    public = await client.get(f"/v1/public/organisations/{organisation_id}/ledger")
    assert public.json()["data"] == []


async def test_the_wallet_balance_equals_the_sum_of_its_chain(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    transfer = await send(client, alice, bob, 1_234)
    await act(client, alice, transfer["id"], "confirm")
    await send(client, alice, bob, 66)
    for account in (alice, bob):
        body = await wallet(client, account)
        chain = await client.get("/v1/wallet/ledger?limit=1000", headers=account.headers)
        entries = chain.json()["data"]
        assert sum(entry["amount"] for entry in entries) == body["balance"]
        assert entries[-1]["balance_after"] == body["balance"]
        assert body["ledger"]["head_seq"] == entries[-1]["seq"]
        async with database.session() as session:
            assert (await ledger.verify_chain(session, chain_id=body["id"])).ok
