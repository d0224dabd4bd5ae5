"""Withdrawals from the signed-in user's wallet to their bank, and their sandbox settlement."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.responses import JSONResponse

from amply.kit.dependencies import RequiredIdempotencyKey, SessionDep, SettingsDep
from amply.kit.error_responses import IDEMPOTENCY_ERRORS, error_responses
from amply.kit.errors import ErrorCode, NotFound
from amply.kit.idempotency import IdempotentRequest
from amply.kit.idempotent_requests import IdempotencyDep
from amply.kit.money import MAX_AMOUNT
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.kit.settings import Settings
from amply.models.enums import WithdrawalSpeed
from amply.payments.payouts import PayoutProvider, payouts_for
from amply.wallets import withdrawals
from amply.wallets.dependencies import CurrentWallet
from amply.wallets.withdrawals_schemas import (
    SandboxPayoutFailure,
    Speed,
    WithdrawalCreate,
    WithdrawalFeeOut,
    WithdrawalOut,
    WithdrawalStatus,
    withdrawal_out,
)

router = APIRouter(tags=["withdrawals"])

WithdrawalId = Annotated[str, Path(max_length=64, description="The withdrawal's id (`txn_…`).")]


def get_payouts(settings: SettingsDep) -> PayoutProvider:
    """The payout provider: the sandbox without Stripe keys, else one that refuses (503)."""
    return payouts_for(settings)


PayoutsDep = Annotated[PayoutProvider, Depends(get_payouts)]


@router.get(
    "/withdrawals/fee",
    summary="What a withdrawal would cost: its fee and the total taken from the wallet",
    responses=error_responses(401, 422),
)
async def quote_fee(
    wallet: CurrentWallet,
    session: SessionDep,
    settings: SettingsDep,
    amount: Annotated[
        int, Query(gt=0, le=MAX_AMOUNT, description="The amount to withdraw, in minor units.")
    ],
    speed: Annotated[
        Speed, Query(description="`standard` (free) or `instant`.")
    ] = WithdrawalSpeed.STANDARD,
) -> WithdrawalFeeOut:
    fee = withdrawals.fee_of(amount, speed=speed, settings=settings)
    return WithdrawalFeeOut(
        amount=amount,
        speed=speed,
        currency=wallet.currency,
        fee=fee,
        total=amount + fee,
        fee_basis_points=settings.instant_withdrawal_fee_basis_points if speed == "instant" else 0,
    )


@router.post(
    "/withdrawals",
    status_code=status.HTTP_201_CREATED,
    response_model=WithdrawalOut,
    summary="Withdraw money from your wallet to your bank",
    description="Debits `amount + fee` from the wallet at once (the fee is 0 for `standard`) "
    "and starts a payout; the withdrawal is `pending` until the payout is `paid` or `failed` "
    "(a failed payout returns the money). Requires an `Idempotency-Key`: a retry returns the "
    "first response and moves nothing twice. In sandbox mode, settle it with "
    "`POST /v1/sandbox/withdrawals/{id}/paid` or `…/fail`.",
    responses=error_responses(
        400,
        401,
        403,
        422,
        *IDEMPOTENCY_ERRORS,
        ErrorCode.WALLET_RESTRICTED,
        ErrorCode.CURRENCY_MISMATCH,
        ErrorCode.INSUFFICIENT_FUNDS,
        ErrorCode.PAYOUTS_UNAVAILABLE,
    ),
)
async def create_withdrawal(
    body: WithdrawalCreate,
    wallet: CurrentWallet,
    session: SessionDep,
    settings: SettingsDep,
    payouts: PayoutsDep,
    idempotency: IdempotencyDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    async def withdraw(idempotent: IdempotentRequest | None) -> WithdrawalOut:
        withdrawal = await withdrawals.request_withdrawal(
            session,
            wallet=wallet,
            amount=body.amount,
            speed=body.speed,
            bank_name=body.bank_name,
            currency=body.currency,
            settings=settings,
            provider=payouts,
            idempotency=idempotent,
        )
        return withdrawal_out(withdrawal)

    return await idempotency.respond(
        key=idempotency_key,
        scope=f"user:{wallet.user_id}",
        body=body,
        status_code=201,
        run=withdraw,
    )


@router.get(
    "/withdrawals",
    summary="Your withdrawals, newest first",
    responses=error_responses(401, 422),
)
async def list_withdrawals(
    wallet: CurrentWallet,
    session: SessionDep,
    status: Annotated[WithdrawalStatus | None, Query(description="Only this status.")] = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[WithdrawalOut]:
    page = await withdrawals.list_withdrawals(
        session,
        wallet_id=wallet.id,
        status=status,
        starting_after=starting_after,
        limit=limit,
    )
    return ListResponse.of(page, withdrawal_out)


@router.get(
    "/withdrawals/{withdrawal_id}",
    summary="One of your withdrawals",
    responses=error_responses(401, 404, 422),
)
async def get_withdrawal(
    withdrawal_id: WithdrawalId, wallet: CurrentWallet, session: SessionDep
) -> WithdrawalOut:
    withdrawal = await withdrawals.get_withdrawal(
        session, withdrawal_id=withdrawal_id, wallet_id=wallet.id
    )
    return withdrawal_out(withdrawal)


# --- Sandbox settlement ---------------------------------------------------------------------

SANDBOX_ERRORS = error_responses(
    401,
    403,
    422,
    ErrorCode.SANDBOX_DISABLED,
    ErrorCode.RESOURCE_MISSING,
    ErrorCode.WITHDRAWAL_NOT_PENDING,
    ErrorCode.WITHDRAWAL_PROVIDER_MISMATCH,
)


def _require_sandbox(settings: Settings) -> None:
    if not settings.sandbox_mode:
        raise NotFound(
            "The sandbox is off: this server has Stripe keys.", code=ErrorCode.SANDBOX_DISABLED
        )


@router.post(
    "/sandbox/withdrawals/{withdrawal_id}/paid",
    tags=["sandbox"],
    summary="Sandbox: your pending withdrawal's payout reaches the bank",
    description="Only without Stripe keys, and only for your own withdrawal. `pending` → "
    "`paid`; from any other status 409 `withdrawal_not_pending`, and nothing changes.",
    responses=SANDBOX_ERRORS,
)
async def sandbox_paid(
    withdrawal_id: WithdrawalId, wallet: CurrentWallet, session: SessionDep, settings: SettingsDep
) -> WithdrawalOut:
    _require_sandbox(settings)
    withdrawal = await withdrawals.mark_paid(
        session, withdrawal_id=withdrawal_id, wallet_id=wallet.id, provider="sandbox"
    )
    return withdrawal_out(withdrawal)


@router.post(
    "/sandbox/withdrawals/{withdrawal_id}/fail",
    tags=["sandbox"],
    summary="Sandbox: your pending withdrawal's payout fails, and the money comes back",
    description="Only without Stripe keys, and only for your own withdrawal. `pending` → "
    "`failed`, with a compensating journal that returns the amount and the fee to the "
    "wallet; from any other status 409 `withdrawal_not_pending`, and nothing changes.",
    responses=SANDBOX_ERRORS,
)
async def sandbox_fail(
    withdrawal_id: WithdrawalId,
    wallet: CurrentWallet,
    session: SessionDep,
    settings: SettingsDep,
    body: SandboxPayoutFailure | None = None,
) -> WithdrawalOut:
    _require_sandbox(settings)
    failure = body or SandboxPayoutFailure()
    withdrawal = await withdrawals.mark_failed(
        session,
        withdrawal_id=withdrawal_id,
        wallet_id=wallet.id,
        provider="sandbox",
        failure_code=failure.failure_code,
        failure_message=failure.failure_message
        or "The bank could not process the payout (sandbox).",
    )
    return withdrawal_out(withdrawal)
