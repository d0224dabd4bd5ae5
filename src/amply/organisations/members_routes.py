"""An organisation's members and their roles (owners manage them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from amply.deps import OrgAccess, OrgMember, SessionDep
from amply.kit.error_responses import error_responses
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.models import OrganisationMember
from amply.organisations import service as organisations
from amply.organisations.schemas import MemberAdd, MemberOut, MemberUpdate

router = APIRouter(prefix="/organisations/{organisation_id}/members", tags=["members"])

UserId = Annotated[str, Path(max_length=64, description="The member's user id (`usr_…`).")]


def member_out(member: OrganisationMember) -> MemberOut:
    return MemberOut(
        user_id=member.user_id,
        username=member.user.username,
        name=member.user.name,
        role=member.role,
        joined_at=member.created_at,
    )


@router.get("", summary="The organisation's members", responses=error_responses(401, 403, 404))
async def list_members(
    access: Annotated[OrgAccess, OrgMember("viewer")],
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[MemberOut]:
    page = await organisations.list_members(
        session, organisation_id=access.organisation.id, limit=limit, starting_after=starting_after
    )
    return ListResponse(data=[member_out(m) for m in page.items], has_more=page.has_more)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a user by username or email (owners)",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def add_member(
    body: MemberAdd, access: Annotated[OrgAccess, OrgMember("owner")], session: SessionDep
) -> MemberOut:
    member = await organisations.add_member(
        session,
        organisation_id=access.organisation.id,
        username=body.username,
        email=body.email,
        role=body.role,
        actor=access.actor,
    )
    return member_out(member)


@router.patch(
    "/{user_id}",
    summary="Change a member's role (owners); the last owner cannot be demoted",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def change_role(
    user_id: UserId,
    body: MemberUpdate,
    access: Annotated[OrgAccess, OrgMember("owner")],
    session: SessionDep,
) -> MemberOut:
    member = await organisations.change_role(
        session,
        organisation_id=access.organisation.id,
        user_id=user_id,
        role=body.role,
        actor=access.actor,
    )
    return member_out(member)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a member (owners), or leave (anyone); the last owner cannot leave",
    responses=error_responses(401, 403, 404, 409),
)
async def remove_member(
    user_id: UserId, access: Annotated[OrgAccess, OrgMember("viewer")], session: SessionDep
) -> None:
    assert access.role is not None
    await organisations.remove_member(
        session,
        organisation_id=access.organisation.id,
        user_id=user_id,
        actor_role=access.role,
        actor=access.actor,
    )
