"""The FastAPI application."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from amply import __version__, health
from amply.api import router as v1_router
from amply.auth.dependencies import get_caller, get_optional_api_key
from amply.kit.boundaries import BodyLimit, SecurityHeaders
from amply.kit.db import Database
from amply.kit.error_responses import ERROR_COMPONENT, install_error_handlers
from amply.kit.errors import ERROR_CODES
from amply.kit.observability import RequestContext, configure_logging, json_logs
from amply.kit.page_cache import PageCache, ServeCachedPages
from amply.kit.settings import Settings, get_settings
from amply.ledger import checkpoints
from amply.ledger.verdicts import VerdictCache
from amply.migrate import head_revision
from amply.payments.gateway import gateway_for
from amply.site.routes import router as site_router
from amply.wallets import housekeeping
from amply.webhooks import reconciliation

DESCRIPTION = """
Transparent donations and wallets on an append-only, hash-chained ledger.

Every movement of money is an entry in a public chain that anyone can download and verify
offline; see `docs/ledger-format.md`. Amounts are integers in minor units with an ISO 4217
currency. Every error has the shape `{"error": {"type", "code", "message", "param"}}`.

**Authorize** (the button above) with one of three credentials: a session token (`sess_…`,
from `POST /v1/auth/login` with `"session_type": "token"`), an organisation's API key
(`sk_test_…`), or, from a browser, the session cookie with its CSRF token. Try it without
Stripe keys in sandbox mode: `amply demo` fills the database with examples.
"""

DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL = "/docs", "/redoc", "/docs/oauth2-redirect"
# Swagger UI and Redoc from the installed fastapi-offline package: /docs works offline.
DOCS_ASSETS_URL = "/docs/assets"
_DOCS_ASSETS = files("fastapi_offline") / "static"


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
        if settings.reconcile_interval:
            tasks.append(
                asyncio.create_task(
                    reconciliation.run_reconciliation(
                        database,
                        source=reconciliation.balance_source(settings, database),
                        interval=settings.reconcile_interval,
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

    app = _App(
        title="Amply",
        version=__version__,
        description=DESCRIPTION + _error_catalogue(),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        swagger_ui_parameters={"persistAuthorization": True},
    )
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
    app.include_router(site_router)  # the public site, `/` included
    _install_docs(app)
    return app


def _install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their assets served by Amply."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=str(_DOCS_ASSETS)), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "")
        assets = f"{root_path}{DOCS_ASSETS_URL}"
        return get_swagger_ui_html(
            openapi_url=f"{root_path}{app.openapi_url}",
            title="Amply API",
            oauth2_redirect_url=f"{root_path}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root_path = request.scope.get("root_path", "")
        assets = f"{root_path}{DOCS_ASSETS_URL}"
        return get_redoc_html(
            openapi_url=f"{root_path}{app.openapi_url}",
            title="Amply API",
            redoc_js_url=f"{assets}/redoc.standalone.js",
            redoc_favicon_url=f"{assets}/favicon.png",
            with_google_fonts=False,
        )


def _error_catalogue() -> str:
    rows = "\n".join(f"| `{code}` | {meaning} |" for code, meaning in ERROR_CODES.items())
    return f"\n## Error codes\n\n| code | meaning |\n|---|---|\n{rows}\n"


# --- Security schemes: what the Authorize button of /docs offers -----------------------------

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "session": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "sess_…",
        "description": "A session token: `POST /v1/auth/login` (or `/v1/auth/signup`) with "
        '`"session_type": "token"` answers `session.token`; send it as `Authorization: '
        "Bearer sess_…`. Needs no CSRF token.",
    },
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "sk_test_… / sk_live_…",
        "description": "An organisation's API key, created by one of its admins (`POST "
        "/v1/organisations/{id}/api-keys`), sent as `Authorization: Bearer sk_test_…`. Only "
        "the organisation's API endpoints accept it; a read-only key cannot write.",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "amply_session",
        "description": 'Browser dashboards: `POST /v1/auth/login` with `"session_type": '
        '"cookie"` sets the `HttpOnly` cookie (`amply_session` in development, '
        "`__Host-amply_session` elsewhere) and answers `session.csrf_token`. Every `POST`, "
        "`PATCH`, `PUT` and `DELETE` made with the cookie must also send that token as "
        "`X-CSRF-Token` (scheme `csrfToken`); `GET /v1/auth/me` gives it again after a "
        "reload. An `Authorization` header, when sent, wins over the cookie.",
    },
    "csrfToken": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF-Token",
        "description": "The session's CSRF token (`session.csrf_token` of the login), "
        "required with the session cookie on every `POST`, `PATCH`, `PUT` and `DELETE`: "
        "missing is 403 `csrf_token_missing`, wrong is 403 `csrf_token_invalid`.",
    },
}
_UNSAFE_METHODS = frozenset({"post", "put", "patch", "delete"})


def _calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _calls(dependency)


def _security(route: APIRoute, method: str) -> list[dict[str, list[str]]] | None:
    """Which credentials an operation takes: a session (bearer or cookie), an API key."""
    calls = list(_calls(route.dependant))
    takes_caller = get_caller in calls
    takes_key = get_optional_api_key in calls or any(
        getattr(call, "__qualname__", "").startswith("_organisation_access")
        and _closure(call).get("scope") is not None
        for call in calls
    )
    if not takes_caller and not takes_key:
        return None
    requirements: list[dict[str, list[str]]] = []
    if takes_caller:
        cookie: dict[str, list[str]] = {"sessionCookie": []}
        if method in _UNSAFE_METHODS:
            cookie["csrfToken"] = []
        requirements += [{"session": []}, cookie]
    if takes_key:
        requirements.append({"apiKey": []})
    if get_optional_api_key in calls and not takes_caller:
        requirements.append({})  # public: the key is optional
    return requirements


def _closure(call: Any) -> dict[str, Any]:
    cells = getattr(call, "__closure__", None) or ()
    names = getattr(getattr(call, "__code__", None), "co_freevars", ())
    return {name: cell.cell_contents for name, cell in zip(names, cells, strict=False)}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, plus the security schemes, each operation's credentials and the
    ``Error`` schema every error response refers to."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    components["securitySchemes"] = SECURITY_SCHEMES
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in context.methods or ():
            operation = document["paths"].get(context.path_format, {}).get(method.lower())
            security = _security(route, method.lower())
            if operation is not None and security is not None:
                operation["security"] = security
    app.openapi_schema = document
    return document


class _App(FastAPI):
    """FastAPI with the security headers around its whole middleware stack, so that even
    the 500 of an unexpected error (sent by Starlette's outermost middleware) carries them,
    and the OpenAPI document of :func:`openapi_document`."""

    def build_middleware_stack(self) -> ASGIApp:
        script_pages = [DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL]
        return SecurityHeaders(super().build_middleware_stack(), script_pages=script_pages)

    def openapi(self) -> dict[str, Any]:
        return openapi_document(self)


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
    configure_logging(level=settings.log_level, json_lines=json_logs(settings))
    return create_app(settings, database_url=os.environ[WORKER_DATABASE_URL])
