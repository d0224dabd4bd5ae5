"""Stripe's webhook: signed events, each taking effect exactly once."""

from __future__ import annotations

from fastapi import APIRouter, Request

from amply.donations.schemas import WebhookAck
from amply.kit.dependencies import SessionDep, SettingsDep
from amply.kit.error_responses import error_responses
from amply.kit.errors import ErrorCode
from amply.payments.dependencies import GatewayDep
from amply.webhooks import stripe_events

router = APIRouter(tags=["webhooks"])


@router.post(
    "/webhooks/stripe",
    summary="Receive a Stripe event (platform and Connect)",
    description="Verifies `Stripe-Signature` over the raw body. A duplicate answers 200 and "
    "changes nothing; a failure answers non-2xx so that Stripe retries.",
    responses=error_responses(
        400,
        ErrorCode.WEBHOOK_INVALID,
        ErrorCode.WEBHOOK_PAYLOAD_INVALID,
        ErrorCode.WEBHOOK_SIGNATURE_INVALID,
        ErrorCode.PAYMENT_MISMATCH,
        ErrorCode.SANDBOX_PAYMENT,
        503,
        ErrorCode.WEBHOOKS_NOT_CONFIGURED,
        ErrorCode.EVENT_OUT_OF_ORDER,
        ErrorCode.STRIPE_READ_UNAVAILABLE,
        ErrorCode.PAYMENT_PROVIDER_UNAVAILABLE,
    ),
)
async def stripe_webhook(
    request: Request, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> WebhookAck:
    event = stripe_events.verify(
        await request.body(), signature=request.headers.get("stripe-signature"), settings=settings
    )
    request.state.caller_kind = "stripe"
    outcome = await stripe_events.receive(
        session, event=event, gateway=gateway, live_mode=settings.live_mode
    )
    return WebhookAck(outcome=outcome)
