"""Database URLs, the async engine and session factory the service uses."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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


def constraint_name(error: DBAPIError) -> str | None:
    """The constraint a database error names (a unique index, a check), if any."""
    cause = getattr(error.orig, "__cause__", None)
    return getattr(cause, "constraint_name", None)
