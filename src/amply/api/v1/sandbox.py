"""Sandbox payments (only without Stripe keys): say what happened to a payment, and the
same event handlers as Stripe's webhook take it from there."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from amply.api.errors import error_responses
from amply.api.v1.donations import donation_out
from amply.deps import GatewayDep, SessionDep, SettingsDep
from amply.errors import NotFound
from amply.schemas.donations import DonationOut, SandboxRefund
from amply.services import sandbox

router = APIRouter(prefix="/sandbox/payments/{payment_id}", tags=["sandbox"])

PaymentId = Annotated[
    str, Path(max_length=100, description="The sandbox PaymentIntent id (`pi_sandbox_…`).")
]
ERRORS = error_responses(404, 409, 422)


def _require_sandbox(sandbox_mode: bool) -> None:
    if not sandbox_mode:
        raise NotFound("The sandbox is off: this server has Stripe keys.", code="sandbox_disabled")


@router.post("/succeed", summary="The donor's payment succeeds", responses=ERRORS)
async def succeed(
    payment_id: PaymentId, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> DonationOut:
    _require_sandbox(settings.sandbox_mode)
    donation = await sandbox.succeed(session, payment_intent_id=payment_id, gateway=gateway)
    return await donation_out(session, donation, organisation_view=False)


@router.post("/fail", summary="The donor's payment fails", responses=ERRORS)
async def fail(
    payment_id: PaymentId, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> DonationOut:
    _require_sandbox(settings.sandbox_mode)
    donation = await sandbox.fail(session, payment_intent_id=payment_id, gateway=gateway)
    return await donation_out(session, donation, organisation_view=False)


@router.post("/refund", summary="Stripe confirms refunds of the payment", responses=ERRORS)
async def refund(
    payment_id: PaymentId,
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    body: SandboxRefund | None = None,
) -> DonationOut:
    _require_sandbox(settings.sandbox_mode)
    donation = await sandbox.refund(
        session,
        payment_intent_id=payment_id,
        amount=body.amount if body else None,
        gateway=gateway,
    )
    return await donation_out(session, donation, organisation_view=False)
