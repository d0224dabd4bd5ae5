"""Cursor pagination: a page of rows after a cursor, in a stable order, and ``has_more``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


async def keyset_page(
    session: AsyncSession,
    statement: Select[Any],
    *,
    key: Sequence[Any],
    cursor: Sequence[Any] | None,
    limit: int,
    descending: bool = False,
) -> Page[Any]:
    """Rows of ``statement`` ordered by ``key`` (unique), strictly after ``cursor``.

    ``cursor`` holds the key values of the last row already seen (values or scalar
    subqueries that look them up from the ``starting_after`` id).
    """
    if cursor is not None:
        after = tuple_(*key) < tuple_(*cursor) if descending else tuple_(*key) > tuple_(*cursor)
        statement = statement.where(after)
    # The caller's Page[...] annotation names the row type; Select's parameters differ
    # between SQLAlchemy 2.0 and 2.1.
    order = [column.desc() if descending else column.asc() for column in key]
    rows = (await session.scalars(statement.order_by(*order).limit(limit + 1))).all()
    return Page(items=list(rows[:limit]), has_more=len(rows) > limit)
