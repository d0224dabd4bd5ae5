"""Liveness and readiness, outside the versioned API."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from amply.kit.dependencies import DatabaseDep
from amply.kit.error_responses import error_responses
from amply.kit.errors import ErrorCode, NotFound, ServiceUnavailable
from amply.kit.observability import DB_POOL, metrics_registry

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok` while the process serves requests.")


class Ready(BaseModel):
    status: Literal["ready"] = Field(description="`ready`: database reachable, schema at head.")
    schema_revision: str = Field(description="The Alembic revision the database is at.")


@router.get("/health", summary="Liveness: the process is up")
async def health() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    summary="Readiness: database reachable and migrations at head",
    responses=error_responses(503, ErrorCode.NOT_READY),
)
async def ready(request: Request, database: DatabaseDep) -> Ready:
    expected: str = request.app.state.schema_head
    try:
        async with database.engine.connect() as connection:
            current = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    except (OperationalError, InterfaceError, OSError) as error:
        raise _not_ready("database unreachable") from error
    except DBAPIError as error:
        raise _not_ready("database has no Amply schema (run `amply migrate`)") from error
    if current != expected:
        raise _not_ready(f"schema at revision {current}, expected {expected}")
    return Ready(status="ready", schema_revision=expected)


def _not_ready(reason: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"not ready: {reason}", code="not_ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process (text exposition format)",
    description="Requests and latencies per route, ledger appends, Stripe events by type "
    "and outcome, and the database pool. Expose it to your monitoring network only "
    "(`AMPLY_METRICS_ENABLED=false` turns it off: 404).",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}},
        **error_responses(ErrorCode.METRICS_DISABLED),
    },
)
async def metrics(request: Request, database: DatabaseDep) -> Response:
    if not request.app.state.settings.metrics_enabled:
        raise NotFound("Metrics are turned off on this server.", code="metrics_disabled")
    pool = database.engine.pool
    # QueuePool reports these (its overflow() counts down from 0 while below its size).
    readings = {
        "checked_out": getattr(pool, "checkedout", None),
        "idle": getattr(pool, "checkedin", None),
        "overflow": getattr(pool, "overflow", None),
        "size": getattr(pool, "size", None),
    }
    for state, read in readings.items():
        if read is not None:
            DB_POOL.labels(state=state).set(max(0, read()))
    return Response(generate_latest(metrics_registry()), media_type=CONTENT_TYPE_LATEST)
