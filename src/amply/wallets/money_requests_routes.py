"""Money requests: ask a user for money; the payer pays (a transfer) or declines; the
requester cancels."""

from __future__ import annotations

from typing import Annotated, Final, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.dependencies import IdempotencyKeyHeader, SessionDep, SettingsDep
from amply.kit.error_responses import IDEMPOTENCY_ERRORS, error_responses
from amply.kit.errors import ErrorCode, InvalidInput
from amply.kit.idempotency import IdempotentRequest
from amply.kit.idempotent_requests import IdempotencyDep
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.models import MoneyRequest, Wallet
from amply.wallets import money_requests
from amply.wallets.dependencies import CurrentWallet
from amply.wallets.schemas import (
    MoneyRequestCreate,
    MoneyRequestOut,
    MoneyRequestPaid,
    RequestStatus,
)
from amply.wallets.views import Views, request_views

router = APIRouter(tags=["requests"])

RequestId = Annotated[str, Path(max_length=64, description="The request's id (`req_…`).")]
# Paying, declining or cancelling a request: it must be visible to you and still payable.
PAYABLE_REQUEST_ERRORS: Final = (
    ErrorCode.REQUEST_NOT_FOUND,
    ErrorCode.REQUEST_NOT_PENDING,
    ErrorCode.REQUEST_EXPIRED,
    ErrorCode.REQUEST_PAYMENT_IN_PROGRESS,
)
ANSWER_ERRORS: Final = error_responses(401, 403, *PAYABLE_REQUEST_ERRORS)


async def _request_out(
    session: AsyncSession, *, viewer: Wallet, item: MoneyRequest
) -> MoneyRequestOut:
    [out] = await request_views(session, viewer_wallet_id=viewer.id, items=[item])
    return out


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=MoneyRequestOut,
    summary="Ask another user for money",
    description="The payer sees it among their incoming requests until it is paid, "
    "declined, cancelled or expires. An `Idempotency-Key` makes a retry create one request.",
    responses=error_responses(
        400,
        401,
        403,
        422,
        *IDEMPOTENCY_ERRORS,
        ErrorCode.USER_NOT_FOUND,
        ErrorCode.SELF_REQUEST,
        ErrorCode.CURRENCY_MISMATCH,
    ),
)
async def create_request(
    body: MoneyRequestCreate,
    requester: CurrentWallet,
    session: SessionDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    async def run(_: IdempotentRequest | None) -> MoneyRequestOut:
        created = await money_requests.create_request(
            session,
            requester=requester,
            payer_username=body.payer,
            amount=body.amount,
            currency=body.currency,
            description=body.description,
            settings=settings,
        )
        return await _request_out(session, viewer=requester, item=created)

    return await idempotency.respond(
        key=idempotency_key, scope=f"user:{requester.user_id}", body=body, status_code=201, run=run
    )


@router.get(
    "/requests",
    summary="Requests you received (`role=payer`), made (`role=requester`), or both",
    responses=error_responses(401, 422),
)
async def list_requests(
    wallet: CurrentWallet,
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
    role: Annotated[
        Literal["payer", "requester"] | None,
        Query(description="`payer`: incoming requests; `requester`: the ones you made."),
    ] = None,
    request_status: Annotated[
        RequestStatus | None, Query(alias="status", description="Only this status.")
    ] = None,
) -> ListResponse[MoneyRequestOut]:
    page = await money_requests.list_requests(
        session,
        wallet=wallet,
        role=role,
        status=request_status,
        starting_after=starting_after,
        limit=limit,
    )
    data = await request_views(session, viewer_wallet_id=wallet.id, items=page.items)
    return ListResponse(data=data, has_more=page.has_more)


@router.get(
    "/requests/{request_id}",
    summary="A request you made or were asked to pay",
    responses=error_responses(401, ErrorCode.REQUEST_NOT_FOUND),
)
async def get_request(
    request_id: RequestId, wallet: CurrentWallet, session: SessionDep
) -> MoneyRequestOut:
    found = await money_requests.visible_to(session, wallet=wallet, request_id=request_id)
    return await _request_out(session, viewer=wallet, item=found)


@router.post(
    "/requests/{request_id}/pay",
    status_code=status.HTTP_201_CREATED,
    response_model=MoneyRequestPaid,
    summary="Pay a request you received: a transfer under the usual risk rules",
    description="The transfer completes at once (the request is `paid`), waits for your "
    "confirmation (`POST /v1/transfers/{id}/confirm`; the request is paid when you "
    "confirm), or is blocked by a hard limit (the request stays payable). Paying twice pays "
    "once. Requires an `Idempotency-Key`.",
    responses=error_responses(
        400,
        401,
        403,
        422,
        *IDEMPOTENCY_ERRORS,
        *PAYABLE_REQUEST_ERRORS,
        ErrorCode.WALLET_RESTRICTED,
        ErrorCode.CURRENCY_MISMATCH,
        ErrorCode.INSUFFICIENT_FUNDS,
    ),
)
async def pay_request(
    request_id: RequestId,
    payer: CurrentWallet,
    session: SessionDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    # Someone else's request is missing (404) before anything is said about the key.
    await money_requests.visible_to(session, wallet=payer, request_id=request_id)
    if idempotency_key is None:
        raise InvalidInput(
            "The Idempotency-Key header is required: paying moves money.",
            param="Idempotency-Key",
        )

    async def run(_: IdempotentRequest | None) -> MoneyRequestPaid:
        paid, transfer = await money_requests.pay(
            session, payer=payer, request_id=request_id, settings=settings
        )
        out = await _request_out(session, viewer=payer, item=paid)
        views = await Views.load(session, viewer_wallet_id=payer.id, items=[transfer])
        return MoneyRequestPaid(request=out, transfer=views.transfer(transfer))

    return await idempotency.respond(
        key=idempotency_key, scope=f"user:{payer.user_id}", body=None, status_code=201, run=run
    )


@router.post(
    "/requests/{request_id}/decline",
    summary="Decline a request you received",
    responses=ANSWER_ERRORS,
)
async def decline_request(
    request_id: RequestId, payer: CurrentWallet, session: SessionDep
) -> MoneyRequestOut:
    declined = await money_requests.decline(session, payer=payer, request_id=request_id)
    return await _request_out(session, viewer=payer, item=declined)


@router.post(
    "/requests/{request_id}/cancel",
    summary="Cancel a request you made",
    responses=ANSWER_ERRORS,
)
async def cancel_request(
    request_id: RequestId, requester: CurrentWallet, session: SessionDep
) -> MoneyRequestOut:
    cancelled = await money_requests.cancel(session, requester=requester, request_id=request_id)
    return await _request_out(session, viewer=requester, item=cancelled)
