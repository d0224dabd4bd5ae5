"""The FastAPI application."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from amply import __version__
from amply.api import health
from amply.api.boundaries import BodyLimit, SecurityHeaders
from amply.api.errors import install_error_handlers
from amply.api.page_cache import PageCache, ServeCachedPages
from amply.api.v1.router import router as v1_router
from amply.config import Settings, get_settings
from amply.db import Database
from amply.migrate import head_revision
from amply.observability import RequestContext, configure_logging
from amply.services import checkpoints, housekeeping
from amply.services.payments import gateway_for
from amply.services.verdicts import VerdictCache

DESCRIPTION = """
Transparent donations and wallets on an append-only, hash-chained ledger.

Every movement of money is an entry in a public chain that anyone can download and verify
offline; see `docs/ledger-format.md`. Amounts are integers in minor units with an ISO 4217
currency. Every error has the shape `{"error": {"type", "code", "message", "param"}}`.
"""


def create_app(
    settings: Settings, *, database_url: str, read_database_url: str | None = None
) -> FastAPI:
    """Build the app for one database (``database_url`` is the service role's URL), with
    public ledger reads on a replica when ``read_database_url`` or ``DATABASE_READ_URL`` says
    where one is."""
    database = _database(settings, database_url)
    if read_database_url is None and settings.database_read_url is not None:
        read_database_url = settings.database_read_url.get_secret_value()
    read_database = (
        database if read_database_url is None else _database(settings, read_database_url)
    )

    signer = checkpoints.load_signer(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        if settings.checkpoint_interval_seconds:
            tasks.append(
                asyncio.create_task(
                    checkpoints.run_signer(
                        database, signer=signer, interval=settings.checkpoint_interval_seconds
                    )
                )
            )
        if settings.housekeeping_interval_seconds:
            tasks.append(
                asyncio.create_task(
                    housekeeping.run_housekeeping(
                        database, interval=settings.housekeeping_interval_seconds
                    )
                )
            )
        yield
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await database.dispose()
        if read_database is not database:
            await read_database.dispose()

    app = _App(title="Amply", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.database = database
    app.state.read_database = read_database
    app.state.gateway = gateway_for(settings)
    app.state.signer = signer
    app.state.schema_head = head_revision()
    app.state.ledger_pages = PageCache()
    app.state.verdicts = VerdictCache(max_age_seconds=settings.verify_cache_seconds)
    install_error_handlers(app)
    # Inside RequestContext: kept ledger pages are logged and counted like any answer.
    app.add_middleware(ServeCachedPages, pages=app.state.ledger_pages)
    app.add_middleware(BodyLimit, max_bytes=settings.request_body_max_bytes)
    app.add_middleware(RequestContext)
    if settings.trusted_proxies:
        # Outermost: everything after it sees the client the trusted proxy named.
        app.add_middleware(
            ProxyHeadersMiddleware,
            trusted_hosts=[str(network) for network in settings.trusted_proxies],
        )
    app.include_router(health.router)
    app.include_router(v1_router)
    return app


class _App(FastAPI):
    """FastAPI with the security headers around its whole middleware stack, so that even
    the 500 of an unexpected error (sent by Starlette's outermost middleware) carries them."""

    def build_middleware_stack(self) -> ASGIApp:
        script_pages = [
            page
            for page in (self.docs_url, self.redoc_url, self.swagger_ui_oauth2_redirect_url)
            if page is not None
        ]
        return SecurityHeaders(super().build_middleware_stack(), script_pages=script_pages)


def _database(settings: Settings, url: str) -> Database:
    return Database(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )


# Where `amply serve --workers N` tells its workers the database it started or was given.
WORKER_DATABASE_URL = "AMPLY_WORKER_DATABASE_URL"


def worker_app() -> FastAPI:
    """The app of one worker process of ``amply serve --workers N`` (a uvicorn factory)."""
    settings = get_settings()
    configure_logging(level=settings.log_level, json_lines=settings.log_format == "json")
    return create_app(settings, database_url=os.environ[WORKER_DATABASE_URL])
