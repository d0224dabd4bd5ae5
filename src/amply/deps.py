"""Request dependencies. The session dependency is the one place that commits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from amply.db import Database


def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[AsyncSession]:
    """A session per request, committed when the route returns, before the response is sent.

    If the route raises, nothing is committed. A commit that fails (a deferred ledger check,
    say) becomes the response instead of a success the client would wrongly trust.
    """
    async with database.session() as session:
        yield session
        await session.commit()


# scope="function": the code after ``yield`` (the commit) runs before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
