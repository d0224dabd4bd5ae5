"""Sandbox payments (only without Stripe keys): say what happened to a payment (a donation's,
or a wallet's card deposit), and the same event handlers as Stripe's webhook take it from
there. (The sandbox's SetupIntents are confirmed in ``api/v1/cards.py``.)"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy.ext.asyncio import AsyncSession

from amply.api.errors import error_responses
from amply.api.v1.deposits import deposit_out
from amply.api.v1.donations import donation_out
from amply.deps import GatewayDep, SessionDep, SettingsDep
from amply.errors import NotFound
from amply.models import Donation, Transaction
from amply.schemas.deposits import DepositOut
from amply.schemas.donations import DonationOut, SandboxRefund
from amply.services import sandbox

router = APIRouter(prefix="/sandbox/payments/{payment_id}", tags=["sandbox"])

PaymentId = Annotated[
    str,
    Path(
        max_length=100,
        description="The sandbox PaymentIntent id (`pi_sandbox_…`) of a donation or a card "
        "deposit.",
    ),
]
ERRORS = error_responses(404, 409, 422)


def _require_sandbox(sandbox_mode: bool) -> None:
    if not sandbox_mode:
        raise NotFound("The sandbox is off: this server has Stripe keys.", code="sandbox_disabled")


async def _payment_out(
    session: AsyncSession, payment: Donation | Transaction
) -> DonationOut | DepositOut:
    if isinstance(payment, Transaction):
        return await deposit_out(session, payment)
    return await donation_out(session, payment, organisation_view=False)


@router.post(
    "/succeed",
    summary="The payment succeeds (a donor's, or a card deposit's)",
    description="Answers with the donation, or with the deposit (credited to its wallet).",
    responses=ERRORS,
)
async def succeed(
    payment_id: PaymentId, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> DonationOut | DepositOut:
    _require_sandbox(settings.sandbox_mode)
    payment = await sandbox.succeed(session, payment_intent_id=payment_id, gateway=gateway)
    return await _payment_out(session, payment)


@router.post(
    "/fail",
    summary="The payment fails (a donor's, or a card deposit's)",
    description="Answers with the donation, or with the deposit.",
    responses=ERRORS,
)
async def fail(
    payment_id: PaymentId, session: SessionDep, settings: SettingsDep, gateway: GatewayDep
) -> DonationOut | DepositOut:
    _require_sandbox(settings.sandbox_mode)
    payment = await sandbox.fail(session, payment_intent_id=payment_id, gateway=gateway)
    return await _payment_out(session, payment)


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
