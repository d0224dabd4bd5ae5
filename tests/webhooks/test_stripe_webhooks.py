"""The Stripe webhook: signatures, exactly-once processing, any delivery order.

These tests sign events themselves (as Stripe does, HMAC-SHA256 over ``t.payload``) and post
them to an app in sandbox mode with a webhook secret, so the events name sandbox payments
whose processing fee needs no Stripe server. ``tests/integration`` runs the same path against
a Stripe-protocol server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import ORGANISATION_ENTRIES, create_organisation, donate, onboard, sign_up
from tests.stripe_harness import make_event, sign_payload

SECRET = "whsec_amply_webhook_tests"


@pytest.fixture
async def hooks(make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        environment="test",
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
        stripe_webhook_secret=SECRET,
    )
    async with make_client(settings) as http:
        yield http


class Payment:
    """A pending sandbox donation and the Stripe-shaped objects events carry about it."""

    def __init__(self, organisation_id: str, checkout: dict[str, Any]) -> None:
        self.organisation_id = organisation_id
        self.donation_id: str = checkout["donation"]["id"]
        self.amount: int = checkout["donation"]["amount"]
        self.payment_intent: str = checkout["payment"]["payment_intent_id"]
        self.account: str = checkout["payment"]["stripe_account"]
        self.charge = self.payment_intent.replace("pi_", "ch_", 1)

    def intent(self, status: str = "succeeded") -> dict[str, Any]:
        return {
            "id": self.payment_intent,
            "object": "payment_intent",
            "amount": self.amount,
            "currency": "eur",
            "status": status,
            "latest_charge": self.charge,
        }

    def charge_object(self, *, refunded: int) -> dict[str, Any]:
        return {
            "id": self.charge,
            "object": "charge",
            "amount": self.amount,
            "amount_refunded": refunded,
            "refunded": refunded == self.amount,
            "payment_intent": self.payment_intent,
            "status": "succeeded",
        }

    def dispute(self, status: str, *, dispute_id: str = "du_1Amply") -> dict[str, Any]:
        """A dispute as Stripe sends it, with the balance transactions it made so far: the
        withdrawal (and its 15.00 fee) unless it is an inquiry, the reinstatement once won."""
        moves = []
        if not status.startswith("warning_") and status != "prevented":
            moves.append(self.dispute_move(f"txn_{dispute_id}w", -self.amount, 1_500))
        if status == "won":
            moves.append(self.dispute_move(f"txn_{dispute_id}r", self.amount, 0))
        return {
            "id": dispute_id,
            "object": "dispute",
            "amount": self.amount,
            "currency": "eur",
            "charge": self.charge,
            "payment_intent": self.payment_intent,
            "reason": "fraudulent",
            "status": status,
            "balance_transactions": moves,
        }

    @staticmethod
    def dispute_move(move_id: str, amount: int, fee: int) -> dict[str, Any]:
        return {
            "id": move_id,
            "object": "balance_transaction",
            "amount": amount,
            "fee": fee,
            "net": amount - fee,
            "currency": "eur",
            "type": "adjustment",
            "reporting_category": "dispute" if amount < 0 else "dispute_reversal",
        }

    def event(self, event_type: str, obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
        return make_event(event_type, obj, account=self.account, **fields)


@pytest.fixture
async def payment(hooks: httpx.AsyncClient) -> Payment:
    owner = await sign_up(hooks)
    organisation_id = await create_organisation(hooks, owner)
    await onboard(hooks, owner, organisation_id)
    return Payment(organisation_id, await donate(hooks, organisation_id, amount=10_000))


async def deliver(
    client: httpx.AsyncClient,
    event: dict[str, Any] | bytes,
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    payload = event if isinstance(event, bytes) else json.dumps(event).encode()
    return await client.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={
            "Stripe-Signature": sign_payload(payload, secret, timestamp),
            "Content-Type": "application/json",
        },
    )


async def chain(database: Database, chain_id: str) -> list[tuple[str, int]]:
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=chain_id)
        assert (await ledger.verify_chain(session, chain_id=chain_id)).ok
    return [(entry.type, entry.amount) for entry in page.entries]


async def test_one_event_delivered_five_times_takes_effect_once(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    event = payment.event("payment_intent.succeeded", payment.intent())

    outcomes = [(await deliver(hooks, event)).json()["outcome"] for _ in range(5)]

    assert outcomes == ["processed"] + ["duplicate"] * 4
    assert await chain(database, payment.organisation_id) == [
        ("donation_received", 10_000),
        ("payment_processing_fee", -320),
    ]


async def test_ten_concurrent_deliveries_of_one_event_append_one_entry(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    event = payment.event("payment_intent.succeeded", payment.intent())

    responses = await asyncio.gather(*(deliver(hooks, event) for _ in range(10)))

    assert [r.status_code for r in responses] == [200] * 10
    assert sorted(r.json()["outcome"] for r in responses) == ["duplicate"] * 9 + ["processed"]
    assert [t for t, _ in await chain(database, payment.organisation_id)] == [
        "donation_received",
        "payment_processing_fee",
    ]


async def test_two_success_events_for_one_payment_complete_it_once(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    first = payment.event("payment_intent.succeeded", payment.intent())
    second = payment.event("payment_intent.succeeded", payment.intent())

    await asyncio.gather(deliver(hooks, first), deliver(hooks, second))

    assert len(await chain(database, payment.organisation_id)) == 2


@pytest.mark.parametrize(
    ("payload", "secret", "age"),
    [
        pytest.param(None, "whsec_wrong", 0, id="wrong-secret"),
        pytest.param(None, SECRET, 301, id="stale-timestamp"),
        pytest.param(b"{not json", SECRET, 0, id="malformed-json"),
        pytest.param(b'{"type": "payment_intent.succeeded"}', SECRET, 0, id="no-id"),
        pytest.param(b'["evt_1"]', SECRET, 0, id="not-an-object"),
        pytest.param(b"\xff\xfe", SECRET, 0, id="not-utf8"),
    ],
)
async def test_unverifiable_or_malformed_events_are_refused_and_nothing_is_stored(
    hooks: httpx.AsyncClient,
    payment: Payment,
    superuser_sql: SuperuserSql,
    payload: bytes | None,
    secret: str,
    age: int,
) -> None:
    body = payload or json.dumps(payment.event("payment_intent.succeeded", payment.intent()))
    body = body if isinstance(body, bytes) else body.encode()

    response = await deliver(hooks, body, secret=secret, timestamp=int(time.time()) - age)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"].startswith("webhook_")
    assert superuser_sql("SELECT count(*) FROM stripe_events") == [(0,)]
    assert superuser_sql(f"SELECT count(*) FROM {ORGANISATION_ENTRIES}") == [(0,)]


async def test_an_event_altered_after_signing_is_refused(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    payload = json.dumps(payment.event("payment_intent.succeeded", payment.intent())).encode()
    signature = sign_payload(payload, SECRET)

    response = await hooks.post(
        "/v1/webhooks/stripe",
        content=payload.replace(b"10000", b"99999"),
        headers={"Stripe-Signature": signature},
    )
    missing = await hooks.post("/v1/webhooks/stripe", content=payload)

    assert response.status_code == 400
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "webhook_signature_invalid"
    assert superuser_sql("SELECT count(*) FROM stripe_events") == [(0,)]


async def test_webhooks_without_a_configured_secret_answer_503(
    client: httpx.AsyncClient,
) -> None:
    payload = b"{}"
    response = await client.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": sign_payload(payload, SECRET)},
    )

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhooks_not_configured"


async def test_unknown_event_types_are_recorded_and_acknowledged(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    event = payment.event("customer.created", {"id": "cus_1", "object": "customer"})

    response = await deliver(hooks, event)

    assert response.json() == {"received": True, "outcome": "ignored"}
    assert superuser_sql("SELECT type, outcome, account FROM stripe_events") == [
        ("customer.created", "ignored", payment.account)
    ]


async def test_the_service_cannot_rewrite_the_event_log(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    await deliver(hooks, payment.event("customer.created", {"id": "cus_1"}))

    async with database.session() as session:
        connection = await session.connection()
        with pytest.raises(DBAPIError, match="permission denied"):
            await connection.exec_driver_sql("UPDATE stripe_events SET outcome = 'processed'")


async def test_a_failed_payment_marks_the_donation_failed_without_an_entry(
    hooks: httpx.AsyncClient, payment: Payment, database: Database, superuser_sql: SuperuserSql
) -> None:
    intent = payment.intent("requires_payment_method")
    intent["last_payment_error"] = {"code": "card_declined", "message": "Declined."}

    await deliver(hooks, payment.event("payment_intent.payment_failed", intent))

    assert superuser_sql("SELECT status, failure_code FROM donations") == [
        ("failed", "card_declined")
    ]
    assert await chain(database, payment.organisation_id) == []


async def test_a_payment_that_succeeds_after_failing_completes(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    await deliver(hooks, payment.event("payment_intent.payment_failed", payment.intent("x")))
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    late_failure = payment.event("payment_intent.payment_failed", payment.intent("x"))
    await deliver(hooks, late_failure)

    assert superuser_sql("SELECT status, failure_code FROM donations") == [("completed", None)]


async def test_partial_then_full_refund_append_two_entries_summing_to_the_gross(
    hooks: httpx.AsyncClient, payment: Payment, database: Database, superuser_sql: SuperuserSql
) -> None:
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    await deliver(hooks, payment.event("charge.refunded", payment.charge_object(refunded=3_000)))
    await deliver(hooks, payment.event("charge.refunded", payment.charge_object(refunded=10_000)))

    entries = await chain(database, payment.organisation_id)
    assert entries[2:] == [("donation_refunded", -3_000), ("donation_refunded", -7_000)]
    assert superuser_sql("SELECT status, amount_refunded FROM donations") == [("refunded", 10_000)]


async def test_a_stale_refund_event_arriving_late_is_not_counted_again(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    partial = payment.event("charge.refunded", payment.charge_object(refunded=3_000))
    full = payment.event("charge.refunded", payment.charge_object(refunded=10_000))
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))

    await deliver(hooks, full)
    await deliver(hooks, partial)

    entries = await chain(database, payment.organisation_id)
    assert [a for t, a in entries if t == "donation_refunded"] == [-10_000]


async def test_a_refund_before_the_success_event_completes_the_donation_first(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    refunded = payment.event("charge.refunded", payment.charge_object(refunded=10_000))
    succeeded = payment.event("payment_intent.succeeded", payment.intent())

    assert (await deliver(hooks, refunded)).json()["outcome"] == "processed"
    assert (await deliver(hooks, succeeded)).json()["outcome"] == "processed"

    assert await chain(database, payment.organisation_id) == [
        ("donation_received", 10_000),
        ("payment_processing_fee", -320),
        ("donation_refunded", -10_000),
    ]


async def test_a_dispute_withdraws_once_and_a_won_dispute_reinstates_once(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    for _ in range(2):
        await deliver(
            hooks, payment.event("charge.dispute.created", payment.dispute("needs_response"))
        )
        await deliver(hooks, payment.event("charge.dispute.closed", payment.dispute("won")))

    assert (await chain(database, payment.organisation_id))[2:] == [
        ("dispute_funds_withdrawn", -10_000),
        ("dispute_fee", -1_500),  # Stripe keeps the dispute fee, even when won
        ("dispute_funds_reinstated", 10_000),
    ]


async def test_a_lost_dispute_closed_before_its_creation_event_withdraws_once(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    await deliver(hooks, payment.event("charge.dispute.closed", payment.dispute("lost")))
    await deliver(hooks, payment.event("charge.dispute.created", payment.dispute("needs_response")))

    assert (await chain(database, payment.organisation_id))[2:] == [
        ("dispute_funds_withdrawn", -10_000),
        ("dispute_fee", -1_500),
    ]


async def test_an_inquiry_moves_no_funds(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    inquiry = payment.dispute("warning_needs_response")

    await deliver(hooks, payment.event("charge.dispute.created", inquiry))

    assert len(await chain(database, payment.organisation_id)) == 2


async def test_a_dispute_of_an_unconfirmed_payment_fails_so_stripe_retries(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    event = payment.event("charge.dispute.created", payment.dispute("needs_response"))

    response = await deliver(hooks, event)

    assert response.status_code >= 400
    assert superuser_sql("SELECT count(*) FROM stripe_events") == [(0,)]


async def test_events_naming_another_account_change_nothing(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    event = make_event("payment_intent.succeeded", payment.intent(), account="acct_someoneelse")

    assert (await deliver(hooks, event)).status_code == 200

    assert await chain(database, payment.organisation_id) == []


async def test_account_updated_events_open_and_close_checkout(
    hooks: httpx.AsyncClient, payment: Payment
) -> None:
    account = {"id": payment.account, "object": "account", "details_submitted": True}
    disabled = {**account, "charges_enabled": False, "payouts_enabled": False}

    await deliver(hooks, make_event("account.updated", disabled, account=payment.account))
    refused = await hooks.post(
        "/v1/donations",
        json={"organisation_id": payment.organisation_id, "amount": 500, "currency": "EUR"},
    )
    enabled = {**account, "charges_enabled": True, "payouts_enabled": True}
    await deliver(hooks, make_event("account.updated", enabled, account=payment.account))
    accepted = await hooks.post(
        "/v1/donations",
        json={"organisation_id": payment.organisation_id, "amount": 500, "currency": "EUR"},
    )

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "organisation_not_accepting_donations"
    assert accepted.status_code == 201


@pytest.mark.parametrize(
    "envelope",
    [
        pytest.param({"id": "evt_1", "type": "x", "created": "yesterday", "data": {"object": {}}}),
        pytest.param({"id": "evt_1", "type": "x", "created": 1, "data": {"object": []}}),
        pytest.param({"id": "evt_1", "type": "", "created": 1, "data": {"object": {}}}),
        pytest.param({"id": "ev_1", "type": "x", "created": 1, "data": {"object": {}}}),
        pytest.param(
            {"id": "evt_1", "type": "x", "created": 1, "data": {"object": {}}, "account": 7}
        ),
        pytest.param({"id": "evt_1", "type": "x", "created": True, "data": {"object": {}}}),
    ],
)
async def test_signed_envelopes_missing_what_stripe_always_sends_are_refused(
    hooks: httpx.AsyncClient, superuser_sql: SuperuserSql, envelope: dict[str, Any]
) -> None:
    response = await deliver(hooks, envelope)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "webhook_payload_invalid"
    assert superuser_sql("SELECT count(*) FROM stripe_events") == [(0,)]


async def test_events_about_payments_and_accounts_amply_does_not_know_are_acknowledged(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    strangers = [
        make_event("payment_intent.succeeded", {"id": "pi_unknown"}, account=payment.account),
        make_event("payment_intent.payment_failed", {"id": None}, account=payment.account),
        make_event(
            "charge.refunded", {"id": "ch_x", "payment_intent": {"id": "pi_unknown"}}, account=None
        ),
        make_event(
            "account.updated", {"id": "acct_unknown", "charges_enabled": True}, account=None
        ),
        make_event("account.updated", {"object": "account"}, account=None),
        make_event("refund.updated", {"id": "re_unknown", "status": "failed"}, account=None),
        make_event(
            "charge.dispute.created",
            {**payment.dispute("needs_response"), "payment_intent": "pi_x"},
            account=None,
        ),
    ]

    responses = [await deliver(hooks, event) for event in strangers]

    assert [r.json()["outcome"] for r in responses] == ["processed"] * len(strangers)
    assert superuser_sql("SELECT status FROM donations") == [("pending",)]
    assert superuser_sql(f"SELECT count(*) FROM {ORGANISATION_ENTRIES}") == [(0,)]


async def test_a_dispute_without_an_amount_is_refused_so_stripe_retries(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    dispute = {**payment.dispute("needs_response"), "amount": "10000"}

    response = await deliver(hooks, payment.event("charge.dispute.created", dispute))

    assert response.status_code == 400
    assert superuser_sql("SELECT count(*) FROM stripe_events") == [(0,)]


async def test_refund_events_keep_the_status_of_refunds_asked_for_through_amply(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    owner_id = superuser_sql(
        "SELECT user_id FROM organisation_members WHERE organisation_id = %s",
        payment.organisation_id,
    )
    assert owner_id
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    superuser_sql(
        "INSERT INTO donation_refunds (id, donation_id, amount, reason, status,"
        " provider_refund_id, requested_by_user_id)"
        " VALUES ('rfd_000000000000000000000001', %s, 100, 'duplicate', 'pending', 're_1', %s)",
        payment.donation_id,
        owner_id[0][0],
    )

    await deliver(hooks, payment.event("refund.updated", {"id": "re_1", "status": "failed"}))

    assert superuser_sql("SELECT status FROM donation_refunds") == [("failed",)]


async def test_events_of_the_other_mode_are_stored_but_never_applied(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    live = {**payment.event("payment_intent.succeeded", payment.intent()), "livemode": True}

    response = await deliver(hooks, live)

    assert response.json()["outcome"] == "ignored"
    assert superuser_sql("SELECT status FROM donations") == [("pending",)]
    assert superuser_sql("SELECT livemode, outcome FROM stripe_events") == [(True, "ignored")]


async def test_a_payment_other_than_the_one_asked_for_is_never_recorded(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    changed = {**payment.intent(), "amount_received": 1}
    other_currency = {**payment.intent(), "currency": "usd"}

    responses = [
        await deliver(hooks, payment.event("payment_intent.succeeded", intent))
        for intent in (changed, other_currency)
    ]

    assert [r.status_code for r in responses] == [409, 409]
    assert responses[0].json()["error"]["code"] == "payment_mismatch"
    assert superuser_sql("SELECT count(*) FROM stripe_events") == [(0,)]
    assert superuser_sql(f"SELECT count(*) FROM {ORGANISATION_ENTRIES}") == [(0,)]


async def test_a_prevented_dispute_moves_nothing_and_a_dispute_fee_is_withdrawn_once(
    hooks: httpx.AsyncClient, payment: Payment, database: Database
) -> None:
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    prevented = payment.dispute("prevented", dispute_id="du_prevented")
    with_fee = payment.dispute("needs_response", dispute_id="du_with_fee")

    await deliver(hooks, payment.event("charge.dispute.created", prevented))
    for _ in range(2):
        await deliver(hooks, payment.event("charge.dispute.updated", with_fee))

    assert (await chain(database, payment.organisation_id))[2:] == [
        ("dispute_funds_withdrawn", -10_000),
        ("dispute_fee", -1_500),
    ]


@pytest.mark.parametrize(
    "charge_fields",
    [{"amount_refunded": "3000"}, {"amount_refunded": -1}, {"amount_refunded": 1.5}],
)
async def test_refund_totals_that_are_not_counts_are_refused(
    hooks: httpx.AsyncClient,
    payment: Payment,
    charge_fields: dict[str, Any],
    superuser_sql: SuperuserSql,
) -> None:
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    charge = {**payment.charge_object(refunded=0), **charge_fields}

    response = await deliver(hooks, payment.event("charge.refunded", charge))

    assert response.status_code == 400, response.text
    assert superuser_sql(
        "SELECT count(*) FROM ledger_entries WHERE type = 'donation_refunded'"
    ) == [(0,)]


async def test_an_older_account_update_arriving_late_does_not_undo_a_newer_one(
    hooks: httpx.AsyncClient, payment: Payment
) -> None:
    now = int(time.time())
    account = {"id": payment.account, "object": "account", "details_submitted": True}
    newer = make_event(
        "account.updated",
        {**account, "charges_enabled": True},
        account=payment.account,
        created=now,
    )
    older = make_event(
        "account.updated",
        {**account, "charges_enabled": False},
        account=payment.account,
        created=now - 60,
    )

    await deliver(hooks, newer)
    await deliver(hooks, older)
    checkout = await hooks.post(
        "/v1/donations",
        json={"organisation_id": payment.organisation_id, "amount": 500, "currency": "EUR"},
    )

    assert checkout.status_code == 201, checkout.text


async def test_a_recorded_refund_that_fails_is_reversed_once_and_stale_totals_are_ignored(
    hooks: httpx.AsyncClient, payment: Payment, database: Database, superuser_sql: SuperuserSql
) -> None:
    [(owner_id,)] = superuser_sql(
        "SELECT user_id FROM organisation_members WHERE organisation_id = %s",
        payment.organisation_id,
    )
    await deliver(hooks, payment.event("payment_intent.succeeded", payment.intent()))
    superuser_sql(
        "INSERT INTO donation_refunds (id, donation_id, amount, reason, status,"
        " provider_refund_id, requested_by_user_id)"
        " VALUES ('rfd_000000000000000000000002', %s, 10000, 'duplicate', 'pending', 're_2', %s)",
        payment.donation_id,
        owner_id,
    )
    refund = {"id": "re_2", "object": "refund", "amount": 10_000, "status": "succeeded"}
    charge = {
        **payment.charge_object(refunded=10_000),
        "refunds": {"object": "list", "data": [refund]},
    }
    refunded_at = int(time.time()) - 30
    stale = payment.event("charge.refunded", charge, created=refunded_at)
    await deliver(hooks, payment.event("charge.refunded", charge, created=refunded_at))
    failed = {**refund, "status": "failed", "payment_intent": payment.payment_intent}

    for _ in range(2):
        await deliver(hooks, payment.event("refund.updated", failed))
    await deliver(hooks, stale)

    assert (await chain(database, payment.organisation_id))[2:] == [
        ("donation_refunded", -10_000),
        ("donation_refund_reversed", 10_000),
    ]
    assert superuser_sql("SELECT status, amount_refunded FROM donations") == [("completed", 0)]
    assert superuser_sql("SELECT status, recorded FROM donation_refunds") == [("failed", True)]


async def test_a_refund_of_another_amount_never_completes_the_donation(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    paid_less = {**payment.charge_object(refunded=1), "amount": 1}
    other_currency = {**payment.charge_object(refunded=10_000), "currency": "usd"}

    responses = [
        await deliver(hooks, payment.event("charge.refunded", charge))
        for charge in (paid_less, other_currency)
    ]

    assert [r.status_code for r in responses] == [409, 409]
    assert {r.json()["error"]["code"] for r in responses} == {"payment_mismatch"}
    assert superuser_sql("SELECT status FROM donations") == [("pending",)]
    assert superuser_sql(f"SELECT count(*) FROM {ORGANISATION_ENTRIES}") == [(0,)]


async def test_malformed_disputes_of_payments_amply_does_not_know_are_acknowledged(
    hooks: httpx.AsyncClient, payment: Payment, superuser_sql: SuperuserSql
) -> None:
    strangers = [
        {**payment.dispute("needs_response"), "payment_intent": "pi_unknown", "amount": 0},
        {**payment.dispute("needs_response"), "payment_intent": "pi_unknown", "id": "x"},
    ]

    responses = [
        await deliver(hooks, payment.event("charge.dispute.created", dispute))
        for dispute in strangers
    ]

    assert [r.status_code for r in responses] == [200, 200]
    assert superuser_sql(f"SELECT count(*) FROM {ORGANISATION_ENTRIES}") == [(0,)]
