"""Database URLs, the async engine and session factory the service uses, and the unit of
work of requests that call the network (:class:`UnitOfWork`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from amply.kit.errors import AmplyError

T = TypeVar("T")

_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg"}


def _with_driver(url: str, driver: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername not in _SCHEMES:
        raise ValueError(f"not a PostgreSQL URL: scheme {parsed.drivername!r}")
    return parsed.set(drivername=f"postgresql+{driver}")


def async_url(url: str) -> URL:
    """The URL for the service's asyncpg engine."""
    return _with_driver(url, "asyncpg")


def sync_url(url: str) -> URL:
    """The URL for psycopg (migrations and set-up scripts)."""
    return _with_driver(url, "psycopg")


class Database:
    """The service's connection pool and its session factory."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 10,
        statement_timeout_ms: int = 30_000,
    ) -> None:
        self.engine: AsyncEngine = create_async_engine(
            async_url(url),
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_pre_ping=True,
            connect_args={
                "server_settings": {
                    "statement_timeout": str(statement_timeout_ms),
                    "application_name": "amply",
                }
            },
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    def session(self) -> AsyncSession:
        return self.sessionmaker()

    async def dispose(self) -> None:
        await self.engine.dispose()


class NetworkCallInTransaction(RuntimeError):
    """A bug: a network call was about to run while this session held a transaction open."""


class UnitOfWork:
    """The request's session, for a route that calls Stripe (or another provider) on the way.

    Most requests commit once, in the request session dependency
    (``kit.dependencies.get_session``). A request that calls the network instead runs as
    short steps on the same session, each a transaction committed here and nowhere else
    (SPEC §2: no network call inside a database transaction or while a lock is held)::

        async with unit.step() as session:   # 1: check, record the intent; commit
            ...
        result = await unit.outside(lambda: gateway.create_payment(...))  # 2: no transaction
        async with unit.step() as session:   # 3: record the result; commit
            ...

    A step's commit also ends what the request did before it (authentication's bookkeeping),
    so no transaction, row lock or advisory lock survives into the network call: a slow
    provider delays this request only, never another writer to the same chain.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @asynccontextmanager
    async def step(self) -> AsyncIterator[AsyncSession]:
        """One short transaction: committed when the block ends; rolled back if it raises
        (unless the error says its changes must be kept, as the request dependency does)."""
        try:
            yield self.session
        except AmplyError as error:
            if error.keeps_changes:
                await self.session.commit()
            else:
                await self.session.rollback()
            raise
        await self.session.commit()

    async def outside(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` (a network call), refused as a bug if a transaction is open."""
        if self.session.in_transaction():
            raise NetworkCallInTransaction(
                "a network call must not run inside a database transaction: end the step first"
            )
        return await call()


def constraint_name(error: DBAPIError) -> str | None:
    """The constraint a database error names (a unique index, a check), if any."""
    cause = getattr(error.orig, "__cause__", None)
    return getattr(cause, "constraint_name", None)
