"""Cursor pagination: a page of rows after a cursor, in a stable order, and ``has_more``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, select, tuple_
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
    id_column: Any,
    starting_after: str | None,
    limit: int,
    descending: bool = False,
) -> Page[Any]:
    """Rows of ``statement`` ordered by ``key`` (unique), after the row whose id is
    ``starting_after``.

    The cursor row is looked up under the statement's own filter, so an id from outside the
    list (another user's, another organisation's) yields an empty page, never a foreign one.
    """
    if starting_after is not None:
        lookup = [
            select(column)
            .where(id_column == starting_after, *_filters(statement))
            .correlate(None)
            .scalar_subquery()
            for column in key
        ]
        after = tuple_(*key) < tuple_(*lookup) if descending else tuple_(*key) > tuple_(*lookup)
        statement = statement.where(after)
    # The caller's Page[...] annotation names the row type; Select's parameters differ
    # between SQLAlchemy 2.0 and 2.1.
    order = [column.desc() if descending else column.asc() for column in key]
    rows = (await session.scalars(statement.order_by(*order).limit(limit + 1))).all()
    return Page(items=list(rows[:limit]), has_more=len(rows) > limit)


def _filters(statement: Select[Any]) -> list[Any]:
    return [] if statement.whereclause is None else [statement.whereclause]
