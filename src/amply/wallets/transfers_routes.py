"""Transfers between wallets, with risk rules: send, confirm or cancel a held transfer, read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse

from amply.deps import (
    CurrentUser,
    IdempotencyKeyHeader,
    RequiredIdempotencyKey,
    SessionDep,
    SettingsDep,
)
from amply.kit.error_responses import error_responses
from amply.kit.idempotent_requests import idempotent_request, run_idempotently
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.wallets import service as wallets
from amply.wallets import transfers
from amply.wallets.schemas import TransferCreate, TransferOut, TransferStatus
from amply.wallets.views import Views, transfer_view

router = APIRouter(tags=["transfers"])

TransferId = Annotated[str, Path(max_length=64, description="The transfer's id (`txn_…`).")]


@router.post(
    "/transfers",
    status_code=status.HTTP_201_CREATED,
    response_model=TransferOut,
    summary="Send money to another user",
    description="The transfer completes at once, or, when a risk rule matches (a large "
    "amount, a first transfer to this recipient, rapid transfers), waits for your "
    "confirmation with its amount held; a hard limit (the daily cap) blocks it. The response "
    "lists every rule that matched, each with its reason. Requires an `Idempotency-Key`.",
    responses=error_responses(400, 401, 404, 409, 422),
)
async def create_transfer(
    body: TransferCreate,
    request: Request,
    caller: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    async def send() -> TransferOut:
        sender = await wallets.of_user(session, user_id=caller.user.id)
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

    idempotent = idempotent_request(
        key=idempotency_key, scope=f"user:{caller.user.id}", request=request, body=body
    )
    return await run_idempotently(
        session, idempotent=idempotent, settings=settings, status_code=201, run=send
    )


async def _transition(
    *,
    action: str,
    transfer_id: str,
    request: Request,
    caller: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: str | None,
) -> JSONResponse:
    async def run() -> TransferOut:
        sender = await wallets.of_user(session, user_id=caller.user.id)
        change = transfers.confirm if action == "confirm" else transfers.cancel
        transfer = await change(session, sender=sender, transfer_id=transfer_id)
        return await transfer_view(session, viewer_wallet_id=sender.id, item=transfer)

    idempotent = idempotent_request(
        key=idempotency_key, scope=f"user:{caller.user.id}", request=request, body=None
    )
    return await run_idempotently(
        session, idempotent=idempotent, settings=settings, status_code=200, run=run
    )


@router.post(
    "/transfers/{transfer_id}/confirm",
    response_model=TransferOut,
    summary="Confirm a transfer awaiting confirmation: the money moves",
    description="Checked again against your available balance (the transfer's own hold "
    "counts as available). 409 if it is not awaiting confirmation, or its hold expired.",
    responses=error_responses(400, 401, 404, 409, 422),
)
async def confirm_transfer(
    transfer_id: TransferId,
    request: Request,
    caller: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    return await _transition(
        action="confirm",
        transfer_id=transfer_id,
        request=request,
        caller=caller,
        session=session,
        settings=settings,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/transfers/{transfer_id}/cancel",
    response_model=TransferOut,
    summary="Cancel a transfer awaiting confirmation: its hold is released",
    responses=error_responses(400, 401, 404, 409),
)
async def cancel_transfer(
    transfer_id: TransferId,
    request: Request,
    caller: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    return await _transition(
        action="cancel",
        transfer_id=transfer_id,
        request=request,
        caller=caller,
        session=session,
        settings=settings,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/transfers/{transfer_id}",
    summary="A transfer you sent, or a completed one you received",
    responses=error_responses(401, 404),
)
async def get_transfer(
    transfer_id: TransferId, caller: CurrentUser, session: SessionDep
) -> TransferOut:
    wallet = await wallets.of_user(session, user_id=caller.user.id)
    transfer = await transfers.visible_to(session, wallet=wallet, transfer_id=transfer_id)
    return await transfer_view(session, viewer_wallet_id=wallet.id, item=transfer)


@router.get(
    "/transfers",
    summary="Your transfers, newest first: sent (any status) and received (completed)",
    responses=error_responses(401, 422),
)
async def list_transfers(
    caller: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
    transfer_status: Annotated[
        TransferStatus | None, Query(alias="status", description="Only this status.")
    ] = None,
) -> ListResponse[TransferOut]:
    wallet = await wallets.of_user(session, user_id=caller.user.id)
    page = await transfers.list_transfers(
        session, wallet=wallet, status=transfer_status, starting_after=starting_after, limit=limit
    )
    views = await Views.load(session, viewer_wallet_id=wallet.id, items=page.items)
    return ListResponse(data=[views.transfer(item) for item in page.items], has_more=page.has_more)
