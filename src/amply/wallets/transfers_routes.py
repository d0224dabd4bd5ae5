"""Transfers between wallets, with risk rules: send, confirm or cancel a held transfer, read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse

from amply.kit.dependencies import (
    IdempotencyKeyHeader,
    RequiredIdempotencyKey,
    SessionDep,
    SettingsDep,
)
from amply.kit.error_responses import IDEMPOTENCY_ERRORS, error_responses
from amply.kit.errors import ErrorCode
from amply.kit.idempotency import IdempotentRequest
from amply.kit.idempotent_requests import IdempotencyDep
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.models import Transaction
from amply.wallets import transfers
from amply.wallets.dependencies import CurrentWallet
from amply.wallets.schemas import TransferCreate, TransferOut, TransferStatus
from amply.wallets.views import Views, transfer_view

router = APIRouter(tags=["transfers"])

TransferId = Annotated[str, Path(max_length=64, description="The transfer's id (`txn_…`).")]
# Confirming or cancelling a transfer held for confirmation.
HELD_TRANSFER_ERRORS: Final[tuple[int | ErrorCode, ...]] = (
    400,
    401,
    403,
    *IDEMPOTENCY_ERRORS,
    ErrorCode.TRANSFER_NOT_FOUND,
    ErrorCode.TRANSFER_NOT_PENDING,
    ErrorCode.TRANSFER_EXPIRED,
)


@router.post(
    "/transfers",
    status_code=status.HTTP_201_CREATED,
    response_model=TransferOut,
    summary="Send money to another user",
    description="The transfer completes at once, or, when a risk rule matches (a large "
    "amount, a first transfer to this recipient, rapid transfers), waits for your "
    "confirmation with its amount held; a hard limit (the daily cap) blocks it. The response "
    "lists every rule that matched, each with its reason. Requires an `Idempotency-Key`.",
    responses=error_responses(
        400,
        401,
        403,
        422,
        *IDEMPOTENCY_ERRORS,
        ErrorCode.USER_NOT_FOUND,
        ErrorCode.WALLET_RESTRICTED,
        ErrorCode.SELF_TRANSFER,
        ErrorCode.CURRENCY_MISMATCH,
        ErrorCode.INSUFFICIENT_FUNDS,
    ),
)
async def create_transfer(
    body: TransferCreate,
    sender: CurrentWallet,
    session: SessionDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    async def send(_: IdempotentRequest | None) -> TransferOut:
        transfer = await transfers.create_transfer(
            session,
            sender=sender,
            recipient_username=body.recipient,
            amount=body.amount,
            currency=body.currency,
            description=body.description,
            settings=settings,
        )
        return await transfer_view(session, viewer_wallet_id=sender.id, item=transfer)

    return await idempotency.respond(
        key=idempotency_key, scope=f"user:{sender.user_id}", body=body, status_code=201, run=send
    )


async def _transition(
    change: Callable[..., Awaitable[Transaction]],
    *,
    transfer_id: str,
    sender: CurrentWallet,
    session: SessionDep,
    idempotency: IdempotencyDep,
    idempotency_key: str | None,
) -> JSONResponse:
    async def run(_: IdempotentRequest | None) -> TransferOut:
        transfer = await change(session, sender=sender, transfer_id=transfer_id)
        return await transfer_view(session, viewer_wallet_id=sender.id, item=transfer)

    return await idempotency.respond(
        key=idempotency_key, scope=f"user:{sender.user_id}", body=None, status_code=200, run=run
    )


@router.post(
    "/transfers/{transfer_id}/confirm",
    response_model=TransferOut,
    summary="Confirm a transfer awaiting confirmation: the money moves",
    description="Checked again against your available balance (the transfer's own hold "
    "counts as available). 409 if it is not awaiting confirmation, or its hold expired.",
    responses=error_responses(
        *HELD_TRANSFER_ERRORS, 422, ErrorCode.WALLET_RESTRICTED, ErrorCode.INSUFFICIENT_FUNDS
    ),
)
async def confirm_transfer(
    transfer_id: TransferId,
    sender: CurrentWallet,
    session: SessionDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    return await _transition(
        transfers.confirm,
        transfer_id=transfer_id,
        sender=sender,
        session=session,
        idempotency=idempotency,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/transfers/{transfer_id}/cancel",
    response_model=TransferOut,
    summary="Cancel a transfer awaiting confirmation: its hold is released",
    responses=error_responses(*HELD_TRANSFER_ERRORS),
)
async def cancel_transfer(
    transfer_id: TransferId,
    sender: CurrentWallet,
    session: SessionDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    return await _transition(
        transfers.cancel,
        transfer_id=transfer_id,
        sender=sender,
        session=session,
        idempotency=idempotency,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/transfers/{transfer_id}",
    summary="A transfer you sent, or a completed one you received",
    responses=error_responses(401, ErrorCode.TRANSFER_NOT_FOUND),
)
async def get_transfer(
    transfer_id: TransferId, wallet: CurrentWallet, session: SessionDep
) -> TransferOut:
    transfer = await transfers.visible_to(session, wallet=wallet, transfer_id=transfer_id)
    return await transfer_view(session, viewer_wallet_id=wallet.id, item=transfer)


@router.get(
    "/transfers",
    summary="Your transfers, newest first: sent (any status) and received (completed)",
    responses=error_responses(401, 422),
)
async def list_transfers(
    wallet: CurrentWallet,
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
    transfer_status: Annotated[
        TransferStatus | None, Query(alias="status", description="Only this status.")
    ] = None,
) -> ListResponse[TransferOut]:
    page = await transfers.list_transfers(
        session, wallet=wallet, status=transfer_status, starting_after=starting_after, limit=limit
    )
    views = await Views.load(session, viewer_wallet_id=wallet.id, items=page.items)
    return ListResponse.of(page, views.transfer)
