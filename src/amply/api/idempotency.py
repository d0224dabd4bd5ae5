"""Running a money-moving route under its ``Idempotency-Key`` (``services/idempotency.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from amply.config import Settings
from amply.services import idempotency
from amply.services.idempotency import IdempotentRequest

REPLAYED_HEADER = "Idempotent-Replayed"


def idempotent_request(
    *, key: str | None, scope: str, request: Request, body: BaseModel | None
) -> IdempotentRequest | None:
    if key is None:
        return None
    return IdempotentRequest(
        scope=scope,
        key=idempotency.check_key(key),
        fingerprint=idempotency.fingerprint(
            method=request.method,
            path=request.url.path,
            body=body.model_dump(mode="json") if body is not None else None,
        ),
    )


async def run_idempotently(
    session: AsyncSession,
    *,
    idempotent: IdempotentRequest | None,
    settings: Settings,
    status_code: int,
    run: Callable[[], Awaitable[BaseModel]],
) -> JSONResponse:
    """The first response to this key, replayed; or ``run()``'s, remembered for retries."""
    if idempotent is not None:
        stored = await idempotency.begin(session, request=idempotent)
        if stored is not None:
            return JSONResponse(
                stored.body, status_code=stored.status_code, headers={REPLAYED_HEADER: "true"}
            )
    body = (await run()).model_dump(mode="json")
    if idempotent is not None:
        await idempotency.remember(
            session,
            request=idempotent,
            status_code=status_code,
            body=body,
            lifetime_seconds=settings.idempotency_key_lifetime_seconds,
        )
    return JSONResponse(body, status_code=status_code)
