"""The dependencies every route may use: the request's database session (the one place that
commits), the unit of work for routes that call Stripe, the read replica, settings, and the
``Idempotency-Key`` header."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import Database, UnitOfWork
from amply.kit.errors import AmplyError
from amply.kit.settings import Settings


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    """A session per request, committed when the route returns, before the response is sent.

    If the route raises, nothing is committed, unless the error says its changes must be
    kept (:attr:`AmplyError.keeps_changes`: a failed login's throttling count). A commit
    that fails (a deferred ledger check, say) becomes the response instead of a success the
    client would wrongly trust.
    """
    async with database.session() as session:
        try:
            yield session
        except AmplyError as error:
            if error.keeps_changes:
                await session.commit()
            raise
        await session.commit()


# scope="function": the code after ``yield`` (the commit) runs before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]


def get_unit_of_work(session: SessionDep) -> UnitOfWork:
    """The request's session as short committed steps, for routes that call Stripe: see
    :class:`amply.kit.db.UnitOfWork`. Whatever the route does after its last step is committed
    by :func:`get_session` as usual."""
    return UnitOfWork(session)


UnitOfWorkDep = Annotated[UnitOfWork, Depends(get_unit_of_work)]


def get_read_database(request: Request) -> Database:
    """The read replica (``DATABASE_READ_URL``), or the primary when there is none."""
    database: Database = request.app.state.read_database
    return database


async def get_read_session(
    database: Annotated[Database, Depends(get_read_database)],
) -> AsyncIterator[AsyncSession]:
    """A session for public reads that may lag the primary a little; it never commits."""
    async with database.session() as session:
        yield session


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
ReadDatabaseDep = Annotated[Database, Depends(get_read_database)]


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="A unique key (16-255 visible ASCII characters; a UUID is ideal). A retry "
        "with the same key and body returns the first response and moves nothing twice.",
    ),
]
RequiredIdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        description="Required: a unique key (16-255 visible ASCII characters; a UUID is "
        "ideal). A retry with the same key and body returns the first response.",
    ),
]
