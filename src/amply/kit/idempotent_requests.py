"""Running a money-moving route under its ``Idempotency-Key`` (``kit/idempotency.py``).

Routes take :data:`IdempotencyDep` and answer with one call::

    return await idempotency.respond(
        key=idempotency_key, scope=f"user:{user.id}", body=body, status_code=201, run=send
    )

(:meth:`Idempotency.respond_in_steps` for a route that calls Stripe.)"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit import idempotency
from amply.kit.db import UnitOfWork
from amply.kit.dependencies import SessionDep, SettingsDep
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
    stored = await _stored(session, idempotent)
    if stored is not None:
        return stored
    return await _remembered(
        session, idempotent=idempotent, settings=settings, status_code=status_code, response=run()
    )


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
        return await _remembered(
            session,
            idempotent=idempotent,
            settings=settings,
            status_code=status_code,
            response=record(session, prepared, result),
        )


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


async def _remembered(
    session: AsyncSession,
    *,
    idempotent: IdempotentRequest | None,
    settings: Settings,
    status_code: int,
    response: Awaitable[BaseModel],
) -> JSONResponse:
    """The route's ``response``, stored for the key's retries (if a key was sent)."""
    body = (await response).model_dump(mode="json")
    if idempotent is not None:
        await idempotency.remember(
            session,
            request=idempotent,
            status_code=status_code,
            body=body,
            lifetime_seconds=settings.idempotency_key_lifetime_seconds,
        )
    return JSONResponse(body, status_code=status_code)


@dataclass(frozen=True)
class Idempotency:
    """The ``Idempotency-Key`` protocol of one request: check the key, replay the first
    response to it, or run the route and remember its response for retries."""

    request: Request
    session: AsyncSession
    settings: Settings

    async def respond(
        self,
        *,
        key: str | None,
        scope: str,
        body: BaseModel | None,
        status_code: int,
        run: Callable[[IdempotentRequest | None], Awaitable[BaseModel]],
    ) -> JSONResponse:
        """``run``'s response (it is given the key's request, for services that derive ids
        from it), or the first response to the key, replayed. ``key`` None: no key sent."""
        idempotent = idempotent_request(key=key, scope=scope, request=self.request, body=body)
        return await run_idempotently(
            self.session,
            idempotent=idempotent,
            settings=self.settings,
            status_code=status_code,
            run=lambda: run(idempotent),
        )

    async def respond_in_steps(
        self,
        *,
        key: str | None,
        scope: str,
        body: BaseModel,
        status_code: int,
        prepare: Callable[[AsyncSession, IdempotentRequest | None], Awaitable[P]],
        call: Callable[[P], Awaitable[R]],
        record: Callable[[AsyncSession, P, R], Awaitable[BaseModel]],
    ) -> JSONResponse:
        """:meth:`respond` for a route that calls Stripe (:func:`run_in_steps`)."""
        idempotent = idempotent_request(key=key, scope=scope, request=self.request, body=body)
        return await run_in_steps(
            UnitOfWork(self.session),
            idempotent=idempotent,
            settings=self.settings,
            status_code=status_code,
            prepare=lambda session: prepare(session, idempotent),
            call=call,
            record=record,
        )


def get_idempotency(request: Request, session: SessionDep, settings: SettingsDep) -> Idempotency:
    return Idempotency(request=request, session=session, settings=settings)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]
