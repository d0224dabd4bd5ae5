"""Who is calling: one dependency per kind of caller.

A request presents at most one credential: ``Authorization: Bearer`` with a session token
(``sess_…``) or an API key (``sk_test_…``/``sk_live_…``), else the session cookie. Cookie
sessions must send the session's CSRF token in ``X-CSRF-Token`` on every unsafe method;
bearer credentials need none, since a browser never attaches them by itself.

The caller is a :data:`Caller`: a :class:`SignedIn` user or an :class:`ApiKeyCaller`, never
half of each, so a route narrows it with ``isinstance`` (or asks for :data:`CurrentUser`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from amply.auth import tokens
from amply.auth.api_keys import authenticate_api_key
from amply.auth.security_events import Actor, Origin
from amply.auth.sessions import Authenticated, authenticate
from amply.kit.dependencies import SessionDep, SettingsDep
from amply.kit.errors import AuthenticationRequired, PermissionDenied
from amply.models import ApiKey, User

CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_origin(request: Request) -> Origin:
    """Where the request came from: the TCP peer, or the client a trusted proxy names
    (``AMPLY_TRUSTED_PROXIES``; see amply.main)."""
    client = request.client
    return Origin(
        client_address=client.host if client else None,
        user_agent=request.headers.get("user-agent"),
    )


OriginDep = Annotated[Origin, Depends(get_origin)]


@dataclass(frozen=True)
class SignedIn:
    """A signed-in user, by a session token (cookie or bearer)."""

    origin: Origin
    auth: Authenticated
    session_token: str
    via_cookie: bool

    @property
    def user(self) -> User:
        return self.auth.user

    @property
    def actor(self) -> Actor:
        return Actor(origin=self.origin, user_id=self.auth.user.id, api_key_id=None)

    @property
    def csrf_token(self) -> str | None:
        """The CSRF token for cookie sessions (bearer sessions need none)."""
        if not self.via_cookie:
            return None
        return tokens.csrf_token(self.session_token)


@dataclass(frozen=True)
class ApiKeyCaller:
    """An organisation's integration, by one of its API keys."""

    origin: Origin
    api_key: ApiKey

    @property
    def actor(self) -> Actor:
        return Actor(origin=self.origin, user_id=None, api_key_id=self.api_key.id)


Caller = SignedIn | ApiKeyCaller


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
        key = await authenticate_api_key(session, secret=bearer, live_mode=settings.live_mode)
        request.state.caller_kind = "api_key"
        return ApiKeyCaller(origin=origin, api_key=key)
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
    authenticated = await authenticate(session, settings=settings, token=token)
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
    return await authenticate_api_key(session, secret=secret, live_mode=settings.live_mode)


OptionalApiKey = Annotated[ApiKey | None, Depends(get_optional_api_key)]
