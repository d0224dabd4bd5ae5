"""Shapes every domain shows of users and security events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Username = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_]{3,30}$"),
    Field(
        description="3 to 30 letters, digits or underscores; unique regardless of case.",
        examples=["ada_l"],
    ),
]


class SecurityEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(examples=["sev_0aZ1bY2cX3dW4eV5fU6gT7hS"])
    type: str = Field(examples=["login_failed"])
    created_at: datetime
    actor_user_id: str | None = Field(description="The user who acted, if any.")
    actor_api_key_id: str | None = Field(description="The API key that acted, if any.")
    details: dict[str, object] = Field(description="What changed (roles, key ids, reasons).")
