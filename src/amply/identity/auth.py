"""Users and their sign-in sessions: sign-up, login (throttled), logout, password change.

A session is a server-side row holding the SHA-256 of a random bearer token; the token
itself is handed out once, in a cookie or in the response body. Sessions expire absolutely
(``session_lifetime_seconds``) and when idle (``session_idle_timeout_seconds``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth import passwords, security_events, tokens
from amply.auth.security_events import Origin
from amply.auth.sessions import Authenticated, now, touch_interval
from amply.kit import rate_limits
from amply.kit.db import constraint_name
from amply.kit.errors import (
    Conflict,
    InvalidInput,
    LoginFailed,
    LoginThrottled,
    NotFound,
    WrongPassword,
)
from amply.kit.ids import generate_id
from amply.kit.pagination import Page, keyset_page
from amply.kit.settings import Settings
from amply.models import AuthSession, User
from amply.models.enums import SecurityEventType, SessionRevokedReason
from amply.wallets import service as wallets

_UNIQUE_CONSTRAINTS = {
    "users_username_lower_key": ("username_taken", "username", "That username is taken."),
    "users_email_lower_key": ("email_taken", "email", "An account with that email exists."),
}


@dataclass(frozen=True)
class IssuedSession:
    """A new session and its bearer token, which exists nowhere else."""

    record: AuthSession
    token: str


def hasher_for(settings: Settings) -> passwords.Hasher:
    return passwords.Hasher(
        time_cost=settings.password_hash_time_cost,
        memory_kib=settings.password_hash_memory_kib,
        parallelism=settings.password_hash_parallelism,
    )


def _check_password(password: str, *, username: str, email: str, param: str) -> None:
    try:
        passwords.check_policy(password, username=username, email=email)
    except passwords.WeakPassword as error:
        raise InvalidInput(str(error), code="password_too_weak", param=param) from None


async def _raise_if_taken(session: AsyncSession, *, username: str, email: str) -> None:
    taken = await session.scalars(
        select(User).where(
            or_(
                func.lower(User.username) == func.lower(username),
                func.lower(User.email) == func.lower(email),
            )
        )
    )
    for user in taken:
        column = "username" if user.username.lower() == username.lower() else "email"
        code, param, message = _UNIQUE_CONSTRAINTS[f"users_{column}_lower_key"]
        raise Conflict(message, code=code, param=param)


async def sign_up(
    session: AsyncSession,
    *,
    settings: Settings,
    name: str,
    username: str,
    email: str,
    password: str,
    origin: Origin,
) -> IssuedSession:
    """Create a user and sign them in."""
    _check_password(password, username=username, email=email, param="password")
    await _raise_if_taken(session, username=username, email=email)
    user = User(
        id=generate_id("usr"),
        name=name,
        username=username,
        email=email,
        password_hash=await hasher_for(settings).hash(password),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as error:  # a concurrent sign-up took the name between check and insert
        constraint = constraint_name(error) or ""
        if constraint not in _UNIQUE_CONSTRAINTS:
            raise
        code, param, message = _UNIQUE_CONSTRAINTS[constraint]
        raise Conflict(message, code=code, param=param) from None
    await wallets.open_wallet(session, user=user, settings=settings)
    await security_events.record(
        session,
        event_type=SecurityEventType.USER_SIGNED_UP,
        origin=origin,
        user_id=user.id,
        actor_user_id=user.id,
    )
    return await _issue_session(session, settings=settings, user=user, origin=origin)


async def _issue_session(
    session: AsyncSession, *, settings: Settings, user: User, origin: Origin
) -> IssuedSession:
    token = tokens.new_secret(tokens.SESSION_TOKEN_PREFIX)
    issued_at = now()
    record = AuthSession(
        id=generate_id("ses"),
        user_id=user.id,
        token_hash=tokens.digest(token),
        created_at=issued_at,
        last_seen_at=issued_at,
        expires_at=issued_at + timedelta(seconds=settings.session_lifetime_seconds),
        user_agent=origin.user_agent[:200] if origin.user_agent else None,
    )
    session.add(record)
    await session.flush()
    return IssuedSession(record=record, token=token)


def _account_key(user: User | None, login: str) -> str:
    if user is not None:
        return f"login:account:{user.id}"
    # Unknown accounts are throttled alike (else 429s would reveal which exist); the key
    # is a digest so that no typed email address is stored.
    return "login:unknown:" + hashlib.sha256(login.strip().lower().encode()).hexdigest()


async def log_in(
    session: AsyncSession, *, settings: Settings, login: str, password: str, origin: Origin
) -> IssuedSession:
    """Check a username-or-email and password; throttle failures per account and address.

    An unknown account costs the same password hash as a known one and fails with the same
    message, so neither the answer nor its timing tells whether the account exists.
    """
    window_seconds = settings.login_failure_window_seconds
    address_key = f"login:address:{origin.client_address or 'unknown'}"
    # A plain read: concurrent failures from one address may pass the limit by as many as
    # run at once. Counting first, as for accounts, would serialise every login behind a
    # shared address (an office, a carrier's NAT) for the duration of a password hash.
    address = await rate_limits.current(session, key=address_key, window_seconds=window_seconds)
    if address.hits >= settings.login_max_failures_per_address:
        await _record_throttled(session, origin=origin, user_id=None, scope="address")
        raise _throttled(address.seconds_left)

    user = await session.scalar(
        select(User).where(
            or_(
                func.lower(User.username) == func.lower(login.strip()),
                func.lower(User.email) == func.lower(login.strip()),
            )
        )
    )
    # Counted before the password is checked, under the counter row's lock: concurrent
    # guesses at one account are serialised and none slips past the limit.
    account_key = _account_key(user, login)
    attempts = await rate_limits.hit(session, key=account_key, window_seconds=window_seconds)
    if attempts.exceeds(settings.login_max_failures_per_account):
        await _record_throttled(
            session, origin=origin, user_id=user.id if user else None, scope="account"
        )
        raise _throttled(attempts.seconds_left)

    hasher = hasher_for(settings)
    if user is None:
        await hasher.burn(password)
    elif await hasher.verify(user.password_hash, password):
        await rate_limits.reset(session, key=account_key)
        if hasher.needs_rehash(user.password_hash):
            user.password_hash = await hasher.hash(password)
        await security_events.record(
            session,
            event_type=SecurityEventType.LOGIN_SUCCEEDED,
            origin=origin,
            user_id=user.id,
            actor_user_id=user.id,
        )
        return await _issue_session(session, settings=settings, user=user, origin=origin)

    await rate_limits.hit(session, key=address_key, window_seconds=window_seconds)
    await security_events.record(
        session,
        event_type=SecurityEventType.LOGIN_FAILED,
        origin=origin,
        user_id=user.id if user else None,
        details={"reason": "wrong_password" if user else "unknown_account"},
    )
    raise LoginFailed("The login or password is incorrect.")


def _throttled(seconds_left: int) -> LoginThrottled:
    return LoginThrottled("Too many failed logins; try again later.", retry_after=seconds_left)


async def _record_throttled(
    session: AsyncSession, *, origin: Origin, user_id: str | None, scope: str
) -> None:
    await security_events.record(
        session,
        event_type=SecurityEventType.LOGIN_THROTTLED,
        origin=origin,
        user_id=user_id,
        details={"scope": scope},
    )


async def log_out(session: AsyncSession, *, auth: Authenticated, origin: Origin) -> None:
    """Revoke the session the request came with."""
    await _revoke(session, record=auth.session, reason="logout", origin=origin)


async def _revoke(
    session: AsyncSession, *, record: AuthSession, reason: str, origin: Origin
) -> None:
    record.revoked_at = now()
    record.revoked_reason = SessionRevokedReason(reason)
    await security_events.record(
        session,
        event_type=SecurityEventType.SESSION_REVOKED,
        origin=origin,
        user_id=record.user_id,
        actor_user_id=record.user_id,
        details={"session_id": record.id, "reason": reason},
    )
    await session.flush()


async def change_password(
    session: AsyncSession,
    *,
    settings: Settings,
    auth: Authenticated,
    current_password: str,
    new_password: str,
    origin: Origin,
) -> IssuedSession:
    """Set a new password, end every session of the user, and start a fresh one."""
    user = auth.user
    hasher = hasher_for(settings)
    # Wrong current passwords count against the same limit as failed logins, so a stolen
    # session cannot be used to guess the password.
    account_key = _account_key(user, user.username)
    window_seconds = settings.login_failure_window_seconds
    attempts = await rate_limits.hit(session, key=account_key, window_seconds=window_seconds)
    if attempts.exceeds(settings.login_max_failures_per_account):
        raise _throttled(attempts.seconds_left)
    if not await hasher.verify(user.password_hash, current_password):
        await security_events.record(
            session,
            event_type=SecurityEventType.PASSWORD_CHANGE_FAILED,
            origin=origin,
            user_id=user.id,
            actor_user_id=user.id,
        )
        raise WrongPassword("The current password is incorrect.", param="current_password")
    await rate_limits.reset(session, key=account_key)
    _check_password(new_password, username=user.username, email=user.email, param="new_password")
    changed_at = now()
    user.password_hash = await hasher.hash(new_password)
    user.password_changed_at = changed_at
    user.updated_at = changed_at
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=changed_at, revoked_reason="password_changed")
        .execution_options(synchronize_session="fetch")
    )
    await security_events.record(
        session,
        event_type=SecurityEventType.PASSWORD_CHANGED,
        origin=origin,
        user_id=user.id,
        actor_user_id=user.id,
    )
    return await _issue_session(session, settings=settings, user=user, origin=origin)


async def list_sessions(
    session: AsyncSession, *, settings: Settings, user: User, limit: int, starting_after: str | None
) -> Page[AuthSession]:
    """The user's sessions that can still be used, newest first."""
    current_time = now()
    idle = timedelta(seconds=settings.session_idle_timeout_seconds) + touch_interval(settings)
    statement = select(AuthSession).where(
        AuthSession.user_id == user.id,
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > current_time,
        AuthSession.last_seen_at > current_time - idle,
    )
    return await keyset_page(
        session,
        statement,
        key=(AuthSession.created_at, AuthSession.id),
        id_column=AuthSession.id,
        starting_after=starting_after,
        limit=limit,
        descending=True,
    )


async def revoke_session(
    session: AsyncSession, *, user: User, session_id: str, origin: Origin
) -> AuthSession:
    """End one of the user's own sessions (a lost phone, a shared computer)."""
    record = await session.scalar(
        select(AuthSession).where(
            AuthSession.id == session_id,
            AuthSession.user_id == user.id,
            AuthSession.revoked_at.is_(None),
        )
    )
    if record is None:
        raise NotFound("No such active session.", param="session_id")
    await _revoke(session, record=record, reason="revoked", origin=origin)
    return record
