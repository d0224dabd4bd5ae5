"""What an operator sees: one structured JSON log line per request (with a request id that
follows the request through every log line it causes), and Prometheus metrics.

The access log names the route *template* (``/v1/transfers/{transfer_id}``), never the path
with its ids, and never a header, query string, body, token, email or card detail.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from amply.kit.settings import Settings

REQUEST_ID_HEADER: Final = "X-Request-ID"
_REQUEST_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_id_var: ContextVar[str | None] = ContextVar("amply_request_id", default=None)
access_logger = logging.getLogger("amply.access")

# --- Metrics (the process's default Prometheus registry) -------------------------------------

HTTP_REQUESTS = Counter(
    "amply_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "amply_http_request_duration_seconds",
    "Time from receiving a request to sending its last byte, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LEDGER_APPENDS = Counter(
    "amply_ledger_entries_appended",
    "Ledger entries the database accepted, by chain kind and entry type (a transaction that "
    "later rolls back still counted them).",
    ["chain_kind", "entry_type"],
)
STRIPE_EVENTS = Counter(
    "amply_stripe_events",
    "Stripe (and sandbox) events received, by type, source and outcome.",
    ["type", "source", "outcome"],
)
RECONCILIATION_DIFFERENCES = Gauge(
    "amply_reconciliation_differences",
    "Differences between an organisation's chain and its Stripe balance transactions at the "
    "last reconciliation that could ask Stripe (0: they agree).",
    ["organisation"],
    multiprocess_mode="mostrecent",
)
RECONCILIATION_LAST_SUCCESS = Gauge(
    "amply_reconciliation_last_success_timestamp",
    "When (Unix time) a reconciliation pass last asked Stripe about every organisation.",
    multiprocess_mode="max",
)
RECONCILIATION_RUNS = Counter(
    "amply_reconciliation_runs",
    "Reconciliation passes, by outcome (ok: every account answered; error: one did not, or "
    "the database was away).",
    ["outcome"],
)
DB_POOL = Gauge(
    "amply_db_pool_connections",
    "Database connections of the pools of all live processes, by state (read at each scrape).",
    ["state"],
    multiprocess_mode="livesum",
)


def metrics_registry() -> CollectorRegistry:
    """This process's metrics; under ``amply serve --workers N`` (PROMETHEUS_MULTIPROC_DIR
    set), every worker's, added up."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


_CHAIN_KINDS: Final = {"org": "organisation", "wal": "wallet", "plat": "platform"}


def count_ledger_appends(entries: list[tuple[str, str]]) -> None:
    """Count appended entries, given as (chain id, entry type)."""
    for chain_id, entry_type in entries:
        kind = _CHAIN_KINDS.get(chain_id.split("_", 1)[0], "other")
        LEDGER_APPENDS.labels(chain_kind=kind, entry_type=entry_type).inc()


# --- Logging ---------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id when there is
    one, and the structured fields a log call passes as ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            line["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def json_logs(settings: Settings) -> bool:
    """JSON lines unless ``AMPLY_LOG_FORMAT`` says otherwise: plain text when nobody set it
    and a person is watching (standard error is a terminal), JSON for everything else."""
    if "log_format" in settings.model_fields_set:
        return settings.log_format == "json"
    return not sys.stderr.isatty()


def configure_logging(*, level: str, json_lines: bool) -> None:
    """Route every logger (uvicorn's included) through one handler on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level, unless uvicorn sets its own after


# --- The middleware --------------------------------------------------------------------------


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            presented = bytes(value).decode("latin-1")
            if _REQUEST_ID_PATTERN.match(presented):
                return presented
            break
    return uuid.uuid4().hex


class RequestContext:
    """Gives each HTTP request an id (the caller's ``X-Request-ID`` if well formed, else a
    new one), echoes it in the response, and when the response is sent logs one access line
    and records the request's metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def _template(scope: Scope) -> str:
        """The route template the path matched, e.g. ``/v1/transfers/{transfer_id}``.

        The matched route of a router included with a prefix knows its path without the
        prefix (``/transfers/{transfer_id}``); the prefix is the request path's leading
        segments that the route's own segments do not cover (no route takes a ``/`` in a
        path parameter)."""
        path = getattr(scope.get("route"), "path", None)
        if not isinstance(path, str) or not path:
            return "unmatched"
        requested = scope.get("path", "").rstrip("/").split("/")
        own = path.rstrip("/").split("/")
        extra = len(requested) - len(own)
        if extra <= 0:
            return path
        return "/" + "/".join(requested[1 : 1 + extra]) + path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, status=status, seconds=time.perf_counter() - started)
            request_id_var.reset(token)

    def _record(self, scope: Scope, *, status: int, seconds: float) -> None:
        method = scope.get("method", "")
        template = self._template(scope)
        HTTP_REQUESTS.labels(method=method, route=template, status=str(status)).inc()
        HTTP_LATENCY.labels(method=method, route=template).observe(seconds)
        state = scope.get("state") or {}
        access_logger.info(
            "%s %s %s",
            method,
            template,
            status,
            extra={
                "fields": {
                    "request_id": request_id_var.get(),
                    "method": method,
                    "route": template,
                    "status": status,
                    "latency_ms": round(seconds * 1000, 3),
                    "caller": state.get("caller_kind", "anonymous"),
                }
            },
        )
