"""The migrations themselves: their preconditions, and the way back from the newest one."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from sqlalchemy.exc import DBAPIError

from amply.kit.db import Database
from amply.ledger import service as ledger
from amply.migrate import alembic_config, upgrade_to_head
from tests.conftest import Cluster, IsolatedDatabase, fresh_database
from tests.factories import append, make_chain


def test_migrating_refuses_a_database_where_the_service_role_may_create_objects(
    cluster: Cluster,
) -> None:
    with fresh_database(cluster, template="template0") as empty:
        with psycopg.connect(empty.superuser_url, autocommit=True) as connection:
            connection.execute("GRANT CREATE ON SCHEMA public TO amply_app")
        with pytest.raises(DBAPIError, match="amply_app may create objects in schema public"):
            upgrade_to_head(empty.urls.migration)


async def test_the_faster_appends_migration_goes_back_and_forth_keeping_the_chain_whole(
    test_database: IsolatedDatabase,
) -> None:
    database = Database(test_database.urls.app)
    try:
        chain = await make_chain(database)
        await append(database, chain, 100)
        config = alembic_config(test_database.urls.migration)
        command.downgrade(config, "0005_wallets")
        await append(database, chain, -30)
        command.upgrade(config, "head")
        await append(database, chain, 5)
        async with database.session() as session:
            assert await ledger.get_balances(session, chain_id=chain) == {"EUR": 75}
            assert (await ledger.verify_chain(session, chain_id=chain)).ok
    finally:
        await database.dispose()
