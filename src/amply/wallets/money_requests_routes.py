"""Money requests: ask a user for money; the payer pays (a transfer) or declines; the
requester cancels."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse

from amply.deps import (
    CurrentUser,
    IdempotencyKeyHeader,
    SessionDep,
    SettingsDep,
)
from amply.kit.error_responses import error_responses
from amply.kit.errors import InvalidInput
from amply.kit.idempotent_requests import idempotent_request, run_idempotently
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.wallets import money_requests
from amply.wallets import service as wallets
from amply.wallets.schemas import (
    MoneyRequestCreate,
    MoneyRequestOut,
    MoneyRequestPaid,
    RequestStatus,
)
from amply.wallets.views import Views, request_views

router = APIRouter(tags=["requests"])

RequestId = Annotated[str, Path(max_length=64, description="The request's id (`req_…`).")]


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=MoneyRequestOut,
    summary="Ask another user for money",
    description="The payer sees it among their incoming requests until it is paid, "
    "declined, cancelled or expires. An `Idempotency-Key` makes a retry create one request.",
    responses=error_responses(400, 401, 404, 409, 422),
)
async def create_request(
    body: MoneyRequestCreate,
    request: Request,
    caller: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    async def run() -> MoneyRequestOut:
        requester = await wallets.of_user(session, user_id=caller.user.id)
        created = await money_requests.create_request(
            session,
            requester=requester,
            payer_username=body.payer,
            amount=body.amount,
            currency=body.currency,
            description=body.description,
            settings=settings,
        )
        [out] = await request_views(session, viewer_wallet_id=requester.id, items=[created])
        return out

    idempotent = idempotent_request(
        key=idempotency_key, scope=f"user:{caller.user.id}", request=request, body=body
    )
    return await run_idempotently(
        session, idempotent=idempotent, settings=settings, status_code=201, run=run
    )


@router.get(
    "/requests",
    summary="Requests you received (`role=payer`), made (`role=requester`), or both",
    responses=error_responses(401, 422),
)
async def list_requests(
    caller: CurrentUser,
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
    wallet = await wallets.of_user(session, user_id=caller.user.id)
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
    responses=error_responses(401, 404),
)
async def get_request(
    request_id: RequestId, caller: CurrentUser, session: SessionDep
) -> MoneyRequestOut:
    wallet = await wallets.of_user(session, user_id=caller.user.id)
    found = await money_requests.visible_to(session, wallet=wallet, request_id=request_id)
    [out] = await request_views(session, viewer_wallet_id=wallet.id, items=[found])
    return out


@router.post(
    "/requests/{request_id}/pay",
    status_code=status.HTTP_201_CREATED,
    response_model=MoneyRequestPaid,
    summary="Pay a request you received: a transfer under the usual risk rules",
    description="The transfer completes at once (the request is `paid`), waits for your "
    "confirmation (`POST /v1/transfers/{id}/confirm`; the request is paid when you "
    "confirm), or is blocked by a hard limit (the request stays payable). Paying twice pays "
    "once. Requires an `Idempotency-Key`.",
    responses=error_responses(400, 401, 404, 409, 422),
)
async def pay_request(
    request_id: RequestId,
    request: Request,
    caller: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    payer = await wallets.of_user(session, user_id=caller.user.id)
    # Someone else's request is missing (404) before anything is said about the key.
    await money_requests.visible_to(session, wallet=payer, request_id=request_id)
    if idempotency_key is None:
        raise InvalidInput(
            "The Idempotency-Key header is required: paying moves money.",
            param="Idempotency-Key",
        )

    async def run() -> MoneyRequestPaid:
        paid, transfer = await money_requests.pay(
            session, payer=payer, request_id=request_id, settings=settings
        )
        [out] = await request_views(session, viewer_wallet_id=payer.id, items=[paid])
        views = await Views.load(session, viewer_wallet_id=payer.id, items=[transfer])
        return MoneyRequestPaid(request=out, transfer=views.transfer(transfer))

    idempotent = idempotent_request(
        key=idempotency_key, scope=f"user:{caller.user.id}", request=request, body=None
    )
    return await run_idempotently(
        session, idempotent=idempotent, settings=settings, status_code=201, run=run
    )


@router.post(
    "/requests/{request_id}/decline",
    summary="Decline a request you received",
    responses=error_responses(401, 404, 409),
)
async def decline_request(
    request_id: RequestId, caller: CurrentUser, session: SessionDep
) -> MoneyRequestOut:
    payer = await wallets.of_user(session, user_id=caller.user.id)
    declined = await money_requests.decline(session, payer=payer, request_id=request_id)
    [out] = await request_views(session, viewer_wallet_id=payer.id, items=[declined])
    return out


@router.post(
    "/requests/{request_id}/cancel",
    summary="Cancel a request you made",
    responses=error_responses(401, 404, 409),
)
async def cancel_request(
    request_id: RequestId, caller: CurrentUser, session: SessionDep
) -> MoneyRequestOut:
    requester = await wallets.of_user(session, user_id=caller.user.id)
    cancelled = await money_requests.cancel(session, requester=requester, request_id=request_id)
    [out] = await request_views(session, viewer_wallet_id=requester.id, items=[cancelled])
    return out
