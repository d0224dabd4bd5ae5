"""Shapes shared by every resource: lists with cursor pagination."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from amply.kit.money import MAX_AMOUNT, MoneyError, normalize_currency
from amply.kit.pagination import Page

T = TypeVar("T")
S = TypeVar("S")
U = TypeVar("U")

Limit = Annotated[int, Query(ge=1, le=100, description="How many items to return (1 to 100).")]
StartingAfter = Annotated[
    str | None,
    Query(
        max_length=64,
        description="A cursor: the id of the last item of the previous page.",
    ),
]


def as_utc(moment: datetime | None) -> datetime | None:
    """A time filter from a query string, in UTC: a time without a zone is read as UTC.

    A time whose UTC reading falls before the year 1 or after the year 9999 (say
    ``0001-01-01T00:00:00+01:00``) is valid RFC 3339 but no datetime can hold it; it filters
    as the first or last instant that can be held, since no stored time lies beyond either.
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if moment.year == datetime.min.year else datetime.max
        return edge.replace(tzinfo=UTC)


class RequestModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently ignored, and no text may
    hold a NUL character (PostgreSQL text cannot store one)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class ListResponse(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T] = Field(description="The items of this page, in the list's order.")
    has_more: bool = Field(description="Whether more items follow this page.")

    @staticmethod
    def of(page: Page[S], convert: Callable[[S], U]) -> ListResponse[U]:
        """The response for a keyset ``page``, each row converted to its schema."""
        return ListResponse(data=[convert(item) for item in page.items], has_more=page.has_more)


Amount = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=MAX_AMOUNT,
        description="A positive integer in the currency's minor units (cents for EUR).",
        examples=[2500],
    ),
]


def _currency(value: str) -> str:
    try:
        return normalize_currency(value)
    except MoneyError as error:
        raise ValueError(str(error)) from None


Currency = Annotated[
    str,
    Field(min_length=3, max_length=3, description="ISO 4217, e.g. `EUR`.", examples=["EUR"]),
    AfterValidator(_currency),
]


Text100 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def as_literal(enum: type[StrEnum]) -> Any:
    """The type a schema gives a ``StrEnum`` field: the ``Literal`` of its values, whose
    validated value is the enum's member. OpenAPI shows the values inline, in the enum's
    order, as it shows a ``Literal`` (an enum type would become a component of its own), and a
    bad value gets the literal's error. mypy is to see the enum itself::

        if TYPE_CHECKING:
            FundStatus = enums.FundStatus
        else:
            FundStatus = as_literal(enums.FundStatus)
    """
    values = tuple(member.value for member in enum)
    return Annotated[Literal.__getitem__(values), AfterValidator(enum)]
