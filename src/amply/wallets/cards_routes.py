"""The signed-in user's saved cards: added through a SetupIntent, listed, made the default,
removed; and the sandbox's stand-in for confirming a SetupIntent with a card."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from amply.auth.dependencies import CurrentUser
from amply.kit.dependencies import SessionDep, UnitOfWorkDep
from amply.kit.error_responses import PROVIDER_ERRORS, error_responses
from amply.kit.errors import ErrorCode
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.payments.dependencies import GatewayDep
from amply.wallets import cards
from amply.wallets.cards_schemas import (
    CardCreate,
    CardOut,
    SetupIntentOut,
    card_out,
)

router = APIRouter(tags=["cards"])

CardId = Annotated[str, Path(max_length=64, description="The card's id (`card_…`).")]


@router.post(
    "/cards/setup-intents",
    status_code=status.HTTP_201_CREATED,
    summary="Start adding a card: a SetupIntent for your wallet",
    description="Collect the card with Stripe.js (`stripe.confirmCardSetup(client_secret)`), "
    "so that its number goes to Stripe and never to Amply, then save it with "
    "`POST /v1/cards`. In sandbox mode, confirm it with "
    "`POST /v1/sandbox/setup-intents/{setup_intent_id}/succeed` (signed in as yourself).",
    responses=error_responses(401, 403, *PROVIDER_ERRORS),
)
async def create_setup_intent(
    unit: UnitOfWorkDep, user: CurrentUser, gateway: GatewayDep
) -> SetupIntentOut:
    intent = await cards.create_setup_intent(unit, user_id=user.user.id, gateway=gateway)
    return SetupIntentOut(
        setup_intent_id=intent.setup_intent_id,
        client_secret=intent.client_secret,
        publishable_key=gateway.publishable_key,
        provider=gateway.provider,
    )


@router.post(
    "/cards",
    status_code=status.HTTP_201_CREATED,
    summary="Save the card of a SetupIntent that succeeded",
    description="201 with the new card; 200 with the same card if this SetupIntent's card "
    "was saved already (by an earlier call, or by the `setup_intent.succeeded` event). Your "
    "first card becomes your default card.",
    responses={
        200: {"model": CardOut, "description": "The card was saved already."},
        **error_responses(
            401,
            403,
            404,
            422,
            ErrorCode.SETUP_INTENT_NOT_SUCCEEDED,
            ErrorCode.CARD_REMOVED,
            ErrorCode.PAYMENT_METHOD_NOT_CARD,
            *PROVIDER_ERRORS,
        ),
    },
)
async def add_card(
    body: CardCreate,
    response: Response,
    unit: UnitOfWorkDep,
    user: CurrentUser,
    gateway: GatewayDep,
) -> CardOut:
    added = await cards.add_card(
        unit, user_id=user.user.id, setup_intent_id=body.setup_intent_id, gateway=gateway
    )
    if not added.created:
        response.status_code = status.HTTP_200_OK
    return card_out(added.card)


@router.get(
    "/cards",
    summary="Your cards: the default first, then the newest",
    responses=error_responses(401, 422),
)
async def list_cards(
    session: SessionDep,
    user: CurrentUser,
    gateway: GatewayDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[CardOut]:
    page = await cards.list_cards(
        session,
        user_id=user.user.id,
        gateway=gateway,
        starting_after=starting_after,
        limit=limit,
    )
    return ListResponse.of(page, card_out)


@router.get("/cards/{card_id}", summary="One of your cards", responses=error_responses(401, 404))
async def get_card(
    card_id: CardId, session: SessionDep, user: CurrentUser, gateway: GatewayDep
) -> CardOut:
    card = await cards.get_card(session, user_id=user.user.id, card_id=card_id, gateway=gateway)
    return card_out(card)


@router.post(
    "/cards/{card_id}/default",
    summary="Make a card your default card (for deposits that name none)",
    responses=error_responses(401, 403, 404),
)
async def set_default_card(
    card_id: CardId, session: SessionDep, user: CurrentUser, gateway: GatewayDep
) -> CardOut:
    card = await cards.set_default(session, user_id=user.user.id, card_id=card_id, gateway=gateway)
    return card_out(card)


@router.delete(
    "/cards/{card_id}",
    summary="Remove a card",
    description="The card is detached from your Stripe Customer and no longer listed or "
    "usable; deposits made with it keep naming it. If it was your default card, your newest "
    "remaining card becomes the default.",
    responses=error_responses(401, 403, 404, *PROVIDER_ERRORS),
)
async def remove_card(
    card_id: CardId, unit: UnitOfWorkDep, user: CurrentUser, gateway: GatewayDep
) -> CardOut:
    card = await cards.remove_card(unit, user_id=user.user.id, card_id=card_id, gateway=gateway)
    return card_out(card)
