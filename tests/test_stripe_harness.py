"""The Stripe-protocol test server, driven by the official ``stripe`` library as Amply uses it."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.stripe_harness import (
    ServeApp,
    StripeServer,
    make_event,
    recorded,
    serve_asgi,
    sign_payload,
)

WEBHOOK_SECRET = "whsec_amply_harness_test"


@dataclass
class Receiver:
    """A webhook endpoint that keeps what it is sent and checks Stripe's signature."""

    secret: str
    deliveries: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.deliveries.append((dict(request.headers), await request.body()))
        return Response(status_code=200)

    def events(self, type_: str) -> list[dict[str, Any]]:
        found = []
        for headers, body in self.deliveries:
            event = json.loads(body)
            if event["type"] == type_:
                assert stripe.WebhookSignature.verify_header(
                    body.decode(), headers["stripe-signature"], self.secret, tolerance=300
                )
                found.append(event)
        return found

    async def wait_for(self, type_: str, count: int = 1, within: float = 10.0) -> dict[str, Any]:
        """The ``count``-th event of this type to arrive (1-based), once it has."""
        deadline = time.monotonic() + within
        while len(found := self.events(type_)) < count:
            assert time.monotonic() < deadline, f"no {type_} #{count}; got {self.deliveries}"
            await asyncio.sleep(0.02)
        return found[count - 1]


@pytest.fixture(autouse=True)
def server(stripe_server: StripeServer) -> StripeServer:
    stripe_server.reset()
    return stripe_server


@pytest.fixture
async def client(server: StripeServer) -> AsyncIterator[stripe.StripeClient]:
    http_client = stripe.HTTPXClient(allow_sync_methods=False)
    yield stripe.StripeClient(
        server.secret_key,
        base_addresses={"api": server.url, "connect": server.url},
        http_client=http_client,
    )
    await http_client.close_async()


@pytest.fixture
async def receiver(server: StripeServer, serve_app: ServeApp) -> AsyncIterator[Receiver]:
    receiver = Receiver(secret=WEBHOOK_SECRET)
    app = Starlette(routes=[Route("/stripe/webhook", receiver.endpoint, methods=["POST"])])
    async with serve_app(app) as base_url:
        server.register_webhook(f"{base_url}/stripe/webhook", WEBHOOK_SECRET)
        yield receiver


async def connected_account(client: stripe.StripeClient) -> stripe.Account:
    return await client.v1.accounts.create_async(
        {
            "type": "standard",
            "country": "US",
            "email": "treasurer@example.org",
            "metadata": {"organisation_id": "org_1"},
            "capabilities": {
                "card_payments": {"requested": True},
                "transfers": {"requested": True},
            },
        }
    )


async def paid_intent(
    client: stripe.StripeClient, account: str, amount: int, key: str
) -> stripe.PaymentIntent:
    """A PaymentIntent on ``account``, paid by card as Stripe.js would have confirmed it."""
    on_account: Any = {"stripe_account": account}
    intent = await client.v1.payment_intents.create_async(
        {
            "amount": amount,
            "currency": "usd",
            "metadata": {"donation_id": key},
            "allowed_payment_method_types": ["card"],
        },
        options={**on_account, "idempotency_key": key},
    )
    card: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    method = await client.v1.payment_methods.create_async(
        {"type": "card", "card": card}, options=on_account
    )
    # localstripe's confirm refuses a payment_method parameter: attach it with an update first.
    await client.v1.payment_intents.update_async(
        intent.id, {"payment_method": method.id}, options=on_account
    )
    return await client.v1.payment_intents.confirm_async(intent.id, options=on_account)


async def test_connected_account_and_onboarding_link(client: stripe.StripeClient) -> None:
    account = await connected_account(client)

    assert re.fullmatch(r"acct_[A-Za-z0-9]{16}", account.id)
    assert account.type == "standard"
    assert account.charges_enabled is False
    assert account.payouts_enabled is False
    assert account.email == "treasurer@example.org"
    assert account.metadata.to_dict() == {"organisation_id": "org_1"}
    assert "external_account" in account.requirements.currently_due
    assert account.capabilities.card_payments == "inactive"
    fetched = await client.v1.accounts.retrieve_async(account.id)
    assert fetched.id == account.id
    assert fetched.requirements.disabled_reason == "requirements.past_due"

    link = await client.v1.account_links.create_async(
        {
            "account": account.id,
            "refresh_url": "https://amply.example/onboarding/refresh",
            "return_url": "https://amply.example/onboarding/done",
            "type": "account_onboarding",
        }
    )
    assert link.object == "account_link"
    assert link.url.startswith("https://connect.stripe.com/setup/s/")
    assert link.expires_at == link.created + 300
    assert abs(link.created - time.time()) < 5

    with pytest.raises(stripe.InvalidRequestError) as missing:
        await client.v1.accounts.retrieve_async("acct_0000000000000000")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as no_link:
        await client.v1.account_links.create_async(
            {"account": "acct_0000000000000000", "type": "account_onboarding"}
        )
    assert no_link.value.code == "resource_missing"
    assert no_link.value.param == "account"


async def test_onboarding_progress_sends_signed_account_updated(
    server: StripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    account = await connected_account(client)

    updated = server.set_account(
        account.id, charges_enabled=True, payouts_enabled=True, details_submitted=True
    )

    assert updated["charges_enabled"] is True
    event = await receiver.wait_for("account.updated")
    assert event["account"] == account.id
    assert event["data"]["object"]["id"] == account.id
    assert event["data"]["object"]["charges_enabled"] is True
    assert event["data"]["object"]["requirements"]["currently_due"] == []
    assert event["data"]["previous_attributes"]["charges_enabled"] is False
    assert event["api_version"] == stripe.api_version
    fetched = await client.v1.accounts.retrieve_async(account.id)
    assert (fetched.charges_enabled, fetched.payouts_enabled, fetched.details_submitted) == (
        True,
        True,
        True,
    )


async def test_payment_refunds_and_webhooks_on_a_connected_account(
    server: StripeServer, client: stripe.StripeClient, receiver: Receiver
) -> None:
    account = (await connected_account(client)).id
    on_account: Any = {"stripe_account": account}

    intent = await paid_intent(client, account, 1000, key="donation-1")

    assert intent.status == "succeeded"
    assert intent.amount_received == 1000
    assert isinstance(intent.latest_charge, str)
    succeeded = await receiver.wait_for("payment_intent.succeeded")
    assert succeeded["account"] == account
    assert succeeded["livemode"] is False
    assert succeeded["data"]["object"]["id"] == intent.id
    assert succeeded["data"]["object"]["metadata"] == {"donation_id": "donation-1"}
    assert succeeded["request"]["id"].startswith("req_")

    charge = await client.v1.charges.retrieve_async(
        intent.latest_charge, params={"expand": ["balance_transaction"]}, options=on_account
    )
    assert charge.payment_intent == intent.id
    fee = charge.balance_transaction
    assert isinstance(fee, stripe.BalanceTransaction)
    assert (fee.amount, fee.fee, fee.net) == (1000, 59, 941)  # 2.9% + 30
    assert [(d.amount, d.type, d.description) for d in fee.fee_details] == [
        (59, "stripe_fee", "Stripe processing fees")
    ]
    same_fee = await client.v1.balance_transactions.retrieve_async(fee.id, options=on_account)
    assert same_fee.fee == 59

    with pytest.raises(stripe.InvalidRequestError) as elsewhere:  # not on the platform account
        await client.v1.charges.retrieve_async(charge.id)
    assert elsewhere.value.http_status == 404

    partial = await client.v1.refunds.create_async(
        {"payment_intent": intent.id, "amount": 400, "reason": "requested_by_customer"},
        options={**on_account, "idempotency_key": "refund-1"},
    )
    assert (partial.amount, partial.reason, partial.status) == (
        400,
        "requested_by_customer",
        "succeeded",
    )
    assert partial.payment_intent == intent.id
    first = await receiver.wait_for("charge.refunded")
    assert first["account"] == account
    assert first["request"]["idempotency_key"] == "refund-1"
    refunded = first["data"]["object"]
    assert (refunded["id"], refunded["amount_refunded"], refunded["refunded"]) == (
        charge.id,
        400,
        False,
    )
    assert refunded["payment_intent"] == intent.id
    assert refunded["refunds"]["object"] == "list"

    rest = await client.v1.refunds.create_async(
        {"charge": charge.id, "reason": "duplicate"}, options=on_account
    )
    assert rest.amount == 600
    second = (await receiver.wait_for("charge.refunded", count=2))["data"]["object"]
    assert (second["amount_refunded"], second["refunded"]) == (1000, True)
    assert len(second["refunds"]["data"]) == 2

    with pytest.raises(stripe.InvalidRequestError) as again:
        await client.v1.refunds.create_async({"charge": charge.id}, options=on_account)
    assert again.value.code == "charge_already_refunded"


async def test_refund_reason_and_amount_are_validated(client: stripe.StripeClient) -> None:
    account = (await connected_account(client)).id
    intent = await paid_intent(client, account, 500, key="donation-2")

    with pytest.raises(stripe.InvalidRequestError) as reason:
        await client.v1.refunds.create_async(
            {"payment_intent": intent.id, "reason": "changed_mind"},
            options={"stripe_account": account},
        )
    assert (reason.value.http_status, reason.value.param) == (400, "reason")
    with pytest.raises(stripe.InvalidRequestError) as amount:
        await client.v1.refunds.create_async(
            {"payment_intent": intent.id, "amount": 501}, options={"stripe_account": account}
        )
    assert amount.value.param == "amount"
    assert "($5.01)" in str(amount.value.user_message)


async def test_idempotency_key_replays_and_the_request_log(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    account = (await connected_account(client)).id
    server.clear_requests()
    params: Any = {
        "amount": 2500,
        "currency": "usd",
        "metadata": {"donation_id": "don_3"},
        "allowed_payment_method_types": ["card"],
    }
    options: Any = {"stripe_account": account, "idempotency_key": "donation-3"}

    first = await client.v1.payment_intents.create_async(params, options=options)
    replay = await client.v1.payment_intents.create_async(params, options=options)

    assert replay.id == first.id
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    listed = await client.v1.payment_intents.list_async(options={"stripe_account": account})
    assert [intent.id for intent in listed.data] == [first.id]
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.payment_intents.create_async({**params, "amount": 2600}, options=options)
    # The key is scoped to the account: the platform may use it for something else.
    other = await client.v1.payment_intents.create_async(
        params, options={"idempotency_key": "donation-3"}
    )
    assert other.id != first.id

    posts = [r for r in server.requests("/v1/payment_intents") if r.method == "POST"]
    assert len(posts) == 4
    assert all(r.headers["idempotency-key"] == "donation-3" for r in posts)
    assert [r.headers.get("stripe-account") for r in posts] == [account, account, account, None]
    assert posts[0].params == {
        "amount": "2500",
        "currency": "usd",
        "metadata": {"donation_id": "don_3"},
        "allowed_payment_method_types": ["card"],
    }
    assert posts[0].headers["authorization"] == f"Bearer {server.secret_key}"
    assert server.requests("/v1/accounts") == []


async def test_reset_forgets_objects_and_requests(
    server: StripeServer, client: stripe.StripeClient
) -> None:
    account = await connected_account(client)
    assert [r.path for r in server.requests()] == ["/v1/accounts"]

    server.reset()

    assert server.requests() == []
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.accounts.retrieve_async(account.id)


async def test_reset_drops_events_not_yet_delivered(
    server: StripeServer, client: stripe.StripeClient, receiver: Receiver, serve_app: ServeApp
) -> None:
    account = await connected_account(client)
    server.set_account(
        account.id, charges_enabled=True, payouts_enabled=True, details_submitted=True
    )

    server.reset()  # the next test's receiver must not get this test's account.updated

    later = Receiver(secret=WEBHOOK_SECRET)
    app = Starlette(routes=[Route("/later", later.endpoint, methods=["POST"])])
    async with serve_app(app) as base_url:
        server.register_webhook(f"{base_url}/later", WEBHOOK_SECRET)
        await asyncio.sleep(0.3)
    assert later.deliveries == []


async def test_made_events_are_signed_as_stripe_signs_them() -> None:
    dispute = recorded("dispute")
    dispute["charge"] = "ch_amply"
    event = make_event("charge.dispute.created", dispute, account="acct_amply", created=1700000000)
    payload = json.dumps(event).encode()
    header = sign_payload(payload, WEBHOOK_SECRET)

    parsed = stripe.Webhook.construct_event(payload.decode(), header, WEBHOOK_SECRET)

    assert parsed.type == "charge.dispute.created"
    assert parsed.account == "acct_amply"
    assert parsed.data.object.charge == "ch_amply"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), header, "whsec_other")
    stale = sign_payload(payload, WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload.decode(), stale, WEBHOOK_SECRET, 300)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("account", "account"),
        ("account_link", "account_link"),
        ("balance_transaction", "balance_transaction"),
        ("dispute", "dispute"),
        ("account.updated", "event"),
        ("charge.dispute.created", "event"),
        ("charge.dispute.closed", "event"),
    ],
)
def test_recordings_have_stripes_shape(name: str, kind: str) -> None:
    body = recorded(name)

    assert body["object"] == kind
    if kind == "event":
        assert body["type"] == name
        assert body["account"].startswith("acct_")
        assert body["livemode"] is False
        assert set(body) >= {"id", "api_version", "created", "data", "pending_webhooks", "request"}
        assert body["data"]["object"]["object"] in ("account", "dispute")
    if kind == "balance_transaction":
        assert body["net"] == body["amount"] - body["fee"] == 941


async def test_serve_app_serves_over_http() -> None:
    async def hello(request: Request) -> Response:
        return Response("hello")

    app = Starlette(routes=[Route("/", hello)])
    async with serve_asgi(app) as base_url, httpx.AsyncClient() as http:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
        response = await http.get(base_url)
    assert (response.status_code, response.text) == (200, "hello")


# --- What the pinned API version refuses --------------------------------------------------------


def _post(stripe_server: StripeServer, path: str, data: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{stripe_server.url}{path}",
        data=data,
        headers={"Authorization": "Bearer sk_test_harness", "Stripe-Version": stripe.api_version},
    )


@pytest.mark.parametrize("path", ["/v1/payment_intents", "/v1/setup_intents"])
def test_the_server_refuses_payment_method_types_as_the_pinned_version_does(
    stripe_server: StripeServer, path: str
) -> None:
    amount = {"amount": "500", "currency": "usd"} if path == "/v1/payment_intents" else {}

    refused = _post(stripe_server, path, {**amount, "payment_method_types[0]": "card"})
    allowed = _post(stripe_server, path, {**amount, "allowed_payment_method_types[0]": "card"})

    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "payment_method_types_no_longer_supported"
    assert refused.json()["error"]["param"] == "payment_method_types"
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["payment_method_types"] == ["card"]


@pytest.mark.parametrize(
    ("path", "data", "param"),
    [
        ("/v1/customers", {"invented": "x"}, "invented"),
        ("/v1/setup_intents", {"metadata[a]": "b", "usage": "off_session", "x[y]": "z"}, "x"),
        (
            "/v1/payment_intents",
            {"amount": "500", "currency": "usd", "automatic_payment_methods[invented]": "true"},
            "automatic_payment_methods[invented]",
        ),
        (
            "/v1/payment_intents",
            {
                "amount": "500",
                "currency": "usd",
                "allowed_payment_method_types[0]": "card",
                "automatic_payment_methods[enabled]": "true",
            },
            "automatic_payment_methods",
        ),
    ],
)
def test_the_server_refuses_what_the_librarys_parameter_types_do_not_accept(
    stripe_server: StripeServer, path: str, data: dict[str, str], param: str
) -> None:
    response = _post(stripe_server, path, data)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"type": "standard", "controller[fees][payer]": "account"}, "type"),
        ({"controller[stripe_dashboard][type]": "wide"}, "controller[stripe_dashboard][type]"),
        (
            {"controller[losses][payments]": "application", "controller[fees][payer]": "account"},
            "controller[fees][payer]",
        ),
        (
            {"controller[requirement_collection]": "application"},
            "controller[requirement_collection]",
        ),
    ],
)
def test_the_server_refuses_controllers_stripe_refuses(
    stripe_server: StripeServer, data: dict[str, str], param: str
) -> None:
    response = _post(stripe_server, "/v1/accounts", {"country": "US", **data})

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_accounts_with_their_own_dashboard_get_no_account_update_links(
    stripe_server: StripeServer,
) -> None:
    created = _post(
        stripe_server,
        "/v1/accounts",
        {"country": "US", "controller[stripe_dashboard][type]": "full"},
    )
    account = created.json()
    link = {"account": account["id"], "return_url": "https://a.example/"}

    update = _post(stripe_server, "/v1/account_links", {**link, "type": "account_update"})
    onboarding = _post(
        stripe_server,
        "/v1/account_links",
        {
            **link,
            "type": "account_onboarding",
            "collection_options[fields]": "eventually_due",
            "collection_options[future_requirements]": "include",
        },
    )
    wrong = _post(
        stripe_server,
        "/v1/account_links",
        {**link, "type": "account_onboarding", "collection_options[fields]": "all"},
    )

    assert created.status_code == 200, created.text
    assert account["controller"]["stripe_dashboard"]["type"] == "full"
    assert account["controller"]["fees"]["payer"] == "account"
    assert update.status_code == 400
    assert update.json()["error"]["param"] == "type"
    assert onboarding.status_code == 200, onboarding.text
    assert wrong.status_code == 400
    assert wrong.json()["error"]["param"] == "collection_options[fields]"
