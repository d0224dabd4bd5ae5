"""Stripe's objects are parsed once, at the boundary: each field from its place, and a malformed
object refused with one clear error (400 ``webhook_payload_invalid``)."""

from __future__ import annotations

from typing import Any

import pytest
import stripe

from amply.payments.connected_payouts import PayoutState, state_of
from amply.payments.stripe_objects import (
    AccountState,
    BalanceMove,
    CardDetails,
    ChargeState,
    DisputeState,
    MalformedStripeObject,
    PaymentIntentState,
    RefundState,
    SetupIntentState,
    StripeEvent,
    reference,
)

ENVELOPE: dict[str, Any] = {
    "id": "evt_1",
    "object": "event",
    "type": "payment_intent.succeeded",
    "account": "acct_1",
    "livemode": True,
    "created": 1_700_000_000,
    "data": {"object": {"id": "pi_1"}},
}


def refused(error: pytest.ExceptionInfo[MalformedStripeObject]) -> tuple[int, str]:
    return error.value.status_code, error.value.code


def test_an_events_envelope_is_read_from_its_fields() -> None:
    event = StripeEvent.parse(ENVELOPE)

    assert (event.id, event.type, event.account, event.livemode, event.created) == (
        "evt_1",
        "payment_intent.succeeded",
        "acct_1",
        True,
        1_700_000_000,
    )
    assert event.object == {"id": "pi_1"}
    assert event.payload == ENVELOPE
    assert event.created_at.isoformat() == "2023-11-14T22:13:20+00:00"


@pytest.mark.parametrize(
    "change",
    [
        {"id": "ev_1"},
        {"id": 1},
        {"type": ""},
        {"created": True},
        {"created": -1},
        {"created": "yesterday"},
        {"data": {"object": []}},
        {"data": None},
        {"account": 7},
    ],
)
def test_an_envelope_missing_what_stripe_always_sends_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedStripeObject) as error:
        StripeEvent.parse({**ENVELOPE, **change})

    assert refused(error) == (400, "webhook_payload_invalid")


def test_an_envelope_that_is_no_object_is_refused() -> None:
    with pytest.raises(MalformedStripeObject, match="an object"):
        StripeEvent.parse([ENVELOPE])


def test_references_are_read_expanded_or_not() -> None:
    assert reference("ch_1") == "ch_1"
    assert reference({"id": "ch_1", "object": "charge"}) == "ch_1"
    assert reference(None) is None
    assert reference(7) is None


def test_a_payment_intent_is_read_from_its_fields_and_metadata() -> None:
    intent = PaymentIntentState.parse(
        {
            "id": "pi_1",
            "status": "requires_payment_method",
            "amount": 2_500,
            "amount_received": 0,
            "currency": "eur",
            "latest_charge": {"id": "ch_1"},
            "customer": "cus_1",
            "payment_method": {"id": "pm_1"},
            "metadata": {"amply_deposit": "txn_1", "wallet_id": "wal_1"},
            "last_payment_error": {"code": "card_declined", "message": "Declined."},
        }
    )

    assert intent == PaymentIntentState(
        id="pi_1",
        status="requires_payment_method",
        amount=2_500,
        amount_received=0,
        currency="eur",
        latest_charge_id="ch_1",
        customer_id="cus_1",
        payment_method_id="pm_1",
        deposit_id="txn_1",
        wallet_id="wal_1",
        failure_code="card_declined",
        failure_message="Declined.",
    )
    # What was paid: amount_received when Stripe tells it, else the amount.
    assert intent.paid == 0
    assert PaymentIntentState.parse({"id": "pi_1", "amount": 2_500}).paid == 2_500


def test_a_payment_intent_lacking_optional_fields_reads_as_none() -> None:
    intent = PaymentIntentState.parse({"id": None, "metadata": "nonsense"})

    assert (intent.id, intent.amount, intent.currency, intent.deposit_id) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "fields",
    [{"amount": "2500"}, {"amount": True}, {"amount_received": 1.5}, {"currency": 978}],
)
def test_a_payment_intent_with_a_malformed_amount_or_currency_is_refused(
    fields: dict[str, Any],
) -> None:
    with pytest.raises(MalformedStripeObject) as error:
        PaymentIntentState.parse({"id": "pi_1", **fields})

    assert refused(error) == (400, "webhook_payload_invalid")


def test_a_payment_intent_from_the_library_is_read_from_its_typed_fields() -> None:
    intent = stripe.PaymentIntent.construct_from(
        {
            "id": "pi_1",
            "object": "payment_intent",
            "status": "succeeded",
            "amount": 2_500,
            "amount_received": 2_500,
            "currency": "eur",
            "latest_charge": "ch_1",
            "customer": {"id": "cus_1", "object": "customer"},
            "payment_method": None,
            "metadata": {"amply_deposit": "txn_1"},
            "last_payment_error": None,
        },
        "sk_test_unused",
    )

    assert PaymentIntentState.from_stripe(intent) == PaymentIntentState(
        id="pi_1",
        status="succeeded",
        amount=2_500,
        amount_received=2_500,
        currency="eur",
        latest_charge_id="ch_1",
        customer_id="cus_1",
        deposit_id="txn_1",
    )


def test_a_charge_is_read_with_the_refunds_it_lists() -> None:
    charge = ChargeState.parse(
        {
            "id": "ch_1",
            "payment_intent": {"id": "pi_1"},
            "amount": 2_500,
            "currency": "eur",
            "amount_refunded": 1_000,
            "balance_transaction": "txn_1",
            "metadata": {"amply_deposit": "txn_d"},
            "refunds": {
                "object": "list",
                "data": [{"id": "re_1", "status": "succeeded"}, {"status": "pending"}, "re_2"],
            },
        }
    )

    assert charge == ChargeState(
        id="ch_1",
        payment_intent_id="pi_1",
        amount=2_500,
        currency="eur",
        amount_refunded=1_000,
        settled=True,
        deposit_id="txn_d",
        refunds=(RefundState(id="re_1", status="succeeded"),),
    )
    # No list (the current API version): None, not "no refunds".
    unlisted = ChargeState.parse({"id": "ch_1"})
    assert (unlisted.refunds, unlisted.amount_refunded, unlisted.settled) == (None, 0, False)


@pytest.mark.parametrize("refunded", ["3000", -1, 1.5, True])
def test_a_charge_whose_refunded_total_is_not_a_count_is_refused(refunded: object) -> None:
    with pytest.raises(MalformedStripeObject) as error:
        ChargeState.parse({"id": "ch_1", "amount_refunded": refunded})

    assert refused(error) == (400, "webhook_payload_invalid")


def test_a_refund_without_an_id_names_nothing() -> None:
    assert RefundState.parse({"status": "failed"}) is None
    assert RefundState.parse({"id": "re_1", "status": 3, "payment_intent": "pi_1"}) == RefundState(
        id="re_1", status=None, payment_intent_id="pi_1"
    )


DISPUTE: dict[str, Any] = {
    "id": "du_1",
    "amount": 2_500,
    "currency": "eur",
    "status": "needs_response",
    "reason": "fraudulent",
    "charge": {"id": "ch_1"},
    "payment_intent": "pi_1",
    "balance_transactions": [
        {"id": "txn_1", "amount": -2_500, "fee": 1_500, "currency": "eur"},
        "txn_unexpanded",
    ],
}


def test_a_dispute_is_read_with_its_balance_transactions() -> None:
    assert DisputeState.parse(DISPUTE) == DisputeState(
        id="du_1",
        amount=2_500,
        currency="eur",
        status="needs_response",
        reason="fraudulent",
        charge_id="ch_1",
        payment_intent_id="pi_1",
        moves=(BalanceMove("txn_1", -2_500, 1_500, "EUR"),),
    )


def test_whose_payment_a_dispute_is_about_is_read_however_it_looks() -> None:
    assert DisputeState.payment_intent_of({"payment_intent": {"id": "pi_1"}, "amount": "x"}) == (
        "pi_1"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"id": "ch_1"},
        {"id": None},
        {"amount": 0},
        {"amount": None},
        {"amount": "2500"},
        {"balance_transactions": [{"id": "txn_1", "amount": -1, "fee": "0", "currency": "eur"}]},
        {"balance_transactions": [{"id": "", "amount": -1, "fee": 0, "currency": "eur"}]},
        {"balance_transactions": [{"id": "txn_1", "amount": -1, "fee": 0, "currency": "euro"}]},
    ],
)
def test_a_dispute_lacking_an_id_amount_or_balance_transaction_fields_is_refused(
    change: dict[str, Any],
) -> None:
    with pytest.raises(MalformedStripeObject) as error:
        DisputeState.parse({**DISPUTE, **change})

    assert refused(error) == (400, "webhook_payload_invalid")


def test_an_account_is_read_with_its_requirements() -> None:
    account = AccountState.parse(
        {
            "id": "acct_1",
            "charges_enabled": True,
            "payouts_enabled": False,
            "details_submitted": True,
            "requirements": {"currently_due": ["external_account"], "disabled_reason": "x" * 300},
        }
    )

    assert account == AccountState(
        account_id="acct_1",
        charges_enabled=True,
        payouts_enabled=False,
        details_submitted=True,
        requirements_due=("external_account",),
        disabled_reason="x" * 200,
    )
    assert AccountState.parse({"object": "account"}) is None


def test_an_account_from_the_library_is_read_from_its_typed_fields() -> None:
    account = stripe.Account.construct_from(
        {
            "id": "acct_1",
            "object": "account",
            "charges_enabled": True,
            "payouts_enabled": True,
            "details_submitted": True,
        },
        "sk_test_unused",
    )

    assert AccountState.from_stripe(account) == AccountState("acct_1", True, True, True)


def test_a_setup_intent_is_read_from_its_fields_and_metadata() -> None:
    intent = SetupIntentState.parse(
        {
            "id": "seti_1",
            "status": "succeeded",
            "customer": "cus_1",
            "payment_method": {"id": "pm_1"},
            "metadata": {"wallet_id": "wal_1"},
        }
    )

    assert intent == SetupIntentState(
        setup_intent_id="seti_1",
        status="succeeded",
        customer_id="cus_1",
        payment_method_id="pm_1",
        wallet_id="wal_1",
    )
    assert SetupIntentState.parse({"status": "succeeded"}) is None


def test_a_card_from_the_library_is_read_from_its_typed_fields() -> None:
    method = stripe.PaymentMethod.construct_from(
        {
            "id": "pm_1",
            "object": "payment_method",
            "type": "card",
            "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034},
        },
        "sk_test_unused",
    )
    assert method.card is not None

    assert CardDetails.from_stripe(method.card) == CardDetails("visa", "4242", 12, 2034)


def test_a_payout_is_read_from_its_fields_and_its_events_type() -> None:
    payout = {
        "id": "po_1",
        "amount": 1_500,
        "currency": "usd",
        "status": "in_transit",
        "balance_transaction": {"id": "txn_1"},
        "failure_balance_transaction": "txn_2",
        "failure_code": "account_closed",
    }

    state = state_of(payout, account_id="acct_1", event_type="payout.failed")

    assert state == PayoutState(
        payout_id="po_1",
        account_id="acct_1",
        amount=1_500,
        currency="USD",
        status="failed",
        failure_code="account_closed",
        balance_transaction="txn_1",
        failure_balance_transaction="txn_2",
    )


@pytest.mark.parametrize(
    "change", [{"id": "tr_1"}, {"amount": 0}, {"amount": "1500"}, {"currency": "dollars"}]
)
def test_a_payout_lacking_an_id_amount_or_currency_is_refused(change: dict[str, Any]) -> None:
    payout = {"id": "po_1", "amount": 1_500, "currency": "usd", **change}

    with pytest.raises(MalformedStripeObject) as error:
        state_of(payout, account_id="acct_1", event_type="payout.paid")

    assert refused(error) == (400, "webhook_payload_invalid")
