"""The payment gateway's translation of Stripe's failures, and a fee Stripe reports late."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import stripe

from amply.kit.db import Database
from amply.kit.errors import AmplyError
from amply.ledger import service as ledger
from amply.payments.gateway import ProcessingFee, SandboxGateway, _translate
from amply.webhooks import stripe_events
from tests.factories import create_organisation, donate, onboard, sign_up


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (stripe.APIConnectionError("down"), 503, "payment_provider_unavailable"),
        (stripe.RateLimitError("slow down"), 503, "payment_provider_unavailable"),
        (
            stripe.InvalidRequestError(
                "Refund amount is greater than unrefunded amount on charge",
                param="amount",
                code="amount_too_large",
            ),
            409,
            "amount_too_large",
        ),
        (stripe.AuthenticationError("bad key"), 502, "payment_provider_error"),
        (stripe.APIError("boom"), 502, "payment_provider_error"),
    ],
)
def test_stripe_failures_become_errors_the_client_can_act_on(
    error: stripe.StripeError, status: int, code: str
) -> None:
    translated = _translate(error)

    assert isinstance(translated, AmplyError)
    assert (translated.status_code, translated.code) == (status, code)


class LateFeeGateway(SandboxGateway):
    """A provider that settles the charge only after the payment's success event."""

    def __init__(self) -> None:
        self.settled = False

    async def processing_fee(
        self, *, account_id: str, charge_id: str, amount: int, currency: str
    ) -> ProcessingFee | None:
        if not self.settled:
            return None
        return ProcessingFee(fee=77, currency="GBP", balance_transaction_id="txn_late")


def _event(event_type: str, obj: dict[str, Any], account: str) -> stripe_events.Event:
    payload = {"id": f"evt_{event_type.replace('.', '')}{time.monotonic_ns()}", "type": event_type}
    return stripe_events.Event(
        id=str(payload["id"]),
        type=event_type,
        account=account,
        livemode=False,
        created=int(time.time()),
        object=obj,
        payload=payload,
    )


async def test_a_fee_settled_after_the_success_event_is_recorded_once_by_charge_updated(
    client: httpx.AsyncClient, database: Database
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    account = await onboard(client, owner, organisation_id)
    checkout = await donate(client, organisation_id, amount=5_000)
    intent_id = checkout["payment"]["payment_intent_id"]  # type: ignore[index]
    charge = {"id": "ch_late", "payment_intent": intent_id, "balance_transaction": "txn_late"}
    gateway = LateFeeGateway()

    async with database.session() as session:
        succeeded = {"id": intent_id, "latest_charge": "ch_late"}
        await stripe_events.process(
            session,
            event=_event("payment_intent.succeeded", succeeded, account),
            source="webhook",
            gateway=gateway,
        )
        gateway.settled = True
        for _ in range(2):
            await stripe_events.process(
                session,
                event=_event("charge.updated", charge, account),
                source="webhook",
                gateway=gateway,
            )
        await session.commit()
        page = await ledger.list_entries(session, chain_id=organisation_id)

    # The fee is in the currency Stripe charged it, not the donation's.
    assert [(e.type, e.amount, e.currency) for e in page.entries] == [
        ("donation_received", 5_000, "EUR"),
        ("payment_processing_fee", -77, "GBP"),
    ]
