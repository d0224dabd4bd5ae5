"""Organisations' API keys for integrators.

A key is ``sk_test_`` (sandbox) or ``sk_live_`` (live Stripe keys configured) followed by 256
random bits. It is shown once; the database keeps its SHA-256 and a display prefix. A key
only works in the mode it was made for, so sandbox keys stop working when Amply goes live.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth import security_events, tokens
from amply.auth.security_events import Actor
from amply.kit.errors import NotFound
from amply.kit.ids import generate_id
from amply.kit.pagination import Page, keyset_page
from amply.models import ApiKey
from amply.models.enums import SecurityEventType

_DISPLAY_CHARACTERS = 4


@dataclass(frozen=True)
class CreatedKey:
    record: ApiKey
    secret: str


async def create_api_key(
    session: AsyncSession,
    *,
    organisation_id: str,
    name: str,
    read_only: bool,
    live_mode: bool,
    created_by: str,
    actor: Actor,
) -> CreatedKey:
    mode = "live" if live_mode else "test"
    prefix = f"sk_{mode}_"
    secret = tokens.new_secret(prefix)
    record = ApiKey(
        id=generate_id("key"),
        organisation_id=organisation_id,
        name=name,
        read_only=read_only,
        mode=mode,
        display_prefix=secret[: len(prefix) + _DISPLAY_CHARACTERS],
        token_hash=tokens.digest(secret),
        created_by=created_by,
    )
    session.add(record)
    await session.flush()
    await security_events.record_by(
        session,
        event_type=SecurityEventType.API_KEY_CREATED,
        actor=actor,
        organisation_id=organisation_id,
        details={"api_key_id": record.id, "name": name, "read_only": read_only, "mode": mode},
    )
    return CreatedKey(record=record, secret=secret)


async def list_api_keys(
    session: AsyncSession, *, organisation_id: str, limit: int, starting_after: str | None
) -> Page[ApiKey]:
    """The organisation's keys, revoked ones included, newest first."""
    statement = select(ApiKey).where(ApiKey.organisation_id == organisation_id)
    return await keyset_page(
        session,
        statement,
        key=(ApiKey.created_at, ApiKey.id),
        id_column=ApiKey.id,
        starting_after=starting_after,
        limit=limit,
        descending=True,
    )


async def revoke_api_key(
    session: AsyncSession, *, organisation_id: str, key_id: str, actor: Actor
) -> ApiKey:
    """Revoke a key at once; revoking a revoked key changes nothing."""
    record = await session.scalar(
        select(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.organisation_id == organisation_id)
        .with_for_update()
    )
    if record is None:
        raise NotFound("No such API key.", param="key_id")
    if record.revoked_at is None:
        record.revoked_at = datetime.now(UTC)
        await session.flush()
        await security_events.record_by(
            session,
            event_type=SecurityEventType.API_KEY_REVOKED,
            actor=actor,
            organisation_id=organisation_id,
            details={"api_key_id": record.id, "name": record.name},
        )
    return record
