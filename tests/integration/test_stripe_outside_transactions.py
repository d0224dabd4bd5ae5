"""A slow Stripe delays only the request waiting for it (SPEC §2, issue 17).

Over real HTTP, against the Stripe test server made slow (``StripeServer.set_latency``): while
Amply waits for Stripe to create a PaymentIntent or a refund, PostgreSQL itself shows that no
backend of the app sits idle inside a transaction and no advisory lock is held, and other
writers to the same organisation's or wallet's chain, or to the same donation's row, finish
while the slow request is still waiting. A request that times out and is retried, or dies
after Stripe took the money, ends with the money recorded once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import Database, NetworkCallInTransaction, UnitOfWork
from amply.kit.errors import Conflict
from amply.kit.settings import Settings
from amply.main import create_app
from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import Account, create_organisation, fund_wallet, sign_up, wallet_id_of
from tests.integration.test_stripe_donations import eventually
from tests.stripe_harness import StripeServer

WEBHOOK_SECRET = "whsec_amply_outside_transactions"
LATENCY = 2.5  # seconds Stripe takes to answer the slow calls
VISA = "4242424242424242"

# What the app's backends (application_name 'amply') hold while one of them waits for Stripe.
_HELD_SQL = """
    SELECT
        (SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'amply'
           AND state LIKE 'idle in transaction%%'),
        (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE a.datname = current_database() AND a.application_name = 'amply'
           AND l.locktype = 'advisory' AND l.granted)
"""


@dataclass
class World:
    http: httpx.AsyncClient
    url: str
    stripe: stripe.StripeClient
    server: StripeServer
    owner: Account
    organisation_id: str
    account_id: str


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
            account_id = created.json()["account_id"]
            stripe_server.set_account(
                account_id, charges_enabled=True, payouts_enabled=True, details_submitted=True
            )

            async def accepting() -> bool:
                status = await http.get(
                    f"/v1/organisations/{organisation_id}/stripe-account",
                    headers=owner.headers,
                )
                return bool(status.json()["accepts_donations"])

            await eventually(accepting)
            yield World(http, url, client, stripe_server, owner, organisation_id, account_id)
    finally:
        stripe_server.reset()
        await app.state.database.dispose()


# --- Helpers ------------------------------------------------------------------------------------


def keyed(account: Account | None = None, key: str | None = None) -> dict[str, str]:
    headers = account.headers if account else {}
    return {**headers, "Idempotency-Key": key or uuid.uuid4().hex}


async def checkout(world: World, *, key: str | None = None, amount: int = 10_000) -> httpx.Response:
    return await world.http.post(
        "/v1/donations",
        json={"organisation_id": world.organisation_id, "amount": amount, "currency": "USD"},
        headers=keyed(key=key),
    )


async def paid_donation(world: World) -> dict[str, Any]:
    """A donation to the world's organisation, paid and completed by Stripe's webhook."""
    response = await checkout(world)
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    await pay(world, started["payment"]["payment_intent_id"])
    await eventually(lambda: donation_is(world, started["donation"]["id"], "completed"))
    return started


async def pay(world: World, payment_intent_id: str) -> None:
    """Confirm the PaymentIntent with a test card, as Stripe.js does on the donor's page."""
    on_account: Any = {"stripe_account": world.account_id}
    card: Any = {"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = await world.stripe.v1.payment_methods.create_async(
        {"type": "card", "card": card}, options=on_account
    )
    await world.stripe.v1.payment_intents.update_async(
        payment_intent_id, {"payment_method": method.id}, options=on_account
    )
    await world.stripe.v1.payment_intents.confirm_async(payment_intent_id, options=on_account)


async def donation_is(world: World, donation_id: str, status: str) -> bool:
    response = await world.http.get(f"/v1/donations/{donation_id}", headers=world.owner.headers)
    assert response.status_code == 200, response.text
    return bool(response.json()["status"] == status)


async def add_card(world: World, user: Account) -> None:
    """Save a card through a SetupIntent, as Stripe.js and ``POST /v1/cards`` do."""
    intent = await world.http.post("/v1/cards/setup-intents", headers=user.headers)
    assert intent.status_code == 201, intent.text
    setup_intent_id = intent.json()["setup_intent_id"]
    card: Any = {"number": VISA, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = await world.stripe.v1.payment_methods.create_async({"type": "card", "card": card})
    await world.stripe.v1.setup_intents.confirm_async(
        setup_intent_id, {"payment_method": method.id}
    )
    saved = await world.http.post(
        "/v1/cards", json={"setup_intent_id": setup_intent_id}, headers=user.headers
    )
    assert saved.status_code == 201, saved.text


@dataclass
class Timed:
    """A request started now, and how long it took once it is done."""

    task: asyncio.Task[httpx.Response]
    started: float = field(default_factory=time.monotonic)
    elapsed: float | None = None

    async def result(self) -> httpx.Response:
        response = await self.task
        self.elapsed = self.elapsed or time.monotonic() - self.started
        return response


def start(request: Awaitable[httpx.Response]) -> Timed:
    async def run() -> httpx.Response:
        return await request

    return Timed(asyncio.create_task(run()))


async def waiting_for_stripe(world: World, path: str, count: int = 1) -> None:
    """Until Stripe has received ``count`` requests to ``path`` (it logs them at once, then
    makes them wait)."""

    async def arrived() -> bool:
        requests = await asyncio.to_thread(world.server.requests, path)
        return len([r for r in requests if r.path == path and r.method == "POST"]) >= count

    await eventually(arrived)


async def held_while_waiting(superuser_sql: SuperuserSql, slow: Timed) -> list[tuple[int, int]]:
    """Sample PostgreSQL for a second while ``slow`` waits for Stripe: per sample, how many
    of the app's backends are idle inside a transaction, and how many advisory locks the app
    holds."""
    samples: list[tuple[int, int]] = []
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        [(idle, advisory)] = await asyncio.to_thread(superuser_sql, _HELD_SQL)
        samples.append((int(idle), int(advisory)))
        await asyncio.sleep(0.05)
    assert not slow.task.done(), "Stripe answered before the samples were taken"
    return samples


def report(what: str, seconds: float | None) -> None:
    print(f"\n{what}: {seconds:.3f} s")  # the measured delays, shown with -s


# --- Tests --------------------------------------------------------------------------------------


async def test_a_slow_checkout_holds_no_transaction_and_delays_no_gift_to_the_organisation(
    world: World, database: Database, superuser_sql: SuperuserSql
) -> None:
    giver = await sign_up(world.http)
    await fund_wallet(database, await wallet_id_of(database, giver.user_id), 5_000)
    world.server.set_latency(LATENCY, "/v1/payment_intents")

    slow = start(checkout(world, key="slow-checkout-0000001"))
    await waiting_for_stripe(world, "/v1/payment_intents")
    samples = await held_while_waiting(superuser_sql, slow)
    gift = start(
        world.http.post(
            "/v1/wallet/donations",
            json={"organisation_id": world.organisation_id, "amount": 700},
            headers=keyed(giver),
        )
    )
    given = await gift.result()
    stripe_still_busy = not slow.task.done()
    created = await slow.result()

    assert samples
    assert set(samples) == {(0, 0)}, samples
    assert given.status_code == 201, given.text
    assert stripe_still_busy  # the gift to the organisation's chain did not wait for Stripe
    assert created.status_code == 201, created.text
    assert slow.elapsed is not None
    assert slow.elapsed >= LATENCY
    report("gift to the organisation during a slow checkout", gift.elapsed)
    report("the slow checkout", slow.elapsed)
    [(entries,)] = superuser_sql(
        "SELECT count(*) FROM ledger_entries WHERE chain_id = %s", world.organisation_id
    )
    assert entries == 1  # the gift; the checkout moves nothing until it is paid


async def test_a_slow_card_deposit_delays_no_transfer_or_gift_from_the_wallet(
    world: World, database: Database, superuser_sql: SuperuserSql
) -> None:
    user, friend = await sign_up(world.http), await sign_up(world.http)
    wallet_id = await wallet_id_of(database, user.user_id)
    await fund_wallet(database, wallet_id, 5_000)
    await add_card(world, user)
    world.server.set_latency(LATENCY, "/v1/payment_intents")

    slow = start(
        world.http.post(
            "/v1/deposits", json={"source": "card", "amount": 2_000}, headers=keyed(user)
        )
    )
    await waiting_for_stripe(world, "/v1/payment_intents")
    samples = await held_while_waiting(superuser_sql, slow)
    transfer = start(
        world.http.post(
            "/v1/transfers",
            json={"recipient": friend.username, "amount": 300, "description": "Lunch"},
            headers=keyed(user),
        )
    )
    gift = start(
        world.http.post(
            "/v1/wallet/donations",
            json={"organisation_id": world.organisation_id, "amount": 200},
            headers=keyed(user),
        )
    )
    sent, given = await transfer.result(), await gift.result()
    stripe_still_busy = not slow.task.done()
    deposited = await slow.result()

    assert samples
    assert set(samples) == {(0, 0)}, samples
    assert sent.status_code in (200, 201), sent.text
    assert given.status_code == 201, given.text
    assert stripe_still_busy  # neither writer to the wallet's chain waited for Stripe
    assert deposited.status_code == 201, deposited.text
    report("transfer out of the wallet during a slow deposit", transfer.elapsed)
    report("gift from the wallet during a slow deposit", gift.elapsed)
    report("the slow deposit", slow.elapsed)
    deposit_id = deposited.json()["id"]

    async def credited() -> bool:
        rows = superuser_sql("SELECT status FROM transactions WHERE id = %s", deposit_id)
        return rows == [("completed",)]

    await eventually(credited)
    # The test's funding, then the card deposit: credited once, after the other writers.
    assert superuser_sql(
        "SELECT amount FROM ledger_entries WHERE chain_id = %s AND type = 'deposit' ORDER BY seq",
        wallet_id,
    ) == [(5_000,), (2_000,)]
    assert superuser_sql(
        "SELECT amount FROM ledger_entries WHERE chain_id = %s AND type = 'wallet_donation_sent'",
        wallet_id,
    ) == [(-200,)]
    assert sent.json()["status"] in ("completed", "pending_confirmation")


async def test_a_slow_refund_locks_neither_its_donation_nor_the_organisations_chain(
    world: World, superuser_sql: SuperuserSql
) -> None:
    refunded = await paid_donation(world)
    response = await checkout(world)
    assert response.status_code == 201, response.text
    other = response.json()
    world.server.set_latency(LATENCY, "/v1/refunds")

    slow = start(
        world.http.post(
            f"/v1/donations/{refunded['donation']['id']}/refunds",
            json={"amount": 2_500, "reason": "requested_by_customer"},
            headers=keyed(world.owner),
        )
    )
    await waiting_for_stripe(world, "/v1/refunds")
    samples = await held_while_waiting(superuser_sql, slow)
    # The refunded donation's row is free for anyone else who must lock it ...
    superuser_sql(
        "SELECT id FROM donations WHERE id = %s FOR UPDATE NOWAIT", refunded["donation"]["id"]
    )
    # ... and Stripe's webhook completes another donation of the organisation meanwhile.
    paid_at = time.monotonic()
    await pay(world, other["payment"]["payment_intent_id"])
    await eventually(lambda: donation_is(world, other["donation"]["id"], "completed"))
    completed_in = time.monotonic() - paid_at
    stripe_still_busy = not slow.task.done()
    answer = await slow.result()

    assert samples
    assert set(samples) == {(0, 0)}, samples
    assert stripe_still_busy
    assert answer.status_code == 201, answer.text
    assert answer.json()["amount"] == 2_500
    report("webhook completing another donation during a slow refund", completed_in)
    report("the slow refund", slow.elapsed)

    async def recorded() -> bool:
        rows = superuser_sql(
            "SELECT count(*) FROM ledger_entries WHERE chain_id = %s "
            "AND type = 'donation_refunded'",
            world.organisation_id,
        )
        return rows == [(1,)]

    await eventually(recorded)
    assert superuser_sql(
        "SELECT recorded FROM donation_refunds WHERE id = %s", answer.json()["id"]
    ) == [(True,)]


async def test_a_deposit_whose_client_gave_up_is_charged_and_credited_once(
    world: World, database: Database, superuser_sql: SuperuserSql
) -> None:
    # The client stops waiting while Stripe is slow and retries with its key: every attempt
    # names the same PaymentIntent (deposit:<id>), and the first to record it stores the
    # response that the others replay.
    user = await sign_up(world.http)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_card(world, user)
    world.server.set_latency(LATENCY, "/v1/payment_intents")
    headers = keyed(user, "slow-deposit-retried-0001")
    body = {"source": "card", "amount": 1_500}

    async with httpx.AsyncClient(base_url=world.url, timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post("/v1/deposits", json=body, headers=headers)
    answers = []
    for _ in range(20):
        answer = await world.http.post("/v1/deposits", json=body, headers=headers)
        answers.append(answer.status_code)
        if answer.status_code == 201:
            break
        # Stripe is still running the first attempt under the same key (its 409
        # idempotency_key_in_use, as a clear error): try again later.
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "payment_provider_busy"
        await asyncio.sleep(0.5)
    deposit = answer.json()
    world.server.set_latency(0)

    async def credited() -> bool:
        rows = superuser_sql("SELECT status FROM transactions WHERE id = %s", deposit["id"])
        return rows == [("completed",)]

    await eventually(credited)
    await asyncio.sleep(0.3)  # any further event would have arrived
    assert answers[-1] == 201
    creates = {
        r.headers["idempotency-key"]
        for r in world.server.requests("/v1/payment_intents")
        if r.path == "/v1/payment_intents"
    }
    assert creates == {f"deposit:{deposit['id']}"}
    assert superuser_sql(
        "SELECT count(*), sum(amount) FROM transactions WHERE kind = 'deposit'"
    ) == [(1, 1_500)]
    assert superuser_sql(
        "SELECT amount FROM ledger_entries WHERE chain_id = %s AND type = 'deposit'", wallet_id
    ) == [(1_500,)]
    replayed = await world.http.post("/v1/deposits", json=body, headers=headers)
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert replayed.json()["id"] == deposit["id"]


async def test_a_checkout_whose_client_gave_up_is_one_donation_with_one_payment_intent(
    world: World, superuser_sql: SuperuserSql
) -> None:
    world.server.set_latency(LATENCY, "/v1/payment_intents")
    key = "slow-checkout-retried-0001"
    async with httpx.AsyncClient(base_url=world.url, timeout=0.5) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post(
                "/v1/donations",
                json={"organisation_id": world.organisation_id, "amount": 4_000, "currency": "USD"},
                headers={"Idempotency-Key": key},
            )
    for _ in range(20):
        answer = await checkout(world, key=key, amount=4_000)
        if answer.status_code == 201:
            break
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == "payment_provider_busy"
        await asyncio.sleep(0.5)
    world.server.set_latency(0)
    again = await checkout(world, key=key, amount=4_000)

    assert answer.status_code == 201, answer.text
    assert again.json() == answer.json()
    donation = answer.json()["donation"]
    assert superuser_sql("SELECT id, payment_intent_id FROM donations") == [
        (donation["id"], answer.json()["payment"]["payment_intent_id"])
    ]
    creates = [
        r for r in world.server.requests("/v1/payment_intents") if r.path == "/v1/payment_intents"
    ]
    assert {r.headers["idempotency-key"] for r in creates} == {f"donation:{donation['id']}"}


async def test_a_success_event_that_overtakes_the_deposits_last_step_credits_it_once(
    world: World, database: Database, superuser_sql: SuperuserSql
) -> None:
    # Stripe charges the card and sends its success event, then takes its time answering:
    # the event finds no deposit yet, records it from the PaymentIntent's metadata and
    # credits it; the request's last step then answers with that same deposit.
    user = await sign_up(world.http)
    wallet_id = await wallet_id_of(database, user.user_id)
    await add_card(world, user)
    world.server.set_latency(LATENCY, "/v1/payment_intents", after=True)

    response = await world.http.post(
        "/v1/deposits", json={"source": "card", "amount": 2_500}, headers=keyed(user)
    )

    assert response.status_code == 201, response.text
    deposit = response.json()
    assert deposit["status"] == "completed"  # the event came first and credited it
    assert superuser_sql("SELECT payment_intent_id FROM transactions WHERE kind = 'deposit'") == [
        (deposit["payment_intent_id"],)
    ]
    assert superuser_sql(
        "SELECT amount FROM ledger_entries WHERE chain_id = %s AND type = 'deposit'", wallet_id
    ) == [(2_500,)]


async def test_a_refund_event_that_overtakes_the_refunds_last_step_is_counted_once(
    world: World, superuser_sql: SuperuserSql
) -> None:
    # charge.refunded reaches Amply before the refund request records its row: the ledger
    # records the refund, and the row is marked as covered, so the rest stays refundable.
    paid = await paid_donation(world)
    donation_id = paid["donation"]["id"]
    world.server.set_latency(LATENCY, "/v1/refunds", after=True)

    first = await world.http.post(
        f"/v1/donations/{donation_id}/refunds",
        json={"amount": 2_500, "reason": "requested_by_customer"},
        headers=keyed(world.owner),
    )
    world.server.set_latency(0)
    rest = await world.http.post(
        f"/v1/donations/{donation_id}/refunds",
        json={"reason": "requested_by_customer"},
        headers=keyed(world.owner),
    )

    assert first.status_code == 201, first.text
    assert superuser_sql(
        "SELECT recorded FROM donation_refunds WHERE id = %s", first.json()["id"]
    ) == [(True,)]
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 7_500

    async def refunded() -> bool:
        return await donation_is(world, donation_id, "refunded")

    await eventually(refunded)
    assert superuser_sql(
        "SELECT amount FROM ledger_entries WHERE chain_id = %s AND type = 'donation_refunded' "
        "ORDER BY seq",
        world.organisation_id,
    ) == [(-2_500,), (-7_500,)]


async def test_a_webhook_reads_stripes_fee_before_its_transaction_and_locks_nothing_meanwhile(
    world: World, superuser_sql: SuperuserSql
) -> None:
    # payment_intent.succeeded names the charge; its fee (the charge's balance transaction) is
    # read from Stripe before the event's transaction begins (payments/stripe_reads.py).
    started = await checkout(world, key="slow-fee-read-000001")
    assert started.status_code == 201, started.text
    donation_id = started.json()["donation"]["id"]
    world.server.set_latency(LATENCY, "/v1/charges/")

    await pay(world, started.json()["payment"]["payment_intent_id"])

    async def reading_the_fee() -> bool:
        return bool(await asyncio.to_thread(world.server.requests, "/v1/charges/"))

    await eventually(reading_the_fee)
    samples: list[tuple[int, int]] = []
    for _ in range(10):
        [(idle, advisory)] = await asyncio.to_thread(superuser_sql, _HELD_SQL)
        samples.append((int(idle), int(advisory)))
        # The donation's row is free while Stripe answers: nothing waits on it.
        superuser_sql("SELECT id FROM donations WHERE id = %s FOR UPDATE NOWAIT", donation_id)
        await asyncio.sleep(0.05)
    still_pending = not await donation_is(world, donation_id, "completed")
    world.server.set_latency(0)
    await eventually(lambda: donation_is(world, donation_id, "completed"))

    assert still_pending  # the samples were taken while Stripe was still answering
    assert set(samples) == {(0, 0)}, samples
    types = superuser_sql(
        "SELECT type FROM ledger_entries WHERE chain_id = %s ORDER BY seq", world.organisation_id
    )
    assert types == [("donation_received",), ("payment_processing_fee",)]


async def test_the_unit_of_work_refuses_a_network_call_inside_a_transaction(
    session: AsyncSession,
) -> None:
    unit = UnitOfWork(session)
    calls: list[str] = []

    async def call() -> str:
        calls.append("called")
        return "answer"

    await session.execute(text("SELECT 1"))  # a transaction is open
    with pytest.raises(NetworkCallInTransaction):
        await unit.outside(call)
    await session.rollback()
    async with unit.step() as step:
        await step.execute(text("SELECT 1"))
    answer = await unit.outside(call)  # the step committed: no transaction is left open

    async def refused_step() -> None:
        async with unit.step() as step:
            await step.execute(text("SELECT 1"))
            raise Conflict("refused")

    with pytest.raises(Conflict):
        await refused_step()

    assert answer == "answer"
    assert calls == ["called"]
    assert not session.in_transaction()  # the failed step was rolled back
