from __future__ import annotations

import httpx
import psycopg

from amply.migrate import head_revision
from tests.conftest import IsolatedDatabase


async def test_health_answers_while_the_process_runs(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_reports_the_schema_revision_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "schema_revision": head_revision()}


async def test_ready_is_503_when_migrations_are_behind(
    client: httpx.AsyncClient, test_database: IsolatedDatabase
) -> None:
    with psycopg.connect(test_database.urls.migration, autocommit=True) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'older'")
    response = await client.get("/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "not_ready"
    assert "older" in error["message"]


async def test_ready_is_503_when_the_schema_is_missing(
    client: httpx.AsyncClient, test_database: IsolatedDatabase
) -> None:
    with psycopg.connect(test_database.urls.migration, autocommit=True) as connection:
        connection.execute("DROP TABLE alembic_version")
    response = await client.get("/ready")
    assert response.status_code == 503
    assert "amply migrate" in response.json()["error"]["message"]


async def test_unknown_route_is_a_404_in_the_standard_error_shape(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": "Not Found",
            "param": None,
        }
    }
