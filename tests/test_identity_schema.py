"""The database's own guards on identity data (migration 0002)."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.conftest import IsolatedDatabase
from tests.factories import sign_up


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE security_events SET type = 'nothing_happened'",
        "DELETE FROM security_events",
        "DELETE FROM users",
        "DELETE FROM api_keys",
        "TRUNCATE auth_sessions",
    ],
)
async def test_the_service_role_cannot_rewrite_the_security_log_or_delete_accounts(
    client: httpx.AsyncClient, test_database: IsolatedDatabase, statement: str
) -> None:
    await sign_up(client)

    with (
        psycopg.connect(test_database.urls.app) as connection,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        connection.execute(statement)


async def test_case_variants_of_a_username_cannot_both_be_inserted(
    client: httpx.AsyncClient, test_database: IsolatedDatabase
) -> None:
    account = await sign_up(client, username="Unique_One")

    with (
        psycopg.connect(test_database.urls.app) as connection,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):
        connection.execute(
            "INSERT INTO users (id, name, username, email, password_hash) VALUES "
            "('usr_000000000000000000000000', 'X', 'UNIQUE_ONE', 'x@example.org', '$argon2id$x')"
        )
    assert account.username == "Unique_One"
