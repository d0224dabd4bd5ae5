"""A pg_dump of Amply's database, restored into a new database as docs/operations.md says,
keeps every chain verifying, and keeps the ledger's guards."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from amply.embedded import APP_ROLE, OWNER_ROLE, role_url
from amply.kit.db import Database
from amply.ledger import service as ledger
from tests.conftest import IsolatedDatabase
from tests.factories import (
    donate,
    onboarded_organisation,
    sandbox_succeed,
    sign_up,
)
from tests.support.postgres import postgres_bin_path
from tests.wallets.test_history_and_giving import give
from tests.wallets.test_transfers import befriend, send

HEADS = "SELECT chain_id, max(seq), count(*) FROM ledger_entries GROUP BY chain_id ORDER BY 1"


def _run(tool: str, *args: str) -> None:
    completed = subprocess.run(
        [str(postgres_bin_path() / tool), *args], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr


@pytest.fixture
def restored(test_database: IsolatedDatabase) -> Iterator[str]:
    """The name of an empty database owned by the schema owner, dropped afterwards."""
    name = f"{test_database.name}_restored"
    admin = test_database.superuser_url
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'").format(
                sql.Identifier(name), sql.Identifier(OWNER_ROLE)
            )
        )
    yield name
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


async def test_a_dump_restores_and_every_chain_still_verifies(
    client: httpx.AsyncClient,
    test_database: IsolatedDatabase,
    restored: str,
    tmp_path: Path,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    for amount in (2_500, 1_000):
        await sandbox_succeed(client, await donate(client, organisation_id, amount=amount))
    alice, bob = await sign_up(client), await sign_up(client)
    await befriend(client, alice, bob)
    await send(client, alice, bob, 250)
    await give(client, alice, organisation_id, 300)

    # As the documented procedure does: dump as the schema owner, restore as the schema owner
    # into an empty database where both roles exist.
    dump = tmp_path / "amply.dump"
    _run("pg_dump", "--format=custom", f"--file={dump}", f"--dbname={test_database.urls.migration}")
    superuser = test_database.superuser_url
    restored_owner = role_url(superuser, role=OWNER_ROLE, database=restored)
    _run("pg_restore", "--exit-on-error", "--no-owner", f"--dbname={restored_owner}", str(dump))

    with (
        psycopg.connect(test_database.urls.migration) as original,
        psycopg.connect(restored_owner) as copy,
    ):
        heads = original.execute(HEADS).fetchall()
        assert copy.execute(HEADS).fetchall() == heads
        hashes = "SELECT entry_hash FROM ledger_entries ORDER BY chain_id, seq"
        assert copy.execute(hashes).fetchall() == original.execute(hashes).fetchall()

    database = Database(role_url(superuser, role=APP_ROLE, database=restored))
    try:
        async with database.session() as session:
            chain_ids = [chain_id for chain_id, _, _ in heads]
            assert organisation_id in chain_ids
            for chain_id in chain_ids:
                result = await ledger.verify_chain(session, chain_id=chain_id)
                assert result.ok, (chain_id, result.verdict())
    finally:
        await database.dispose()

    # The guards came back with the schema: the service still cannot rewrite the ledger,
    # and even the owner cannot.
    with psycopg.connect(role_url(superuser, role=APP_ROLE, database=restored)) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("UPDATE ledger_entries SET amount = amount + 1")
    with psycopg.connect(restored_owner) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            connection.execute("DELETE FROM ledger_entries")
