"""Request and response bodies of organisations, members and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

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
from amply.kit.schemas import Amount, Currency, RequestModel, Text100, as_literal
from amply.models import Fund, OrganisationMember, enums
from amply.organisations.funds import FundTotal

if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    # (the services' Literal for roles, until their callers pass MemberRole)
    from amply.organisations.service import Role as Role

    FundStatus = enums.FundStatus
else:
    Role = as_literal(enums.MemberRole)
    FundStatus = as_literal(enums.FundStatus)


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


OrganisationId = Annotated[
    str, Field(pattern=r"^org_[0-9A-Za-z]{1,64}$", examples=["org_7Hq2LmN4pR6sT8vX0zB1cD3f"])
]


FundId = Annotated[
    str, Field(pattern=r"^fund_[0-9A-Za-z]{1,64}$", examples=["fund_2aB4cD6eF8gH0iJ2kL4mN6oP"])
]


class Goal(RequestModel):
    amount: Amount
    currency: Currency


class FundCreate(RequestModel):
    name: Text100
    description: Annotated[str, Field(max_length=2000)] = ""
    goal: Goal | None = Field(default=None, description="An optional fundraising goal.")


class FundUpdate(RequestModel):
    """Only the fields sent are changed; `goal: null` removes the goal."""

    name: Text100 | None = None
    description: Annotated[str | None, Field(max_length=2000)] = None
    goal: Goal | None = None
    status: FundStatus | None = Field(
        default=None, description="A closed fund accepts no new donations."
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> FundUpdate:
        for field in self.model_fields_set - {"goal"}:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class GoalOut(BaseModel):
    amount: int
    currency: str


class FundTotalOut(BaseModel):
    currency: str
    received: int = Field(description="Gross received by completed donations.")
    refunded: int = Field(description="Refunded of those donations.")
    net: int = Field(description="received - refunded (Stripe's fees are on the ledger).")
    donations: int = Field(description="How many donations were completed.")


class FundOut(BaseModel):
    object: Literal["fund"] = "fund"
    id: str
    organisation_id: str
    name: str
    description: str
    goal: GoalOut | None
    status: FundStatus
    totals: list[FundTotalOut]
    created_at: datetime
    updated_at: datetime


def fund_out(fund: Fund, totals: list[FundTotal]) -> FundOut:
    goal = None
    if fund.goal_amount is not None and fund.goal_currency is not None:
        goal = GoalOut(amount=fund.goal_amount, currency=fund.goal_currency)
    return FundOut(
        id=fund.id,
        organisation_id=fund.organisation_id,
        name=fund.name,
        description=fund.description,
        goal=goal,
        status=fund.status,
        totals=[
            FundTotalOut(
                currency=t.currency,
                received=t.received,
                refunded=t.refunded,
                net=t.received - t.refunded,
                donations=t.donations,
            )
            for t in totals
        ],
        created_at=fund.created_at,
        updated_at=fund.updated_at,
    )


def member_out(member: OrganisationMember) -> MemberOut:
    return MemberOut(
        user_id=member.user_id,
        username=member.user.username,
        name=member.user.name,
        role=member.role,
        joined_at=member.created_at,
    )
