"""Access to one organisation: ``OrgMember(role)``, ``OrgApiKey(scope)`` and both."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, Path
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth.dependencies import ApiKeyCaller, Caller, CallerDep, SignedIn, require_caller
from amply.auth.security_events import Actor
from amply.kit.dependencies import SessionDep
from amply.kit.errors import NotFound, PermissionDenied
from amply.models import Organisation
from amply.organisations import service as organisations
from amply.organisations.service import Role


@dataclass(frozen=True)
class OrgAccess:
    """A caller acting on one organisation, with the role (members) or scope (keys) it has."""

    organisation: Organisation
    caller: Caller
    role: Role | None = None

    @property
    def actor(self) -> Actor:
        return self.caller.actor


@dataclass(frozen=True)
class MemberAccess(OrgAccess):
    """A signed-in member's access (what ``OrgMember(role)`` gives)."""

    caller: SignedIn
    role: Role


KeyScope = Literal["read", "write"]


def _organisation_access(
    *, role: Role | None, scope: KeyScope | None
) -> Callable[..., Awaitable[OrgAccess]]:
    """A dependency admitting members with at least ``role`` and keys with ``scope``.

    A caller of another organisation, or asking for one that does not exist, gets 404, so
    that organisation ids cannot be probed; a caller of this organisation whose role or
    scope falls short gets 403.
    """

    async def dependency(
        organisation_id: Annotated[str, Path(description="The organisation's id (`org_…`).")],
        caller: CallerDep,
        session: SessionDep,
    ) -> OrgAccess:
        return await authorize_organisation(
            session, caller, organisation_id=organisation_id, role=role, scope=scope
        )

    return dependency


async def authorize_organisation(
    session: AsyncSession,
    caller: Caller | None,
    *,
    organisation_id: str,
    role: Role | None,
    scope: KeyScope | None,
) -> OrgAccess:
    """``caller``'s access to an organisation: a member with ``role``, or a key with ``scope``."""
    caller = require_caller(caller)
    if isinstance(caller, ApiKeyCaller):
        return await _key_access(session, caller, organisation_id=organisation_id, scope=scope)
    membership = await organisations.get_membership(
        session, organisation_id=organisation_id, user_id=caller.user.id
    )
    if membership is None:
        raise _no_such_organisation()
    if role is None:
        raise PermissionDenied("This endpoint is for API keys only.", code="api_key_required")
    if not organisations.role_at_least(membership.role, role):
        raise PermissionDenied(
            f"This needs the {role} role (or higher); you are {membership.role}.",
            code="role_insufficient",
        )
    return MemberAccess(organisation=membership.organisation, caller=caller, role=membership.role)


async def _key_access(
    session: AsyncSession, caller: ApiKeyCaller, *, organisation_id: str, scope: KeyScope | None
) -> OrgAccess:
    key = caller.api_key
    if key.organisation_id != organisation_id:
        raise _no_such_organisation()
    if scope is None:
        raise PermissionDenied(
            "This endpoint needs a signed-in member; API keys cannot use it.",
            code="session_required",
        )
    if scope == "write" and key.read_only:
        raise PermissionDenied("This API key is read-only.", code="api_key_read_only")
    organisation = await organisations.get_organisation(session, organisation_id=organisation_id)
    assert organisation is not None  # a key's organisation always exists (foreign key)
    return OrgAccess(organisation=organisation, caller=caller)


def _no_such_organisation() -> NotFound:
    return NotFound("No such organisation.", param="organisation_id")


def OrgMember(role: Role) -> Any:  # noqa: N802 - reads as a type in route signatures
    """``Annotated[MemberAccess, OrgMember("admin")]``: a member with at least ``role``."""
    return Depends(_organisation_access(role=role, scope=None))


def OrgApiKey(scope: KeyScope) -> Any:  # noqa: N802
    """``Annotated[OrgAccess, OrgApiKey("write")]``: one of the organisation's API keys."""
    return Depends(_organisation_access(role=None, scope=scope))


def OrgMemberOrApiKey(role: Role, scope: KeyScope) -> Any:  # noqa: N802
    """A member with at least ``role``, or an API key with ``scope``."""
    return Depends(_organisation_access(role=role, scope=scope))
