"""The SQL files of ``migrations/sql/`` are what the migrations install (its README.md).

Each function of the schema has one file per version, ``migrations/sql/<function>/<rev>.sql``,
loaded by the migration numbered ``<rev>``; at every revision the database holds, for each
function, exactly the newest file at or before that revision. A file is compared with the
database by loading it into the migrated database, inside a transaction that is rolled back:
it must replace exactly its own function (the one its folder names) and leave that function's
definition (``pg_get_functiondef``: body, arguments, attributes) as it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.conftest import IsolatedDatabase

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
SQL_DIR = MIGRATIONS / "sql"
# The oldest revision a downgrade reaches: 0001 to 0005 are forward-only.
FORWARD_ONLY_UP_TO = "0005_wallets"

# The functions of the public schema that no extension brought, with their definitions.
PUBLIC_FUNCTIONS = """
SELECT p.proname, pg_catalog.pg_get_functiondef(p.oid)
  FROM pg_catalog.pg_proc AS p
 WHERE p.pronamespace = 'public'::regnamespace
   AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend AS d
                    WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid
                      AND d.deptype = 'e')
"""
# The functions this transaction created or replaced (their pg_proc rows are its own).
TOUCHED_FUNCTIONS = """
SELECT proname FROM pg_catalog.pg_proc
 WHERE xmin::text::bigint = pg_catalog.pg_current_xact_id()::text::bigint % 4294967296
"""


def sql_files() -> dict[str, dict[str, Path]]:
    """Every file of migrations/sql/: function name -> revision number -> path."""
    files: dict[str, dict[str, Path]] = {}
    for path in sorted(SQL_DIR.glob("*/*.sql")):
        files.setdefault(path.parent.name, {})[path.stem] = path
    return files


def newest_files_at(number: str) -> dict[str, Path]:
    """For each function, its newest file at or before the revision numbered ``number``."""
    newest: dict[str, Path] = {}
    for function, versions in sql_files().items():
        installed = [rev for rev in versions if rev <= number]
        if installed:
            newest[function] = versions[max(installed)]
    return newest


def revision_number(revision: str) -> str:
    return revision.split("_", 1)[0]


def alembic_config(database: IsolatedDatabase) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database.urls.migration.replace("%", "%%"))
    return config


@contextmanager
def owner_connection(database: IsolatedDatabase) -> Iterator[psycopg.Connection]:
    """A connection as the schema owner, the role the migrations run as."""
    with psycopg.connect(database.urls.migration) as connection:
        yield connection


def differences_from_files(database: IsolatedDatabase, files: dict[str, Path]) -> list[str]:
    """How the database's functions differ from ``files`` (function name -> file)."""
    problems: list[str] = []
    with owner_connection(database) as connection:
        definitions = dict(connection.execute(PUBLIC_FUNCTIONS).fetchall())
        connection.rollback()
        for name in sorted(definitions.keys() - files.keys()):
            problems.append(f"function {name}() has no file in migrations/sql/")
        for name in sorted(files.keys() - definitions.keys()):
            problems.append(f"{files[name].relative_to(MIGRATIONS)} defines no function there is")
        for name in sorted(files.keys() & definitions.keys()):
            path = files[name].relative_to(MIGRATIONS)
            # A file is one statement, run as migrations run it: no parameters, so its % signs
            # are its own.
            connection.execute(files[name].read_text(encoding="utf-8"))
            touched = {row[0] for row in connection.execute(TOUCHED_FUNCTIONS)}
            reloaded = dict(connection.execute(PUBLIC_FUNCTIONS).fetchall())
            connection.rollback()
            if touched != {name}:
                problems.append(f"{path} defines {sorted(touched)}, not only {name}()")
            elif reloaded != definitions:
                problems.append(f"{path} is not the definition of {name}() in the database")
    return problems


def test_every_sql_file_is_a_commented_function_version_its_migration_loads() -> None:
    loaded_by = {
        revision_number(script.revision): set(
            re.findall(r'load\("(\w+/\d+)"\)', Path(script.path).read_text(encoding="utf-8"))
        )
        for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()
    }
    files = sql_files()
    assert len(files) > 40  # the glob found the folder
    problems: list[str] = []
    for function, versions in files.items():
        for number, path in versions.items():
            text = path.read_text(encoding="utf-8")
            shown = path.relative_to(MIGRATIONS)
            created = re.findall(r"^CREATE OR REPLACE FUNCTION (\w+)\(", text, flags=re.MULTILINE)
            if not text.startswith("-- "):
                problems.append(f"{shown}: say first which invariant it guards")
            if created != [function]:
                problems.append(
                    f"{shown}: one CREATE OR REPLACE FUNCTION {function}(), not {created}"
                )
            if f"{function}/{number}" not in loaded_by.get(number, set()):
                problems.append(f"{shown}: the migration numbered {number} does not load it")
    assert problems == []


def test_every_live_function_matches_its_newest_sql_file(
    test_database: IsolatedDatabase,
) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    assert differences_from_files(test_database, newest_files_at(revision_number(head))) == []


def test_every_downgrade_restores_the_sql_files_of_the_revision_it_returns_to(
    test_database: IsolatedDatabase,
) -> None:
    config = alembic_config(test_database)
    scripts = ScriptDirectory.from_config(config)
    problems: list[str] = []
    for script in scripts.walk_revisions():  # newest first
        if script.revision == FORWARD_ONLY_UP_TO or script.down_revision is None:
            break
        assert isinstance(script.down_revision, str)
        command.downgrade(config, script.down_revision)
        files = newest_files_at(revision_number(script.down_revision))
        problems += [
            f"at {script.down_revision}: {problem}"
            for problem in differences_from_files(test_database, files)
        ]
    command.upgrade(config, "head")
    head = scripts.get_current_head()
    assert head is not None
    problems += [
        f"back at head: {problem}"
        for problem in differences_from_files(test_database, newest_files_at(revision_number(head)))
    ]
    assert problems == []
