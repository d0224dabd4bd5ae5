"""Alembic environment: runs migrations synchronously through psycopg as the schema owner.

psycopg sends a parameterless script in one round trip, so each migration can keep its
trigger and function definitions as whole, readable SQL blocks.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from amply.kit.db import sync_url
from amply.kit.settings import get_settings
from amply.migrate import MIGRATION_LOCK_KEY


def _database_url() -> str:
    configured = context.config.get_main_option("sqlalchemy.url")
    if configured:
        return configured
    settings = get_settings()
    secret = settings.database_migration_url or settings.database_url
    if secret is None:
        raise SystemExit(
            "No database configured: set DATABASE_MIGRATION_URL (or DATABASE_URL), "
            "or run `amply migrate`, which starts the embedded PostgreSQL."
        )
    return secret.get_secret_value()


def run_migrations_online() -> None:
    engine = create_engine(sync_url(_database_url()), poolclass=pool.NullPool)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
        try:
            context.configure(connection=connection, transaction_per_migration=True)
            with context.begin_transaction():
                context.run_migrations()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported: run them against a database.")
run_migrations_online()
