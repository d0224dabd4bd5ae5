"""Disputes and refunds of donations against the Stripe test server, over real HTTP: in every
scenario the organisation's chain for the charge adds up to exactly what Stripe's balance
transactions for the charge add up to, whatever order (or how often) the events arrive.

Each row pays a 25.00 donation (Stripe's fee: 1.03), then runs its steps against Amply's API
and the server's control routes (``tests/support/stripe_disputes.py``). The events are
delivered as the server sends them, or captured and delivered by the test reversed, or
twice over (in order, then reversed again).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import pytest

from amply.kit.db import Database
from amply.ledger import service as ledger
from tests.integration.test_stripe_donations import (
    WEBHOOK_SECRET,
    World,
    checkout,
    donation_status,
    enable_charges,
    eventually,
    pay,
)
from tests.integration.test_stripe_donations import world as world
from tests.stripe_harness import sign_payload

AMOUNT = 2_500
CHARGE_FEE = 103  # 2.9% of 25.00, rounded half up, plus 0.30
Delivery = Literal["in_order", "reversed", "duplicated"]
# (action, argument): refund [amount | None] (201), refund_refused [amount] (409
# donation_disputed), dispute [amount | None], dispute_refused, inquiry, counter,
# close [won | lost]
Step = tuple[str, Any]


@dataclass(frozen=True)
class Row:
    name: str
    steps: tuple[Step, ...]
    net: int  # the sum of Stripe's balance transactions for the charge (and of the chain)
    delivery: Delivery = "in_order"


ROWS = (
    Row("full refund, then no dispute possible", (("refund", None), ("dispute_refused", None)),
        AMOUNT - CHARGE_FEE - AMOUNT),
    Row("partial refund, then won", (("refund", 500), ("dispute", None), ("close", "won")),
        AMOUNT - CHARGE_FEE - 500 - AMOUNT - 1_500 + AMOUNT),
    Row("partial refund, then lost: the refunded part comes back",
        (("refund", 500), ("dispute", None), ("close", "lost")),
        AMOUNT - CHARGE_FEE - 500 - AMOUNT - 1_500 + 500),
    Row("won, then a partial refund", (("dispute", None), ("close", "won"), ("refund", 700)),
        AMOUNT - CHARGE_FEE - AMOUNT - 1_500 + AMOUNT - 700),
    Row("won, then a full refund", (("dispute", None), ("close", "won"), ("refund", None)),
        AMOUNT - CHARGE_FEE - AMOUNT - 1_500 + AMOUNT - AMOUNT),
    Row("lost", (("dispute", None), ("close", "lost")), AMOUNT - CHARGE_FEE - AMOUNT - 1_500),
    Row("won", (("dispute", None), ("close", "won")), AMOUNT - CHARGE_FEE - 1_500),
    Row("countered, then won: the countered fee comes back",
        (("dispute", None), ("counter", None), ("close", "won")),
        AMOUNT - CHARGE_FEE - AMOUNT - 1_500 - 1_500 + AMOUNT + 1_500),
    Row("countered, then lost", (("dispute", None), ("counter", None), ("close", "lost")),
        AMOUNT - CHARGE_FEE - AMOUNT - 1_500 - 1_500),
    Row("partly disputed: a refund while it is open is refused",
        (("dispute", 1_000), ("refund_refused", 500), ("close", "lost")),
        AMOUNT - CHARGE_FEE - 1_000 - 1_500),
    Row("disputed for more than the charge (currency conversion), lost",
        (("dispute", 3_000), ("close", "lost")), AMOUNT - CHARGE_FEE - 3_000 - 1_500),
    Row("inquiry, countered, closed: nothing moves",
        (("inquiry", None), ("counter", None), ("close", "won")), AMOUNT - CHARGE_FEE),
    Row("inquiry, then a full refund closes it", (("inquiry", None), ("refund", None)),
        AMOUNT - CHARGE_FEE - AMOUNT),
    Row("partial refund, then lost; events reversed",
        (("refund", 500), ("dispute", None), ("close", "lost")),
        AMOUNT - CHARGE_FEE - 500 - AMOUNT - 1_500 + 500, "reversed"),
    Row("countered, then won; events reversed",
        (("dispute", None), ("counter", None), ("close", "won")),
        AMOUNT - CHARGE_FEE - 1_500, "reversed"),
    Row("countered, then won; events duplicated",
        (("dispute", None), ("counter", None), ("close", "won")),
        AMOUNT - CHARGE_FEE - 1_500, "duplicated"),
    Row("partial refunds around a lost dispute; events duplicated",
        (("refund", 300), ("refund", 200), ("dispute", None), ("close", "lost")),
        AMOUNT - CHARGE_FEE - 500 - AMOUNT - 1_500 + 500, "duplicated"),
)  # fmt: skip


class Capture:
    """An ASGI app that keeps every webhook delivered to it, in arrival order."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def settled(self, quiet: float = 0.6) -> list[bytes]:
        """The bodies, once none has arrived for ``quiet`` seconds."""
        seen = -1
        while seen != len(self.bodies):
            seen = len(self.bodies)
            await asyncio.sleep(quiet)
        return list(self.bodies)


@pytest.fixture
async def capture(
    serve_app: Callable[[Any], AbstractAsyncContextManager[str]],
) -> AsyncIterator[tuple[Capture, str]]:
    app = Capture()
    async with serve_app(app) as url:
        yield app, url


async def charge_of(world: World, payment_intent_id: str) -> str:
    intent = await world.stripe.v1.payment_intents.retrieve_async(
        payment_intent_id, options={"stripe_account": world.account_id}
    )
    assert isinstance(intent.latest_charge, str)
    return intent.latest_charge


async def stripe_net(world: World, charge_id: str) -> int:
    """The sum of Stripe's balance transactions for the charge: its own, its refunds' and its
    disputes' (read from the server with the stripe library, on the organisation's account)."""
    on_account: Any = {"stripe_account": world.account_id}
    refunds = await world.stripe.v1.refunds.list_async({"limit": 100}, options=on_account)
    sources = {charge_id} | {refund.id for refund in refunds.data if refund.charge == charge_id}
    transactions = await world.stripe.v1.balance_transactions.list_async(
        {"limit": 100}, options=on_account
    )
    total = 0
    for transaction in transactions.data:
        source = transaction.source
        source_id = source if isinstance(source, str) or source is None else source.id
        if source_id in sources or (source_id or "").startswith("dp_"):
            total += transaction.net
    return total


async def chain_net(database: Database, world: World, donation_id: str) -> int:
    """The sum of the organisation's entries for the donation (fees included); the chain
    must verify."""
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=world.organisation_id, limit=200)
        assert (await ledger.verify_chain(session, chain_id=world.organisation_id)).ok
    assert not page.has_more
    mine = [e for e in page.entries if json.loads(e.metadata).get("donation_id") == donation_id]
    return sum(entry.amount for entry in mine)


async def run_step(
    world: World, donation_id: str, charge_id: str, step: Step, state: dict[str, str]
) -> None:
    action, argument = step
    if action in ("refund", "refund_refused"):
        state["refunds"] = str(int(state.get("refunds", "0")) + 1)
        response = await world.http.post(
            f"/v1/donations/{donation_id}/refunds",
            json={"amount": argument, "reason": "requested_by_customer"},
            headers={
                **world.owner.headers,
                "Idempotency-Key": f"dispute-scenario-refund-{state['refunds']}",
            },
        )
        if action == "refund":
            assert response.status_code == 201, response.text
        else:
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "donation_disputed"
    elif action == "dispute_refused":
        with pytest.raises(httpx.HTTPStatusError) as refused:
            world.server.dispute(charge_id)
        assert refused.value.response.status_code == 400
    elif action in ("dispute", "inquiry"):
        dispute = world.server.dispute(charge_id, amount=argument, inquiry=action == "inquiry")
        state["dispute"] = dispute["id"]
        moved = [(t["amount"], t["fee"]) for t in dispute["balance_transactions"]]
        assert moved == ([] if action == "inquiry" else [(-(argument or AMOUNT), 1_500)])
    elif action == "counter":
        world.server.counter_dispute(state["dispute"])
    else:
        assert action == "close"
        world.server.close_dispute(state["dispute"], argument)


async def deliver(world: World, bodies: list[bytes]) -> None:
    for body in bodies:
        response = await world.http.post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": sign_payload(body, WEBHOOK_SECRET)},
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
async def test_the_chain_for_the_charge_equals_stripes_balance_transactions(
    world: World,
    database: Database,
    capture: tuple[Capture, str],
    row: Row,
) -> None:
    await enable_charges(world)
    donation = await checkout(world, key="dispute-scenario-donation", amount=AMOUNT)
    donation_id = donation["donation"]["id"]
    await pay(world, donation["payment"]["payment_intent_id"])

    async def completed() -> bool:
        return (await donation_status(world, donation))["status"] == "completed"

    await eventually(completed)
    charge_id = await charge_of(world, donation["payment"]["payment_intent_id"])
    captured, capture_url = capture
    if row.delivery != "in_order":
        world.server.register_webhook(capture_url, WEBHOOK_SECRET)

    async def caught_up() -> bool:
        return await chain_net(database, world, donation_id) == await stripe_net(world, charge_id)

    state: dict[str, str] = {}
    for step in row.steps:
        if step[0] in ("refund", "refund_refused") and row.delivery == "in_order":
            # What may be refunded is what Amply knows is left: let it hear of the dispute.
            await eventually(caught_up)
        await run_step(world, donation_id, charge_id, step, state)

    if row.delivery != "in_order":
        bodies = await captured.settled()
        assert bodies, "the server sent no events"
        if row.delivery == "reversed":
            await deliver(world, bodies[::-1])
        else:
            await deliver(world, bodies + bodies[::-1])

    expected = await stripe_net(world, charge_id)

    async def matches() -> bool:
        return await chain_net(database, world, donation_id) == expected

    await eventually(matches)
    assert expected == row.net
    assert await chain_net(database, world, donation_id) == expected
