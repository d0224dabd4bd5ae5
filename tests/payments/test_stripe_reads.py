"""An event's Stripe reads happen before its transaction, and its handlers can call nothing."""

from __future__ import annotations

import pytest

from amply.kit.errors import Conflict
from amply.payments.gateway import SandboxGateway, sandbox_payment_method_id
from amply.payments.stripe_reads import NotReadAhead, ReadAhead, read_ahead

ACCOUNT = "acct_sandbox_1"


async def test_a_charge_events_fee_is_read_ahead_and_answered_without_a_call() -> None:
    gateway = SandboxGateway()
    reads = await read_ahead(
        gateway,
        event_type="charge.updated",
        account=ACCOUNT,
        obj={"id": "ch_1", "amount": 10_000, "currency": "usd"},
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
        event_type="charge.dispute.created",
        account=ACCOUNT,
        obj={"id": "dp_1", "payment_intent": "pi_1", "amount": 500},
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
        event_type="setup_intent.succeeded",
        account=None,
        obj={"id": "seti_1", "payment_method": method},
    )

    details = await ReadAhead(gateway, reads).retrieve_card(payment_method_id=method)

    assert details == await gateway.retrieve_card(payment_method_id=method)


async def test_applying_an_event_never_writes_to_stripe() -> None:
    applying = ReadAhead(
        SandboxGateway(),
        await read_ahead(
            SandboxGateway(), event_type="payment_intent.succeeded", account=None, obj={}
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
