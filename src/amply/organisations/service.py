"""Organisations, their members and roles.

Roles rank owner > admin > viewer. Owners manage members and roles; admins manage the
organisation itself, its API keys and security log (and, later, funds and refunds); viewers
read. Every
organisation keeps at least one owner: the service refuses to remove or demote the last one
under a lock on the organisation's row, and a deferred trigger (migration 0002) backs it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from amply.auth import security_events
from amply.auth.security_events import Actor
from amply.kit.db import constraint_name
from amply.kit.errors import Conflict, NotFound, PermissionDenied
from amply.kit.ids import generate_id
from amply.kit.pagination import Page, keyset_page
from amply.ledger import service as ledger
from amply.models import Organisation, OrganisationMember, User
from amply.models.enums import ChainKind, MemberRole, SecurityEventType

# The enum is MemberRole; callers in other packages still pass these strings (issue 19).
Role = MemberRole

ROLE_RANK: dict[str, int] = {"viewer": 0, "admin": 1, "owner": 2}


def role_at_least(role: str, minimum: Role) -> bool:
    return ROLE_RANK[role] >= ROLE_RANK[minimum]


@dataclass(frozen=True)
class OrganisationDetails:
    """The editable fields of an organisation, already validated."""

    name: str
    slug: str
    description: str
    website: str | None
    country: str
    default_currency: str


async def create_organisation(
    session: AsyncSession, *, owner: User, details: OrganisationDetails, actor: Actor
) -> Organisation:
    """Create an organisation with ``owner`` as its owner, and its ledger chain."""
    await _raise_if_slug_taken(session, slug=details.slug)
    organisation = Organisation(id=generate_id("org"), **details.__dict__)
    session.add(organisation)
    await _flush_unique_slug(session)
    session.add(OrganisationMember(organisation_id=organisation.id, user_id=owner.id, role="owner"))
    await session.flush()
    await ledger.create_chain(session, chain_id=organisation.id, kind=ChainKind.ORGANISATION)
    await security_events.record_by(
        session,
        event_type=SecurityEventType.ORGANISATION_CREATED,
        actor=actor,
        organisation_id=organisation.id,
    )
    return organisation


async def _raise_if_slug_taken(
    session: AsyncSession, *, slug: str, exclude: str | None = None
) -> None:
    statement = select(Organisation.id).where(Organisation.slug == slug)
    if exclude is not None:
        statement = statement.where(Organisation.id != exclude)
    if await session.scalar(statement) is not None:
        raise _slug_taken()


def _slug_taken() -> Conflict:
    return Conflict("That slug is taken by another organisation.", code="slug_taken", param="slug")


async def _flush_unique_slug(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as error:  # a concurrent request took the slug after our check
        if constraint_name(error) != "organisations_slug_key":
            raise
        raise _slug_taken() from None


async def update_organisation(
    session: AsyncSession, *, organisation: Organisation, changes: dict[str, object], actor: Actor
) -> Organisation:
    """Apply the given field changes (already validated) to ``organisation``."""
    if "slug" in changes:
        await _raise_if_slug_taken(session, slug=str(changes["slug"]), exclude=organisation.id)
    changed = sorted(
        field for field, value in changes.items() if getattr(organisation, field) != value
    )
    for field in changed:
        setattr(organisation, field, changes[field])
    if changed:
        organisation.updated_at = datetime.now(UTC)
        await _flush_unique_slug(session)
        await security_events.record_by(
            session,
            event_type=SecurityEventType.ORGANISATION_UPDATED,
            actor=actor,
            organisation_id=organisation.id,
            details={"fields": changed},
        )
    return organisation


async def get_organisation(session: AsyncSession, *, organisation_id: str) -> Organisation | None:
    return await session.get(Organisation, organisation_id)


async def require_organisation(session: AsyncSession, *, organisation_id: str) -> Organisation:
    """The organisation, or 404."""
    organisation = await get_organisation(session, organisation_id=organisation_id)
    if organisation is None:
        raise NotFound("No such organisation.", param="organisation_id")
    return organisation


async def get_membership(
    session: AsyncSession, *, organisation_id: str, user_id: str
) -> OrganisationMember | None:
    return await session.scalar(
        select(OrganisationMember)
        .options(joinedload(OrganisationMember.organisation))
        .where(
            OrganisationMember.organisation_id == organisation_id,
            OrganisationMember.user_id == user_id,
        )
    )


async def list_memberships(
    session: AsyncSession, *, user: User, limit: int, starting_after: str | None
) -> Page[OrganisationMember]:
    """The organisations ``user`` belongs to, oldest membership first."""
    statement = (
        select(OrganisationMember)
        .options(joinedload(OrganisationMember.organisation))
        .where(OrganisationMember.user_id == user.id)
    )
    return await keyset_page(
        session,
        statement,
        key=(OrganisationMember.created_at, OrganisationMember.organisation_id),
        id_column=OrganisationMember.organisation_id,
        starting_after=starting_after,
        limit=limit,
    )


async def list_members(
    session: AsyncSession, *, organisation_id: str, limit: int, starting_after: str | None
) -> Page[OrganisationMember]:
    """An organisation's members, in the order they joined."""
    statement = (
        select(OrganisationMember)
        .options(joinedload(OrganisationMember.user))
        .where(OrganisationMember.organisation_id == organisation_id)
    )
    return await keyset_page(
        session,
        statement,
        key=(OrganisationMember.created_at, OrganisationMember.user_id),
        id_column=OrganisationMember.user_id,
        starting_after=starting_after,
        limit=limit,
    )


async def lock_organisation(session: AsyncSession, *, organisation_id: str) -> None:
    """Lock the organisation's row until the transaction ends.

    Serialises member changes (so "is this the last owner?" stays true until the change
    commits) and the creation of its Stripe account.
    """
    await session.execute(
        select(Organisation.id).where(Organisation.id == organisation_id).with_for_update()
    )


async def _member(
    session: AsyncSession, *, organisation_id: str, user_id: str
) -> OrganisationMember:
    member = await session.scalar(
        select(OrganisationMember)
        .options(joinedload(OrganisationMember.user))
        .where(
            OrganisationMember.organisation_id == organisation_id,
            OrganisationMember.user_id == user_id,
        )
    )
    if member is None:
        raise NotFound("No such member of this organisation.", param="user_id")
    return member


async def _refuse_if_last_owner(
    session: AsyncSession, *, member: OrganisationMember, message: str
) -> None:
    if member.role != "owner":
        return
    owners = await session.scalar(
        select(func.count())
        .select_from(OrganisationMember)
        .where(
            OrganisationMember.organisation_id == member.organisation_id,
            OrganisationMember.role == "owner",
        )
    )
    if owners == 1:
        raise Conflict(message, code="last_owner", param="user_id")


async def add_member(
    session: AsyncSession,
    *,
    organisation_id: str,
    username: str | None,
    email: str | None,
    role: Role,
    actor: Actor,
) -> OrganisationMember:
    """Add an existing user, found by username or email, with ``role``."""
    await lock_organisation(session, organisation_id=organisation_id)
    conditions = []
    if username is not None:
        conditions.append(func.lower(User.username) == func.lower(username))
    if email is not None:
        conditions.append(func.lower(User.email) == func.lower(email))
    user = await session.scalar(select(User).where(or_(*conditions)))
    if user is None:
        raise NotFound(
            "No user has that username or email.", param="username" if username else "email"
        )
    if await session.get(OrganisationMember, (organisation_id, user.id)) is not None:
        raise Conflict("That user is already a member.", code="already_member")
    member = OrganisationMember(organisation_id=organisation_id, user_id=user.id, role=role)
    session.add(member)
    await session.flush()
    await security_events.record_by(
        session,
        event_type=SecurityEventType.MEMBER_ADDED,
        actor=actor,
        organisation_id=organisation_id,
        details={"member_user_id": user.id, "role": role},
    )
    return await _member(session, organisation_id=organisation_id, user_id=user.id)


async def change_role(
    session: AsyncSession, *, organisation_id: str, user_id: str, role: Role, actor: Actor
) -> OrganisationMember:
    await lock_organisation(session, organisation_id=organisation_id)
    member = await _member(session, organisation_id=organisation_id, user_id=user_id)
    if member.role == role:
        return member
    if role != "owner":
        await _refuse_if_last_owner(
            session,
            member=member,
            message="The last owner cannot be demoted; make another owner first.",
        )
    previous, member.role = member.role, MemberRole(role)
    member.updated_at = datetime.now(UTC)
    await session.flush()
    await security_events.record_by(
        session,
        event_type=SecurityEventType.MEMBER_ROLE_CHANGED,
        actor=actor,
        organisation_id=organisation_id,
        details={"member_user_id": user_id, "role": role, "previous_role": previous},
    )
    return member


async def remove_member(
    session: AsyncSession, *, organisation_id: str, user_id: str, actor_role: str, actor: Actor
) -> None:
    """Remove a member: owners may remove anyone, every member may leave."""
    if actor_role != "owner" and actor.user_id != user_id:
        raise PermissionDenied("Only owners can remove other members.", code="role_insufficient")
    await lock_organisation(session, organisation_id=organisation_id)
    member = await _member(session, organisation_id=organisation_id, user_id=user_id)
    await _refuse_if_last_owner(
        session, member=member, message="The last owner cannot leave; make another owner first."
    )
    await session.delete(member)
    await session.flush()
    await security_events.record_by(
        session,
        event_type=SecurityEventType.MEMBER_REMOVED,
        actor=actor,
        organisation_id=organisation_id,
        details={"member_user_id": user_id, "role": member.role},
    )
