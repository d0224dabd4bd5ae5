"""Running a money-moving route under its ``Idempotency-Key`` (``kit/idempotency.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit import idempotency
from amply.kit.db import UnitOfWork
from amply.kit.idempotency import IdempotentRequest
from amply.kit.settings import Settings

REPLAYED_HEADER = "Idempotent-Replayed"
P = TypeVar("P")
R = TypeVar("R")


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


async def run_in_steps(
    unit: UnitOfWork,
    *,
    idempotent: IdempotentRequest | None,
    settings: Settings,
    status_code: int,
    prepare: Callable[[AsyncSession], Awaitable[P]],
    call: Callable[[P], Awaitable[R]],
    record: Callable[[AsyncSession, P, R], Awaitable[BaseModel]],
) -> JSONResponse:
    """:func:`run_idempotently` for a route that calls Stripe: three short steps, so that
    no transaction is open and no lock held while Stripe answers.

    1. Under the key's lock: replay the first response, or ``prepare`` (checks, derived
       ids); committed.
    2. ``call`` Stripe, outside any transaction. Concurrent requests with one key make the
       same call under the same Stripe idempotency key, and get the same object.
    3. Under the key's lock again: replay what a concurrent request with the key stored
       meanwhile, or ``record`` the result and store the response, committed together: the
       response is stored exactly once, with the final result.

    If any step fails, nothing is stored for the key: a retry runs afresh and, within
    Stripe's idempotency window, gets the same Stripe object.
    """
    async with unit.step() as session:
        stored = await _stored(session, idempotent)
        if stored is not None:
            return stored
        prepared = await prepare(session)
    result = await unit.outside(lambda: call(prepared))
    async with unit.step() as session:
        stored = await _stored(session, idempotent)
        if stored is not None:
            return stored
        body = (await record(session, prepared, result)).model_dump(mode="json")
        if idempotent is not None:
            await idempotency.remember(
                session,
                request=idempotent,
                status_code=status_code,
                body=body,
                lifetime_seconds=settings.idempotency_key_lifetime_seconds,
            )
    return JSONResponse(body, status_code=status_code)


async def _stored(
    session: AsyncSession, idempotent: IdempotentRequest | None
) -> JSONResponse | None:
    """The replayed first response to the key (locking it for this step), if there is one."""
    if idempotent is None:
        return None
    stored = await idempotency.begin(session, request=idempotent)
    if stored is None:
        return None
    return JSONResponse(
        stored.body, status_code=stored.status_code, headers={REPLAYED_HEADER: "true"}
    )
