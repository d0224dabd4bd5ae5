"""Request and response bodies of sign-up, login and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from amply.kit.schemas import RequestModel

Username = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_]{3,30}$"),
    Field(
        description="3 to 30 letters, digits or underscores; unique regardless of case.",
        examples=["ada_l"],
    ),
]
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


class SecurityEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(examples=["sev_0aZ1bY2cX3dW4eV5fU6gT7hS"])
    type: str = Field(examples=["login_failed"])
    created_at: datetime
    actor_user_id: str | None = Field(description="The user who acted, if any.")
    actor_api_key_id: str | None = Field(description="The API key that acted, if any.")
    details: dict[str, object] = Field(description="What changed (roles, key ids, reasons).")


class UserSecurityEventOut(SecurityEventOut):
    client_address: str | None = Field(description="The client address of the request.")
    user_agent: str | None
