"""An organisation's members and their roles (owners manage them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from amply.kit.dependencies import SessionDep
from amply.kit.error_responses import error_responses
from amply.kit.errors import ErrorCode
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.organisations import service as organisations
from amply.organisations.access_responses import ORG_ADMIN_ERRORS, ORG_MEMBER_ERRORS
from amply.organisations.dependencies import OrgAccess, OrgMember
from amply.organisations.schemas import MemberAdd, MemberOut, MemberUpdate, member_out

router = APIRouter(prefix="/organisations/{organisation_id}/members", tags=["members"])

UserId = Annotated[str, Path(max_length=64, description="The member's user id (`usr_…`).")]


@router.get(
    "",
    summary="The organisation's members",
    responses=error_responses(*ORG_MEMBER_ERRORS, 422),
)
async def list_members(
    access: Annotated[OrgAccess, OrgMember("viewer")],
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[MemberOut]:
    page = await organisations.list_members(
        session, organisation_id=access.organisation.id, limit=limit, starting_after=starting_after
    )
    return ListResponse.of(page, member_out)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Add a user by username or email (owners)",
    responses=error_responses(
        *ORG_ADMIN_ERRORS, 422, ErrorCode.USER_NOT_FOUND, ErrorCode.ALREADY_MEMBER
    ),
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
    responses=error_responses(*ORG_ADMIN_ERRORS, 422, ErrorCode.LAST_OWNER),
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
    responses=error_responses(*ORG_ADMIN_ERRORS, ErrorCode.LAST_OWNER),
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
