"""Organisations: create, list one's own, read and update; their security event log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, status

from amply.auth import security_events
from amply.auth.dependencies import CurrentUser
from amply.auth.schemas import SecurityEventOut
from amply.kit.dependencies import SessionDep
from amply.kit.error_responses import error_responses
from amply.kit.errors import ErrorCode
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.models import OrganisationMember
from amply.organisations import service as organisations
from amply.organisations.access_responses import ORG_ADMIN_ERRORS, ORG_WRITER_ERRORS
from amply.organisations.dependencies import OrgAccess, OrgMember, OrgMemberOrApiKey
from amply.organisations.schemas import (
    MembershipOut,
    OrganisationCreate,
    OrganisationOut,
    OrganisationUpdate,
    Role,
)
from amply.organisations.service import OrganisationDetails

router = APIRouter(prefix="/organisations", tags=["organisations"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an organisation; you become its owner",
    responses=error_responses(401, 403, 422, ErrorCode.SESSION_REQUIRED, ErrorCode.SLUG_TAKEN),
)
async def create_organisation(
    body: OrganisationCreate, caller: CurrentUser, session: SessionDep
) -> MembershipOut:
    organisation = await organisations.create_organisation(
        session,
        owner=caller.user,
        details=OrganisationDetails(
            name=body.name,
            slug=body.slug,
            description=body.description,
            website=str(body.website) if body.website else None,
            country=body.country,
            default_currency=body.default_currency,
        ),
        actor=caller.actor,
    )
    await session.refresh(organisation)
    return MembershipOut(organisation=OrganisationOut.model_validate(organisation), role="owner")


@router.get(
    "",
    summary="The organisations you are a member of",
    responses=error_responses(401),
)
async def list_my_organisations(
    caller: CurrentUser,
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[MembershipOut]:
    page = await organisations.list_memberships(
        session, user=caller.user, limit=limit, starting_after=starting_after
    )
    return ListResponse.of(page, _membership)


def _membership(member: OrganisationMember) -> MembershipOut:
    organisation = OrganisationOut.model_validate(member.organisation)
    return MembershipOut(organisation=organisation, role=_role(member.role))


def _role(value: str) -> Role:
    assert value in ("owner", "admin", "viewer")
    return value  # type: ignore[return-value]


@router.get(
    "/{organisation_id}",
    summary="An organisation (members, or its API keys)",
    responses=error_responses(401, 403, 404),
)
async def get_organisation(
    access: Annotated[OrgAccess, OrgMemberOrApiKey("viewer", "read")],
) -> OrganisationOut:
    return OrganisationOut.model_validate(access.organisation)


@router.patch(
    "/{organisation_id}",
    summary="Update an organisation (admins, or a write API key)",
    responses=error_responses(*ORG_WRITER_ERRORS, 422, ErrorCode.SLUG_TAKEN),
)
async def update_organisation(
    body: OrganisationUpdate,
    access: Annotated[OrgAccess, OrgMemberOrApiKey("admin", "write")],
    session: SessionDep,
) -> OrganisationOut:
    changes: dict[str, object] = body.model_dump(exclude_unset=True)
    if "website" in changes and changes["website"] is not None:
        changes["website"] = str(body.website)
    organisation = await organisations.update_organisation(
        session, organisation=access.organisation, changes=changes, actor=access.actor
    )
    return OrganisationOut.model_validate(organisation)


@router.get(
    "/{organisation_id}/security-events",
    summary="The organisation's security event log (admins), newest first",
    responses=error_responses(*ORG_ADMIN_ERRORS, 422),
)
async def list_security_events(
    access: Annotated[OrgAccess, OrgMember("admin")],
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[SecurityEventOut]:
    page = await security_events.list_for_organisation(
        session, organisation_id=access.organisation.id, limit=limit, starting_after=starting_after
    )
    return ListResponse.of(page, SecurityEventOut.model_validate)
