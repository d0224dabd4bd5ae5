"""Shapes shared by every resource: lists with cursor pagination."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

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
