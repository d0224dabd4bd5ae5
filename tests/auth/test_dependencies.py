"""The request's session dependency is the one place that commits, before the response."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from amply.kit.dependencies import SessionDep
from amply.kit.ids import generate_id
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.ledger.service import Leg, append_args, append_sql
from amply.main import create_app
from tests.conftest import IsolatedDatabase


def app_with_test_routes(settings: Settings, database_url: str) -> FastAPI:
    app = create_app(settings, database_url=database_url)

    @app.post("/test/chains/{chain_id}/deposit")
    async def deposit(chain_id: str, session: SessionDep) -> dict[str, int]:
        await ledger.create_chain(session, chain_id=chain_id, kind="wallet")
        [entry] = await ledger.append_journal(session, legs=[Leg(chain_id, "deposit", 500, "EUR")])
        return {"seq": entry.seq}

    @app.post("/test/chains/{chain_id}/unbalanced")
    async def unbalanced(chain_id: str, session: SessionDep) -> dict[str, str]:
        # Bypasses the service's own check to reach the database's deferred one.
        connection = await session.connection()
        leg = (generate_id("led"), chain_id, "transfer_in", 5, "EUR", "{}")
        await connection.exec_driver_sql(append_sql(1), append_args([leg], generate_id("jrn")))
        return {"status": "looks fine until commit"}

    return app


@pytest.fixture
async def http(
    settings: Settings, test_database: IsolatedDatabase
) -> AsyncIterator[httpx.AsyncClient]:
    app = app_with_test_routes(settings, test_database.urls.app)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://amply.test") as client,
    ):
        yield client


async def test_a_route_that_returns_has_committed(http: httpx.AsyncClient) -> None:
    response = await http.post("/test/chains/wal_Committed/deposit")
    assert response.json() == {"seq": 1}
    again = await http.post("/test/chains/wal_Committed/deposit")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "chain_exists"


async def test_a_failed_commit_is_the_response_and_nothing_is_written(
    http: httpx.AsyncClient, test_database: IsolatedDatabase
) -> None:
    await http.post("/test/chains/wal_Target/deposit")
    response = await http.post("/test/chains/wal_Target/unbalanced")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    with psycopg.connect(test_database.urls.app) as connection:
        rows = connection.execute(
            "SELECT type FROM ledger_entries WHERE chain_id = 'wal_Target'"
        ).fetchall()
    assert rows == [("deposit",)]


async def test_an_unreachable_database_is_a_503_not_a_500(
    settings: Settings, tmp_path: Path
) -> None:
    # What a stopped embedded server leaves behind: a socket directory with no server in it.
    app = app_with_test_routes(settings, f"postgresql://amply_app@/amply?host={tmp_path}")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://amply.test") as client,
    ):
        response = await client.post("/test/chains/wal_Down/deposit")
        ready = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.headers["retry-after"] == "1"
    assert ready.status_code == 503
    assert ready.json()["error"]["message"] == "not ready: database unreachable"
