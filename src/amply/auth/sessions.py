"""A sign-in session recognised from its bearer token (cookie or ``Authorization``).

A session is a server-side row holding the SHA-256 of a random bearer token; it expires
absolutely (``session_lifetime_seconds``) and when idle (``session_idle_timeout_seconds``).
Signing in and out is the ``identity`` domain's (``identity/auth.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth import tokens
from amply.kit.errors import AuthenticationRequired
from amply.kit.settings import Settings
from amply.models import AuthSession, User

# A session's last_seen_at is written at most once a minute (a tenth of the idle timeout if
# that is shorter), not on every request; the idle check allows for the lag.
_TOUCH_INTERVAL = timedelta(seconds=60)


def touch_interval(settings: Settings) -> timedelta:
    return min(_TOUCH_INTERVAL, timedelta(seconds=settings.session_idle_timeout_seconds / 10))


@dataclass(frozen=True)
class Authenticated:
    user: User
    session: AuthSession


def now() -> datetime:
    return datetime.now(UTC)


async def authenticate(session: AsyncSession, *, settings: Settings, token: str) -> Authenticated:
    """The live session a bearer token belongs to, or :class:`AuthenticationRequired`."""
    row = (
        await session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_hash == tokens.digest(token))
        )
    ).first()
    if row is None:
        raise AuthenticationRequired("The session token is not valid.", code="session_invalid")
    record, user = row
    current_time = now()
    idle_limit = (
        record.last_seen_at
        + timedelta(seconds=settings.session_idle_timeout_seconds)
        + touch_interval(settings)
    )
    if record.revoked_at is not None:
        raise AuthenticationRequired(
            "This session has ended; sign in again.", code="session_revoked"
        )
    if current_time >= record.expires_at or current_time >= idle_limit:
        raise AuthenticationRequired(
            "This session has expired; sign in again.", code="session_expired"
        )
    if current_time - record.last_seen_at >= touch_interval(settings):
        record.last_seen_at = current_time
    return Authenticated(user=user, session=record)
