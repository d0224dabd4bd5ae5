"""An event's Stripe reads happen before its transaction, and its handlers can call nothing."""

from __future__ import annotations

import pytest

from amply.kit.errors import Conflict
from amply.payments.gateway import SandboxGateway, sandbox_payment_method_id
from amply.payments.stripe_objects import JSONObject, StripeEvent
from amply.payments.stripe_reads import NotReadAhead, ReadAhead, read_ahead

ACCOUNT = "acct_sandbox_1"


def event(event_type: str, obj: JSONObject, *, account: str | None) -> StripeEvent:
    return StripeEvent.parse(
        {
            "id": "evt_1",
            "type": event_type,
            "created": 1,
            "account": account,
            "data": {"object": obj},
        }
    )


async def test_a_charge_events_fee_is_read_ahead_and_answered_without_a_call() -> None:
    gateway = SandboxGateway()
    reads = await read_ahead(
        gateway,
        event=event(
            "charge.updated", {"id": "ch_1", "amount": 10_000, "currency": "usd"}, account=ACCOUNT
        ),
    )
    applying = ReadAhead(gateway, reads)

    fee = await applying.processing_fee(
        account_id=ACCOUNT, charge_id="ch_1", amount=10_000, currency="USD"
    )

    assert fee == await gateway.processing_fee(
        account_id=ACCOUNT, charge_id="ch_1", amount=10_000, currency="USD"
    )
    with pytest.raises(NotReadAhead) as unread:
        await applying.processing_fee(
            account_id=ACCOUNT, charge_id="ch_2", amount=10_000, currency="USD"
        )
    assert unread.value.status_code == 503


async def test_a_read_that_failed_is_raised_only_when_a_handler_needs_it() -> None:
    # The sandbox refuses to look a PaymentIntent up, as a Stripe outage would.
    reads = await read_ahead(
        SandboxGateway(),
        event=event(
            "charge.dispute.created",
            {"id": "dp_1", "payment_intent": "pi_1", "amount": 500},
            account=ACCOUNT,
        ),
    )
    applying = ReadAhead(SandboxGateway(), reads)

    with pytest.raises(Conflict):
        await applying.retrieve_payment_intent(account_id=ACCOUNT, payment_intent_id="pi_1")
    assert reads.fees == {}


async def test_a_saved_cards_details_are_read_ahead_for_setup_intents() -> None:
    method = sandbox_payment_method_id("visa")
    gateway = SandboxGateway()
    reads = await read_ahead(
        gateway,
        event=event(
            "setup_intent.succeeded", {"id": "seti_1", "payment_method": method}, account=None
        ),
    )

    details = await ReadAhead(gateway, reads).retrieve_card(payment_method_id=method)

    assert details == await gateway.retrieve_card(payment_method_id=method)


async def test_applying_an_event_never_writes_to_stripe() -> None:
    applying = ReadAhead(
        SandboxGateway(),
        await read_ahead(
            SandboxGateway(), event=event("payment_intent.succeeded", {}, account=None)
        ),
    )

    with pytest.raises(NotReadAhead):
        await applying.create_refund(
            account_id=ACCOUNT,
            payment_intent_id="pi_1",
            amount=100,
            reason="requested_by_customer",
            metadata={},
            idempotency_key="k",
        )
    with pytest.raises(NotReadAhead):
        await applying.create_customer(wallet_id="wal_1")


async def test_a_malformed_object_reads_nothing_and_is_left_to_its_handler_to_refuse() -> None:
    reads = await read_ahead(
        SandboxGateway(),
        event=event("charge.updated", {"id": "ch_1", "amount": "10000"}, account=ACCOUNT),
    )

    assert reads.fees == {}
