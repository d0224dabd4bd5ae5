"""Request and response bodies of sign-up, login and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from amply.auth.schemas import SecurityEventOut, Username
from amply.kit.schemas import RequestModel, as_literal
from amply.kit.settings import Settings
from amply.models import ApiKey, AuthSession
from amply.models.enums import ApiKeyMode

if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    KeyMode = ApiKeyMode
else:
    KeyMode = as_literal(ApiKeyMode)

Email = Annotated[
    EmailStr,
    Field(max_length=254, description="Unique regardless of case.", examples=["ada@example.org"]),
]
Password = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1024,
        description="At least 10 and at most 128 characters, not one of the most common.",
        examples=["correct horse battery staple"],
    ),
]
SessionType = Annotated[
    Literal["cookie", "token"],
    Field(
        description="`cookie` (browsers): the token is set as an HttpOnly cookie and a CSRF "
        "token is returned. `token` (native apps): the token is returned in the body, to send "
        "as `Authorization: Bearer`."
    ),
]


class SignUpRequest(RequestModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    username: Username
    email: Email
    password: Password
    session_type: SessionType = "cookie"


class LoginRequest(RequestModel):
    login: Annotated[str, Field(min_length=1, max_length=254, description="Username or email.")]
    password: Password
    session_type: SessionType = "cookie"


class PasswordChangeRequest(RequestModel):
    current_password: Password
    new_password: Password


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(examples=["usr_3k9XfP0aQz7LmN2bV8cR1tYu"])
    name: str
    username: str
    email: str
    created_at: datetime


class SessionOut(BaseModel):
    id: str = Field(description="The session's id (`ses_…`), not its secret token.")
    created_at: datetime
    expires_at: datetime = Field(description="Absolute expiry; idle sessions expire sooner.")
    idle_timeout_seconds: int = Field(description="The session ends when unused this long.")
    csrf_token: str | None = Field(
        default=None,
        description="Cookie sessions: send as `X-CSRF-Token` on every POST, PATCH, PUT, DELETE.",
    )
    token: str | None = Field(
        default=None,
        description="Token sessions, at creation only: the bearer token. It is not shown again.",
    )


class AuthResponse(BaseModel):
    user: UserOut
    session: SessionOut


class SessionSummary(BaseModel):
    id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    user_agent: str | None
    current: bool = Field(description="Whether this is the session making the request.")


class UserSecurityEventOut(SecurityEventOut):
    client_address: str | None = Field(description="The client address of the request.")
    user_agent: str | None


class ApiKeyCreate(RequestModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    read_only: bool = Field(default=False, description="A read-only key cannot write.")


class ApiKeyOut(BaseModel):
    id: str = Field(examples=["key_5tG7hJ9kL1mN3pQ5rS7tU9vW"])
    name: str
    read_only: bool
    mode: KeyMode
    prefix: str = Field(description="The key's first characters, to recognise it.")
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key itself. Shown only in this response; store it now.")


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        read_only=key.read_only,
        mode=key.mode,
        prefix=key.display_prefix,
        created_by=key.created_by,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def session_out(
    record: AuthSession, settings: Settings, *, csrf: str | None, token: str | None = None
) -> SessionOut:
    return SessionOut(
        id=record.id,
        created_at=record.created_at,
        expires_at=record.expires_at,
        idle_timeout_seconds=settings.session_idle_timeout_seconds,
        csrf_token=csrf,
        token=token,
    )


def session_summary(record: AuthSession, *, current_id: str) -> SessionSummary:
    """One of the user's sessions; ``current_id`` is the session making the request."""
    return SessionSummary(
        id=record.id,
        created_at=record.created_at,
        last_seen_at=record.last_seen_at,
        expires_at=record.expires_at,
        user_agent=record.user_agent,
        current=record.id == current_id,
    )
