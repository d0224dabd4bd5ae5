"""Deposits into the signed-in user's wallet: from a saved card, or (sandbox) from a bank."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, status
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth.dependencies import CurrentUser
from amply.kit.dependencies import RequiredIdempotencyKey, SessionDep, SettingsDep
from amply.kit.error_responses import IDEMPOTENCY_ERRORS, PROVIDER_ERRORS, error_responses
from amply.kit.errors import ErrorCode, InvalidInput
from amply.kit.idempotency import IdempotentRequest
from amply.kit.idempotent_requests import IdempotencyDep
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.payments.dependencies import GatewayDep
from amply.payments.gateway import CreatedPayment
from amply.wallets import deposits
from amply.wallets.deposits_schemas import (
    DepositCreate,
    DepositOut,
    DepositStatus,
)
from amply.wallets.views import deposit_out, deposit_views

router = APIRouter(tags=["deposits"])

DepositId = Annotated[str, Path(max_length=64, description="The deposit's id (`txn_…`).")]

_EXAMPLES = {
    "card": {
        "summary": "From a saved card (the default card if card_id is omitted)",
        "value": {"source": "card", "amount": 2500, "currency": "USD"},
    },
    "bank": {
        "summary": "From a simulated bank (sandbox mode only)",
        "value": {"source": "bank", "amount": 10000, "bank_name": "Demo Bank"},
    },
}


@router.post(
    "/deposits",
    status_code=status.HTTP_201_CREATED,
    response_model=DepositOut,
    summary="Deposit money into your wallet",
    description="`source: card` charges one of your saved cards (your default card unless "
    "`card_id` names another) with a PaymentIntent on Amply's Stripe account: the deposit is "
    "`pending` and your wallet is credited when Stripe reports the payment succeeded (in "
    "sandbox mode: `POST /v1/sandbox/payments/{payment_intent_id}/succeed`, signed in as "
    "yourself: only you may). `source: bank` "
    "exists only in sandbox mode: a simulated bank transfer, credited at once. Requires an "
    "`Idempotency-Key`: a retry with the same key and body returns the first response and "
    "moves nothing twice.",
    responses=error_responses(
        400,
        401,
        403,
        404,
        422,
        *IDEMPOTENCY_ERRORS,
        ErrorCode.AMOUNT_TOO_SMALL,
        ErrorCode.AMOUNT_TOO_LARGE,
        ErrorCode.CURRENCY_MISMATCH,
        ErrorCode.BANK_DEPOSITS_UNAVAILABLE,
        ErrorCode.NO_DEFAULT_CARD,
        ErrorCode.CARD_REMOVED,
        ErrorCode.PAYMENT_METHOD_NOT_CARD,
        *PROVIDER_ERRORS,
    ),
)
async def create_deposit(
    body: Annotated[DepositCreate, Body(openapi_examples=_EXAMPLES)],
    session: SessionDep,
    settings: SettingsDep,
    gateway: GatewayDep,
    user: CurrentUser,
    idempotency: IdempotencyDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    _check_source_fields(body)
    scope = f"user:{user.user.id}"
    if body.bank_name is not None:
        bank_name = body.bank_name

        async def bank_deposit(idempotent: IdempotentRequest | None) -> DepositOut:
            assert idempotent is not None  # the key is required
            created = await deposits.create_bank_deposit(
                session,
                user_id=user.user.id,
                amount=body.amount,
                currency=body.currency,
                bank_name=bank_name,
                settings=settings,
                idempotency=idempotent,
            )
            return await deposit_out(session, created)

        # The sandbox's simulated bank calls no network: one transaction, as usual.
        return await idempotency.respond(
            key=idempotency_key, scope=scope, body=body, status_code=201, run=bank_deposit
        )

    async def prepare(
        session: AsyncSession, idempotent: IdempotentRequest | None
    ) -> deposits.CardDepositPlan:
        assert idempotent is not None  # the key is required
        return await deposits.prepare_card_deposit(
            session,
            user_id=user.user.id,
            amount=body.amount,
            currency=body.currency,
            card_id=body.card_id,
            gateway=gateway,
            settings=settings,
            idempotency=idempotent,
        )

    async def charge(plan: deposits.CardDepositPlan) -> CreatedPayment:
        return await deposits.charge_card(plan, gateway=gateway)

    async def record(
        session: AsyncSession, plan: deposits.CardDepositPlan, payment: CreatedPayment
    ) -> DepositOut:
        created = await deposits.record_card_deposit(session, plan, payment, gateway=gateway)
        return await deposit_out(session, created)

    return await idempotency.respond_in_steps(
        key=idempotency_key,
        scope=scope,
        body=body,
        status_code=201,
        prepare=prepare,
        call=charge,
        record=record,
    )


def _check_source_fields(body: DepositCreate) -> None:
    """Each source has its own fields: a bank deposit names its bank, a card deposit may
    name its card."""
    if body.source == "bank" and body.bank_name is None:
        raise InvalidInput("A bank deposit needs bank_name.", param="bank_name")
    if body.source == "bank" and body.card_id is not None:
        raise InvalidInput("card_id is for card deposits only.", param="card_id")
    if body.source == "card" and body.bank_name is not None:
        raise InvalidInput("bank_name is for bank deposits only.", param="bank_name")


@router.get(
    "/deposits",
    summary="Your deposits, newest first",
    responses=error_responses(401, 422),
)
async def list_deposits(
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[DepositStatus | None, Query(description="Only this status.")] = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[DepositOut]:
    page = await deposits.list_deposits(
        session, user_id=user.user.id, status=status, starting_after=starting_after, limit=limit
    )
    return ListResponse(data=await deposit_views(session, page.items), has_more=page.has_more)


@router.get(
    "/deposits/{deposit_id}",
    summary="One of your deposits",
    responses=error_responses(401, 404),
)
async def get_deposit(deposit_id: DepositId, session: SessionDep, user: CurrentUser) -> DepositOut:
    deposit = await deposits.get_deposit(session, user_id=user.user.id, deposit_id=deposit_id)
    return await deposit_out(session, deposit)
