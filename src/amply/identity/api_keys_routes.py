"""An organisation's API keys for integrators (admins manage them, with a session)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from amply.identity import api_keys
from amply.identity.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, api_key_out
from amply.kit.dependencies import SessionDep, SettingsDep
from amply.kit.error_responses import error_responses
from amply.kit.errors import ErrorCode
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.organisations.dependencies import MemberAccess, OrgMember

router = APIRouter(prefix="/organisations/{organisation_id}/api-keys", tags=["api keys"])

Admin = Annotated[MemberAccess, OrgMember("admin")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key; its secret is shown only in this response",
    responses=error_responses(
        401, 403, 404, 422, ErrorCode.ROLE_INSUFFICIENT, ErrorCode.SESSION_REQUIRED
    ),
)
async def create_api_key(
    body: ApiKeyCreate, access: Admin, session: SessionDep, settings: SettingsDep
) -> ApiKeyCreated:
    created = await api_keys.create_api_key(
        session,
        organisation_id=access.organisation.id,
        name=body.name,
        read_only=body.read_only,
        live_mode=settings.live_mode,
        created_by=access.caller.user.id,
        actor=access.actor,
    )
    await session.refresh(created.record)
    return ApiKeyCreated(**api_key_out(created.record).model_dump(), secret=created.secret)


@router.get(
    "",
    summary="The organisation's API keys",
    responses=error_responses(
        401, 403, 404, 422, ErrorCode.ROLE_INSUFFICIENT, ErrorCode.SESSION_REQUIRED
    ),
)
async def list_api_keys(
    access: Admin, session: SessionDep, limit: Limit = 20, starting_after: StartingAfter = None
) -> ListResponse[ApiKeyOut]:
    page = await api_keys.list_api_keys(
        session, organisation_id=access.organisation.id, limit=limit, starting_after=starting_after
    )
    return ListResponse.of(page, api_key_out)


@router.delete(
    "/{key_id}",
    summary="Revoke an API key at once",
    responses=error_responses(
        401, 403, 404, ErrorCode.ROLE_INSUFFICIENT, ErrorCode.SESSION_REQUIRED
    ),
)
async def revoke_api_key(
    key_id: Annotated[str, Path(max_length=64, description="The key's id (`key_…`).")],
    access: Admin,
    session: SessionDep,
) -> ApiKeyOut:
    key = await api_keys.revoke_api_key(
        session, organisation_id=access.organisation.id, key_id=key_id, actor=access.actor
    )
    return api_key_out(key)
