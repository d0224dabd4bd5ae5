"""Request and response bodies of organisations, members and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    model_validator,
)

from amply.kit.countries import normalize_country
from amply.kit.money import MoneyError, normalize_currency
from amply.kit.schemas import RequestModel

Role = Literal["owner", "admin", "viewer"]


def _currency(value: str) -> str:
    try:
        return normalize_currency(value)
    except MoneyError as error:
        raise ValueError(str(error)) from None


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{1,58}[a-z0-9])$"),
    Field(
        description="3 to 60 lowercase letters, digits and hyphens; unique.",
        examples=["clean-rivers"],
    ),
]
Description = Annotated[str, Field(max_length=2000)]
Website = Annotated[HttpUrl, Field(max_length=300, examples=["https://cleanrivers.example"])]
Country = Annotated[
    str,
    Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2.", examples=["DE"]),
    AfterValidator(normalize_country),
]
Currency = Annotated[
    str,
    Field(min_length=3, max_length=3, description="ISO 4217, e.g. `EUR`.", examples=["EUR"]),
    AfterValidator(_currency),
]


class OrganisationCreate(RequestModel):
    name: Name
    slug: Slug
    description: Description = ""
    website: Website | None = None
    country: Country
    default_currency: Currency


class OrganisationUpdate(RequestModel):
    """Only the fields sent are changed."""

    name: Name | None = None
    slug: Slug | None = None
    description: Description | None = None
    website: Website | None = None
    country: Country | None = None
    default_currency: Currency | None = None

    @model_validator(mode="after")
    def _no_nulls(self) -> OrganisationUpdate:
        for field in self.model_fields_set - {"website"}:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class OrganisationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(examples=["org_7Hq2LmN4pR6sT8vX0zB1cD3f"])
    name: str
    slug: str
    description: str
    website: str | None
    country: str
    default_currency: str
    created_at: datetime
    updated_at: datetime


class MembershipOut(BaseModel):
    organisation: OrganisationOut
    role: Role


class MemberAdd(RequestModel):
    username: Annotated[str | None, Field(max_length=30)] = None
    email: Annotated[str | None, Field(max_length=254)] = None
    role: Role

    @model_validator(mode="after")
    def _exactly_one_identifier(self) -> MemberAdd:
        if (self.username is None) == (self.email is None):
            raise ValueError("give exactly one of username and email")
        return self


class MemberUpdate(RequestModel):
    role: Role


class MemberOut(BaseModel):
    user_id: str
    username: str
    name: str
    role: Role
    joined_at: datetime


class ApiKeyCreate(RequestModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    read_only: bool = Field(default=False, description="A read-only key cannot write.")


class ApiKeyOut(BaseModel):
    id: str = Field(examples=["key_5tG7hJ9kL1mN3pQ5rS7tU9vW"])
    name: str
    read_only: bool
    mode: Literal["test", "live"]
    prefix: str = Field(description="The key's first characters, to recognise it.")
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    secret: str = Field(description="The key itself. Shown only in this response; store it now.")
