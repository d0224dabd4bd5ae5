"""Stripe Connect onboarding of an organisation (admins, signed in)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter

from amply.kit.dependencies import UnitOfWorkDep
from amply.kit.error_responses import PROVIDER_ERRORS, error_responses
from amply.kit.errors import ErrorCode
from amply.organisations.access_responses import ORG_ADMIN_ERRORS
from amply.organisations.dependencies import OrgAccess, OrgMember, OrgMemberOrApiKey
from amply.payments import connect
from amply.payments.dependencies import GatewayDep
from amply.payments.schemas import (
    AccountLinkCreate,
    AccountLinkOut,
    StripeAccountOut,
    account_out,
)

router = APIRouter(
    prefix="/organisations/{organisation_id}/stripe-account", tags=["stripe onboarding"]
)

Viewer = Annotated[OrgAccess, OrgMemberOrApiKey("viewer", "read")]
Admin = Annotated[OrgAccess, OrgMember("admin")]


@router.get(
    "",
    summary="The organisation's Stripe account and whether it accepts donations",
    responses=error_responses(401, 403, 404),
)
async def get_stripe_account(access: Viewer, gateway: GatewayDep) -> StripeAccountOut:
    return account_out(connect.status_of(access.organisation, gateway=gateway))


@router.post(
    "",
    summary="Create the organisation's connected Stripe account (idempotent)",
    description="Returns the account the organisation has; creates one if it has none, or if "
    "its account no longer counts (`reconnect_reason`: disconnected in Stripe, or made in the "
    "other mode). In sandbox mode the account is ready to accept donations at once.",
    responses=error_responses(*ORG_ADMIN_ERRORS, *PROVIDER_ERRORS),
)
async def create_stripe_account(
    access: Admin, unit: UnitOfWorkDep, gateway: GatewayDep
) -> StripeAccountOut:
    account = await connect.create_account(
        unit, organisation=access.organisation, gateway=gateway, actor=access.actor
    )
    return account_out(account)


@router.post(
    "/refresh",
    summary="Ask Stripe for the account's status now",
    responses=error_responses(
        *ORG_ADMIN_ERRORS, ErrorCode.STRIPE_ACCOUNT_MISSING, *PROVIDER_ERRORS
    ),
)
async def refresh_stripe_account(
    access: Admin, unit: UnitOfWorkDep, gateway: GatewayDep
) -> StripeAccountOut:
    account = await connect.refresh_account(unit, organisation=access.organisation, gateway=gateway)
    return account_out(account)


@router.post(
    "/links",
    summary="A link to Stripe's onboarding, or to update the account's details, for an admin",
    responses=error_responses(
        *ORG_ADMIN_ERRORS, 422, ErrorCode.STRIPE_ACCOUNT_MISSING, *PROVIDER_ERRORS
    ),
)
async def create_onboarding_link(
    body: AccountLinkCreate, access: Admin, unit: UnitOfWorkDep, gateway: GatewayDep
) -> AccountLinkOut:
    link = await connect.create_onboarding_link(
        unit,
        organisation=access.organisation,
        gateway=gateway,
        refresh_url=str(body.refresh_url),
        return_url=str(body.return_url),
    )
    expires = datetime.fromtimestamp(link.expires_at, UTC) if link.expires_at else None
    return AccountLinkOut(url=link.url, expires_at=expires, purpose=link.purpose)
