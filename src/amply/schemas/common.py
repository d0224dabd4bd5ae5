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
    """A time filter from a query string: a time without a zone is read as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


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
