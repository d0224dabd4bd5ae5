"""Request dependencies: the database session (the one place that commits), settings, and
one dependency per kind of caller: ``CurrentUser``, ``OrgMember(role)``, ``OrgApiKey(scope)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, Header, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from amply.identity import api_keys, auth, tokens
from amply.identity.auth import Authenticated
from amply.identity.security_events import Actor, Origin
from amply.kit.db import Database, UnitOfWork
from amply.kit.errors import AmplyError, AuthenticationRequired, NotFound, PermissionDenied
from amply.kit.settings import Settings
from amply.ledger.signing import NoteSigner
from amply.ledger.verdicts import VerdictCache
from amply.models import ApiKey, Organisation, User
from amply.organisations import service as organisations
from amply.organisations.service import Role
from amply.payments.gateway import PaymentGateway


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    """A session per request, committed when the route returns, before the response is sent.

    If the route raises, nothing is committed, unless the error says its changes must be
    kept (:attr:`AmplyError.keeps_changes`: a failed login's throttling count). A commit
    that fails (a deferred ledger check, say) becomes the response instead of a success the
    client would wrongly trust.
    """
    async with database.session() as session:
        try:
            yield session
        except AmplyError as error:
            if error.keeps_changes:
                await session.commit()
            raise
        await session.commit()


# scope="function": the code after ``yield`` (the commit) runs before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]


def get_unit_of_work(session: SessionDep) -> UnitOfWork:
    """The request's session as short committed steps, for routes that call Stripe: see
    :class:`amply.kit.db.UnitOfWork`. Whatever the route does after its last step is committed
    by :func:`get_session` as usual."""
    return UnitOfWork(session)


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]


def get_read_database(request: Request) -> Database:
    """The read replica (``DATABASE_READ_URL``), or the primary when there is none."""
    database: Database = request.app.state.read_database
    return database


async def get_read_session(
    database: Annotated[Database, Depends(get_read_database)],
) -> AsyncIterator[AsyncSession]:
    """A session for public reads that may lag the primary a little; it never commits."""
    async with database.session() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
ReadDatabaseDep = Annotated[Database, Depends(get_read_database)]


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_origin(request: Request) -> Origin:
    """Where the request came from: the TCP peer, or the client a trusted proxy names
    (``AMPLY_TRUSTED_PROXIES``; see amply.main)."""
    client = request.client
    return Origin(
        client_address=client.host if client else None,
        user_agent=request.headers.get("user-agent"),
    )


OriginDep = Annotated[Origin, Depends(get_origin)]

# --- Authentication -------------------------------------------------------------------------
#
# A request presents at most one credential: ``Authorization: Bearer`` with a session token
# (``sess_…``) or an API key (``sk_test_…``/``sk_live_…``), else the session cookie. Cookie
# sessions must send the session's CSRF token in ``X-CSRF-Token`` on every unsafe method;
# bearer credentials need none, since a browser never attaches them by itself.

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a signed-in user (``auth``) or an API key (``api_key``)."""

    origin: Origin
    auth: Authenticated | None = None
    session_token: str | None = None
    via_cookie: bool = False
    api_key: ApiKey | None = None

    @property
    def actor(self) -> Actor:
        return Actor(
            origin=self.origin,
            user_id=self.auth.user.id if self.auth else None,
            api_key_id=self.api_key.id if self.api_key else None,
        )


@dataclass(frozen=True)
class SignedIn(Caller):
    """A caller known to be a signed-in user."""

    @property
    def user(self) -> User:
        assert self.auth is not None
        return self.auth.user

    @property
    def csrf_token(self) -> str | None:
        """The CSRF token for cookie sessions (bearer sessions need none)."""
        if not self.via_cookie or self.session_token is None:
            return None
        return tokens.csrf_token(self.session_token)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationRequired(
            "Send credentials as `Authorization: Bearer <token>`.", code="authorization_malformed"
        )
    return value.strip()


async def get_caller(
    request: Request, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> Caller | None:
    """Who is calling, or None for an anonymous request. Bad credentials are a 401."""
    bearer = _bearer(request)
    if bearer is not None and bearer.startswith(tokens.API_KEY_PREFIXES):
        key = await api_keys.authenticate_api_key(
            session, secret=bearer, live_mode=settings.live_mode
        )
        request.state.caller_kind = "api_key"
        return Caller(origin=origin, api_key=key)
    if bearer is not None and not bearer.startswith(tokens.SESSION_TOKEN_PREFIX):
        raise AuthenticationRequired(
            "The bearer token is neither a session token nor an API key.", code="token_invalid"
        )
    token = bearer or request.cookies.get(settings.session_cookie_name)
    if not token:
        return None
    via_cookie = bearer is None
    if via_cookie and request.method not in SAFE_METHODS:
        _check_csrf(request, token)
    authenticated = await auth.authenticate(session, settings=settings, token=token)
    request.state.caller_kind = "user"
    return SignedIn(origin=origin, auth=authenticated, session_token=token, via_cookie=via_cookie)


def _check_csrf(request: Request, session_token: str) -> None:
    presented = request.headers.get(CSRF_HEADER)
    if not presented:
        raise PermissionDenied(
            f"Requests authenticated by the session cookie must send the {CSRF_HEADER} header.",
            code="csrf_token_missing",
        )
    if not tokens.csrf_token_matches(session_token, presented):
        raise PermissionDenied(
            f"The {CSRF_HEADER} header does not match this session.", code="csrf_token_invalid"
        )


CallerDep = Annotated[Caller | None, Depends(get_caller)]


def require_caller(caller: Caller | None) -> Caller:
    """``caller``, or 401 for an anonymous request."""
    if caller is None:
        raise AuthenticationRequired(
            "Sign in, or send an API key as `Authorization: Bearer sk_…`.",
            code="authentication_required",
        )
    return caller


async def get_current_user(caller: CallerDep) -> SignedIn:
    """A signed-in user (cookie or bearer session); API keys are refused."""
    caller = require_caller(caller)
    if not isinstance(caller, SignedIn):
        raise AuthenticationRequired(
            "This endpoint needs a signed-in user; API keys cannot use it.",
            code="session_required",
        )
    return caller


CurrentUser = Annotated[SignedIn, Depends(get_current_user)]


@dataclass(frozen=True)
class OrgAccess:
    """A caller acting on one organisation, with the role (members) or scope (keys) it has."""

    organisation: Organisation
    caller: Caller
    role: Role | None = None

    @property
    def actor(self) -> Actor:
        return self.caller.actor


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
    if caller.api_key is not None:
        return await _key_access(session, caller, organisation_id=organisation_id, scope=scope)
    assert caller.auth is not None
    membership = await organisations.get_membership(
        session, organisation_id=organisation_id, user_id=caller.auth.user.id
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
    return OrgAccess(
        organisation=membership.organisation, caller=caller, role=cast(Role, membership.role)
    )


async def _key_access(
    session: AsyncSession, caller: Caller, *, organisation_id: str, scope: KeyScope | None
) -> OrgAccess:
    key = caller.api_key
    assert key is not None
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
    """``Annotated[OrgAccess, OrgMember("admin")]``: a member with at least ``role``."""
    return Depends(_organisation_access(role=role, scope=None))


def OrgApiKey(scope: KeyScope) -> Any:  # noqa: N802
    """``Annotated[OrgAccess, OrgApiKey("write")]``: one of the organisation's API keys."""
    return Depends(_organisation_access(role=None, scope=scope))


def OrgMemberOrApiKey(role: Role, scope: KeyScope) -> Any:  # noqa: N802
    """A member with at least ``role``, or an API key with ``scope``."""
    return Depends(_organisation_access(role=role, scope=scope))


# --- Payments -------------------------------------------------------------------------------


def get_gateway(request: Request) -> PaymentGateway:
    gateway: PaymentGateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[PaymentGateway, Depends(get_gateway)]


def get_signer(request: Request) -> NoteSigner:
    signer: NoteSigner = request.app.state.signer
    return signer


SignerDep = Annotated[NoteSigner, Depends(get_signer)]


def get_verdicts(request: Request) -> VerdictCache:
    verdicts: VerdictCache = request.app.state.verdicts
    return verdicts


VerdictsDep = Annotated[VerdictCache, Depends(get_verdicts)]


async def get_optional_api_key(
    request: Request, session: SessionDep, settings: SettingsDep
) -> ApiKey | None:
    """An organisation's API key if the request bears one; public endpoints ignore any
    other credential (a signed-in donor's cookie gives a donation no extra rights).
    """
    header = request.headers.get("authorization", "")
    scheme, _, value = header.strip().partition(" ")
    secret = value.strip()
    if scheme.lower() != "bearer" or not secret.startswith(tokens.API_KEY_PREFIXES):
        return None
    return await api_keys.authenticate_api_key(session, secret=secret, live_mode=settings.live_mode)


OptionalApiKey = Annotated[ApiKey | None, Depends(get_optional_api_key)]

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="A unique key (16-255 visible ASCII characters; a UUID is ideal). A retry "
        "with the same key and body returns the first response and moves nothing twice.",
    ),
]
RequiredIdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        description="Required: a unique key (16-255 visible ASCII characters; a UUID is "
        "ideal). A retry with the same key and body returns the first response.",
    ),
]
