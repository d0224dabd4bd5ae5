"""The security event log: who signed in, what changed in an organisation's access.

Events are insert-only for the service's database role. They carry no secrets and no
passwords; a client address and user agent are kept for the person the event concerns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.ids import generate_id
from amply.kit.pagination import Page, keyset_page
from amply.models import SecurityEvent
from amply.models.enums import SecurityEventType

EventType = SecurityEventType


@dataclass(frozen=True)
class Origin:
    """Where a request came from, for the log."""

    client_address: str | None
    user_agent: str | None


@dataclass(frozen=True)
class Actor:
    """Who did something: a signed-in user or an organisation's API key, and from where."""

    origin: Origin
    user_id: str | None = None
    api_key_id: str | None = None


async def record_by(
    session: AsyncSession,
    *,
    event_type: EventType,
    actor: Actor,
    organisation_id: str | None = None,
    user_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> SecurityEvent:
    """Record an event done by ``actor``."""
    return await record(
        session,
        event_type=event_type,
        origin=actor.origin,
        user_id=user_id,
        organisation_id=organisation_id,
        actor_user_id=actor.user_id,
        actor_api_key_id=actor.api_key_id,
        details=details,
    )


async def record(
    session: AsyncSession,
    *,
    event_type: EventType,
    origin: Origin,
    user_id: str | None = None,
    organisation_id: str | None = None,
    actor_user_id: str | None = None,
    actor_api_key_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> SecurityEvent:
    event = SecurityEvent(
        id=generate_id("sev"),
        type=event_type,
        user_id=user_id,
        organisation_id=organisation_id,
        actor_user_id=actor_user_id,
        actor_api_key_id=actor_api_key_id,
        client_address=(origin.client_address or None) and origin.client_address[:64],
        user_agent=(origin.user_agent or None) and origin.user_agent[:200],
        details=details or {},
    )
    session.add(event)
    await session.flush()
    return event


async def list_for_user(
    session: AsyncSession, *, user_id: str, limit: int, starting_after: str | None
) -> Page[SecurityEvent]:
    """A person's own sign-in and session events, newest first."""
    statement = select(SecurityEvent).where(
        SecurityEvent.user_id == user_id, SecurityEvent.organisation_id.is_(None)
    )
    return await _newest_first(session, statement, limit=limit, starting_after=starting_after)


async def list_for_organisation(
    session: AsyncSession, *, organisation_id: str, limit: int, starting_after: str | None
) -> Page[SecurityEvent]:
    """An organisation's member, role and API key events, newest first."""
    statement = select(SecurityEvent).where(SecurityEvent.organisation_id == organisation_id)
    return await _newest_first(session, statement, limit=limit, starting_after=starting_after)


async def _newest_first(
    session: AsyncSession,
    statement: Select[Any],
    *,
    limit: int,
    starting_after: str | None,
) -> Page[SecurityEvent]:
    return await keyset_page(
        session,
        statement,
        key=(SecurityEvent.position,),
        id_column=SecurityEvent.id,
        starting_after=starting_after,
        limit=limit,
        descending=True,
    )
