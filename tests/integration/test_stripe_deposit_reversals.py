"""Refunds and chargebacks of wallet deposits against the Stripe test server, over real HTTP.

A deposit is a charge on the platform's own account. When Stripe takes money back (a refund
made from the dashboard, a dispute), the wallet loses it (``deposit_reversed``) as far as it
holds it, and the platform's ``plat_losses`` chain the rest (``deposit_loss``) plus Stripe's
dispute fee; a won dispute returns the platform's loss first, then the wallet's. A wallet
left owing is restricted until a later deposit repays it. In every test, the entries naming
the deposit (wallet and ``plat_losses``) add up to what Stripe's balance transactions for the
charge moved, less what the platform bore in Stripe's dispute fees; both chains verify.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from amply.kit.db import Database
from amply.ledger import service as ledger
from tests.conftest import SuperuserSql
from tests.factories import Account, sign_up, wallet_id_of
from tests.integration.test_stripe_disputes import Capture
from tests.integration.test_stripe_disputes import capture as capture
from tests.integration.test_stripe_donations import eventually
from tests.integration.test_stripe_wallet import (
    WEBHOOK_SECRET,
    World,
    add_card,
    read_deposit,
)
from tests.integration.test_stripe_wallet import world as world
from tests.stripe_harness import sign_payload

BONUS = 10_000  # every new wallet's welcome bonus


async def deposit(world: World, user: Account, amount: int, key: str) -> dict[str, Any]:
    response = await world.http.post(
        "/v1/deposits",
        json={"source": "card", "amount": amount},
        headers={**user.headers, "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()

    async def completed() -> bool:
        return (await read_deposit(world, user, body["id"]))["status"] == "completed"

    await eventually(completed)
    return body


async def charge_of(world: World, payment_intent_id: str) -> str:
    intent = await world.stripe.v1.payment_intents.retrieve_async(payment_intent_id)
    assert isinstance(intent.latest_charge, str)
    return intent.latest_charge


async def entries(database: Database, chain_id: str) -> list[ledger.Entry]:
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=chain_id, limit=500)
        assert (await ledger.verify_chain(session, chain_id=chain_id)).ok
    return page.entries


async def balance(database: Database, wallet_id: str) -> int:
    async with database.session() as session:
        return (await ledger.get_balances(session, chain_id=wallet_id)).get("USD", 0)


def names(entry: ledger.Entry, deposit_id: str) -> bool:
    return bool(json.loads(entry.metadata).get("transaction_id") == deposit_id)


async def amply_net(database: Database, wallet_id: str, deposit_id: str) -> int:
    """What the entries naming the deposit add up to, on the wallet and on plat_losses (a
    later deposit's repayment names that later deposit)."""
    total = 0
    for chain_id in (wallet_id, "plat_losses"):
        total += sum(e.amount for e in await entries(database, chain_id) if names(e, deposit_id))
    return total


async def stripe_net(world: World, charge_id: str) -> int:
    """What Stripe's balance transactions for the charge (its own, its refunds', its disputes')
    moved, less the platform's own fees on it: the charge's processing fee is not a wallet's
    business, while a dispute's fee is booked on plat_losses."""
    refunds = await world.stripe.v1.refunds.list_async({"limit": 100})
    sources = {charge_id} | {refund.id for refund in refunds.data if refund.charge == charge_id}
    transactions = await world.stripe.v1.balance_transactions.list_async({"limit": 100})
    total = 0
    for transaction in transactions.data:
        source = transaction.source
        source_id = source if isinstance(source, str) or source is None else source.id
        if source_id in sources:
            total += transaction.amount
        elif (source_id or "").startswith("dp_"):
            total += transaction.net
    return total


async def loss_entries(database: Database) -> list[tuple[str, int]]:
    return [(e.type, e.amount) for e in await entries(database, "plat_losses")]


async def wallet_reversals(database: Database, wallet_id: str) -> list[tuple[str, int]]:
    return [
        (e.type, e.amount)
        for e in await entries(database, wallet_id)
        if e.type in ("deposit_reversed", "deposit_reinstated")
    ]


async def funded(
    world: World, database: Database, amount: int = 5_000
) -> tuple[Account, str, dict[str, Any], str]:
    user = await sign_up(world.http)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_card(world, user)
    paid = await deposit(world, user, amount, f"reversal-deposit-{user.username}")
    return user, wallet_id, paid, await charge_of(world, paid["payment_intent_id"])


@pytest.mark.parametrize("refunds", [[5_000], [2_000, 1_000]], ids=["full", "partial"])
async def test_a_refunded_deposit_leaves_the_wallet(
    world: World, database: Database, refunds: list[int]
) -> None:
    _user, wallet_id, paid, charge_id = await funded(world, database)

    for amount in refunds:
        await world.stripe.v1.refunds.create_async({"charge": charge_id, "amount": amount})

    async def reversed_() -> bool:
        return await wallet_reversals(database, wallet_id) == [
            ("deposit_reversed", -amount) for amount in refunds
        ]

    await eventually(reversed_)
    assert await balance(database, wallet_id) == BONUS + 5_000 - sum(refunds)
    assert await loss_entries(database) == []
    assert await amply_net(database, wallet_id, paid["id"]) == await stripe_net(world, charge_id)


@pytest.mark.parametrize("outcome", ["lost", "won"])
async def test_a_charged_back_deposit_leaves_the_wallet_and_the_platform_pays_the_fee(
    world: World, database: Database, outcome: str
) -> None:
    _user, wallet_id, paid, charge_id = await funded(world, database)

    dispute = world.server.dispute(charge_id)
    world.server.close_dispute(dispute["id"], outcome)
    expected = [("deposit_reversed", -5_000)] + (
        [("deposit_reinstated", 5_000)] if outcome == "won" else []
    )

    async def settled() -> bool:
        return await wallet_reversals(database, wallet_id) == expected

    await eventually(settled)
    assert await loss_entries(database) == [("deposit_loss", -1_500)]
    assert await balance(database, wallet_id) == BONUS + (5_000 if outcome == "won" else 0)
    assert await amply_net(database, wallet_id, paid["id"]) == await stripe_net(world, charge_id)


async def test_a_spent_deposit_charged_back_restricts_the_wallet_until_a_deposit_repays_it(
    world: World, database: Database
) -> None:
    user, wallet_id, paid, charge_id = await funded(world, database)
    friend = await sign_up(world.http)
    # Spend most of it: a transfer (held for confirmation at first, then confirmed).
    sent = await world.http.post(
        "/v1/transfers",
        json={"recipient": friend.username, "amount": 14_000, "description": "Rent"},
        headers={**user.headers, "Idempotency-Key": "reversal-spend-1"},
    )
    assert sent.status_code == 201, sent.text
    if sent.json()["status"] == "pending_confirmation":
        confirmed = await world.http.post(
            f"/v1/transfers/{sent.json()['id']}/confirm", headers=user.headers
        )
        assert confirmed.status_code == 200, confirmed.text
    assert await balance(database, wallet_id) == 1_000

    dispute = world.server.dispute(charge_id)
    world.server.close_dispute(dispute["id"], "lost")

    async def charged_back() -> bool:
        return len(await loss_entries(database)) == 2

    await eventually(charged_back)
    # The wallet gives what it holds, never going below zero; the platform bears the rest.
    assert await wallet_reversals(database, wallet_id) == [("deposit_reversed", -1_000)]
    assert await loss_entries(database) == [("deposit_loss", -4_000), ("deposit_loss", -1_500)]
    assert await balance(database, wallet_id) == 0
    assert await amply_net(database, wallet_id, paid["id"]) == await stripe_net(world, charge_id)

    # Restricted: no money leaves it (a new deposit still may come in).
    refused = await world.http.post(
        "/v1/transfers",
        json={"recipient": friend.username, "amount": 1, "description": "Coffee"},
        headers={**user.headers, "Idempotency-Key": "reversal-spend-2"},
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "wallet_restricted"

    # A later deposit repays the shortfall first.
    later = await deposit(world, user, 6_000, "reversal-deposit-later")
    wallet_entries = [(e.type, e.amount) for e in await entries(database, wallet_id)][-2:]
    assert wallet_entries == [("deposit", 6_000), ("deposit_reversed", -4_000)]
    assert await loss_entries(database) == [
        ("deposit_loss", -4_000),
        ("deposit_loss", -1_500),
        ("deposit_loss_recovered", 4_000),
    ]
    assert await balance(database, wallet_id) == 2_000
    assert later["status"] in ("pending", "completed")
    allowed = await world.http.post(
        "/v1/transfers",
        json={"recipient": friend.username, "amount": 1, "description": "Coffee"},
        headers={**user.headers, "Idempotency-Key": "reversal-spend-3"},
    )
    assert allowed.status_code == 201, allowed.text


@pytest.mark.parametrize("order", ["reversed", "duplicated"])
async def test_reversal_events_in_any_order_or_twice_move_the_money_once(
    world: World,
    database: Database,
    capture: tuple[Capture, str],
    superuser_sql: SuperuserSql,
    order: str,
) -> None:
    _user, wallet_id, paid, charge_id = await funded(world, database)
    captured, url = capture
    world.server.register_webhook(url, WEBHOOK_SECRET)

    await world.stripe.v1.refunds.create_async({"charge": charge_id, "amount": 1_000})
    await world.stripe.v1.refunds.create_async({"charge": charge_id, "amount": 500})
    dispute = world.server.dispute(charge_id, amount=3_500)
    world.server.counter_dispute(dispute["id"])
    world.server.close_dispute(dispute["id"], "won")
    bodies = await captured.settled()
    assert (
        len(bodies) == 2 + 5
    )  # two charge.refunded; created, withdrawn, updated, reinstated, closed

    for body in bodies[::-1] if order == "reversed" else bodies + bodies[::-1]:
        response = await world.http.post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET)},
        )
        assert response.status_code == 200, response.text

    reversals = await wallet_reversals(database, wallet_id)
    disputed = [("deposit_reversed", -3_500), ("deposit_reinstated", 3_500)]
    refunded = [amount for kind, amount in reversals if (kind, amount) not in disputed]
    # The refunds' totals: 1,000 then 1,500 in order; reversed, the 1,500 total comes first
    # and the older 1,000 adds nothing.
    assert refunded == ([-1_500] if order == "reversed" else [-1_000, -500])
    assert sorted(reversals) == sorted(disputed + [("deposit_reversed", a) for a in refunded])
    assert sorted(await loss_entries(database)) == sorted(
        [("deposit_loss", -1_500), ("deposit_loss", -1_500), ("deposit_loss_recovered", 1_500)]
    )
    assert await balance(database, wallet_id) == BONUS + 5_000 - 1_500
    assert await amply_net(database, wallet_id, paid["id"]) == await stripe_net(world, charge_id)
    assert superuser_sql("SELECT count(*) FROM charge_balance_transactions") == [
        (3 + len(refunded),)
    ]
