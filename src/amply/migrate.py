"""Bring a database to the newest schema with Alembic, and tell which revision that is."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import amply

# A fixed advisory-lock key, so that several instances starting at once migrate one at a time.
MIGRATION_LOCK_KEY = 0x414D504C59  # "AMPLY"


def migrations_dir() -> Path:
    """``migrations/``: inside the installed package, or at the root of a source checkout."""
    package_dir = Path(amply.__file__).resolve().parent
    for candidate in (package_dir / "migrations", package_dir.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("Amply's migrations/ folder is missing from this installation")


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Apply every pending migration (connect as the schema owner)."""
    command.upgrade(alembic_config(url), "head")


def head_revision() -> str:
    """The revision a fully migrated database reports."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head
