"""The SQL files of ``migrations/sql/`` are what the migrations install (its README.md).

Each function of the schema has one file per version, ``migrations/sql/<function>/<rev>.sql``,
and so has each trigger, ``migrations/sql/triggers/<trigger>/<rev>.sql``, loaded by the
migration numbered ``<rev>``; at every revision the database holds, for each function and each
trigger, exactly the newest file at or before that revision (a trigger whose newest file drops
it is gone). A file is compared with the database by loading it into the migrated database,
inside a transaction that is rolled back: a function's file must replace exactly its own
function (the one its folder names) and leave that function's definition
(``pg_get_functiondef``: body, arguments, attributes) as it was; a trigger's file, run once the
trigger is dropped, must create exactly that trigger again, with the same definition
(``pg_get_triggerdef``) and the same firing state (``ENABLE ALWAYS`` or not).
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
from psycopg import sql

from tests.conftest import IsolatedDatabase

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"
SQL_DIR = MIGRATIONS / "sql"
TRIGGERS_DIR = SQL_DIR / "triggers"
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

# The triggers of the public schema's tables that are not PostgreSQL's own (those implementing
# foreign keys), with their tables, definitions and firing states ('O' origin and local, 'A'
# always, ...).
PUBLIC_TRIGGERS = """
SELECT t.tgname, c.relname, pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled::text
  FROM pg_catalog.pg_trigger AS t
  JOIN pg_catalog.pg_class AS c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal
"""
# The triggers this transaction created or changed.
TOUCHED_TRIGGERS = """
SELECT tgname FROM pg_catalog.pg_trigger
 WHERE xmin::text::bigint = pg_catalog.pg_current_xact_id()::text::bigint % 4294967296
"""
# The statement a trigger's file starts with (after its comment): it creates the trigger its
# folder names, or, for the version that removed it, drops it.
TRIGGER_STATEMENT = re.compile(
    r"^(?:CREATE (?:CONSTRAINT )?TRIGGER (\w+)|DROP TRIGGER (\w+) ON )", flags=re.MULTILINE
)
# A trigger written in a migration rather than in its file.
INLINE_TRIGGER = re.compile(r"\bCREATE\s+(?:CONSTRAINT\s+)?TRIGGER\b", flags=re.IGNORECASE)


def sql_files() -> dict[str, dict[str, Path]]:
    """Every function file of migrations/sql/: function name -> revision number -> path."""
    files: dict[str, dict[str, Path]] = {}
    for path in sorted(SQL_DIR.glob("*/*.sql")):
        if path.parent != TRIGGERS_DIR:
            files.setdefault(path.parent.name, {})[path.stem] = path
    return files


def trigger_files() -> dict[str, dict[str, Path]]:
    """Every file of migrations/sql/triggers/: trigger name -> revision number -> path."""
    files: dict[str, dict[str, Path]] = {}
    for path in sorted(TRIGGERS_DIR.glob("*/*.sql")):
        files.setdefault(path.parent.name, {})[path.stem] = path
    return files


def newest_at(versions: dict[str, Path], number: str) -> Path | None:
    """The newest of ``versions`` at or before the revision numbered ``number``."""
    installed = [rev for rev in versions if rev <= number]
    return versions[max(installed)] if installed else None


def newest_files_at(number: str) -> dict[str, Path]:
    """For each function, its newest file at or before the revision numbered ``number``."""
    newest: dict[str, Path] = {}
    for function, versions in sql_files().items():
        path = newest_at(versions, number)
        if path is not None:
            newest[function] = path
    return newest


def creates_trigger(path: Path) -> bool:
    """Whether a trigger's file creates it (rather than dropping it)."""
    match = TRIGGER_STATEMENT.search(path.read_text(encoding="utf-8"))
    return match is not None and match[1] is not None


def newest_trigger_files_at(number: str) -> dict[str, Path]:
    """For each trigger the database holds at the revision numbered ``number``, its newest file
    at or before that revision."""
    newest: dict[str, Path] = {}
    for trigger, versions in trigger_files().items():
        path = newest_at(versions, number)
        if path is not None and creates_trigger(path):
            newest[trigger] = path
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


def differences_from_trigger_files(database: IsolatedDatabase, files: dict[str, Path]) -> list[str]:
    """How the database's triggers differ from ``files`` (trigger name -> file)."""
    problems: list[str] = []
    with owner_connection(database) as connection:
        rows = connection.execute(PUBLIC_TRIGGERS).fetchall()
        connection.rollback()
        tables = {trigger: table for trigger, table, _, _ in rows}
        definitions = {trigger: tuple(rest) for trigger, *rest in rows}
        names = [trigger for trigger, *_ in rows]
        # A file per trigger needs one name per trigger.
        for name in sorted({name for name in names if names.count(name) > 1}):
            problems.append(f"trigger {name} is the name of triggers on two tables")
        for name in sorted(definitions.keys() - files.keys()):
            problems.append(f"trigger {name} on {tables[name]} has no file in migrations/sql/")
        for name in sorted(files.keys() - definitions.keys()):
            problems.append(f"{files[name].relative_to(MIGRATIONS)} creates no trigger there is")
        for name in sorted(files.keys() & definitions.keys()):
            path = files[name].relative_to(MIGRATIONS)
            connection.execute(
                sql.SQL("DROP TRIGGER {} ON {}").format(
                    sql.Identifier(name), sql.Identifier("public", tables[name])
                )
            )
            # As migrations run it: no parameters, so its % signs are its own.
            connection.execute(files[name].read_text(encoding="utf-8"))
            touched = {row[0] for row in connection.execute(TOUCHED_TRIGGERS)}
            reloaded = {
                trigger: tuple(rest) for trigger, *rest in connection.execute(PUBLIC_TRIGGERS)
            }
            connection.rollback()
            if touched != {name}:
                problems.append(f"{path} creates {sorted(touched)}, not only {name}")
            elif reloaded != definitions:
                problems.append(
                    f"{path} is not the definition of trigger {name} in the database: "
                    f"{reloaded.get(name)} != {definitions[name]}"
                )
    return problems


def differences_at(database: IsolatedDatabase, revision: str) -> list[str]:
    """How the database's functions and triggers differ from the files of ``revision``."""
    number = revision_number(revision)
    return differences_from_files(database, newest_files_at(number)) + (
        differences_from_trigger_files(database, newest_trigger_files_at(number))
    )


def loaded_by_number() -> dict[str, set[str]]:
    """What each migration loads: its revision number -> the names it passes to load()."""
    return {
        revision_number(script.revision): set(
            re.findall(r'load\("([\w/]+)"\)', Path(script.path).read_text(encoding="utf-8"))
        )
        for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()
    }


def test_every_sql_file_is_a_commented_function_version_its_migration_loads() -> None:
    loaded_by = loaded_by_number()
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


def test_every_trigger_file_is_a_commented_trigger_version_its_migration_loads() -> None:
    loaded_by = loaded_by_number()
    files = trigger_files()
    assert len(files) > 30  # the glob found the folder
    problems: list[str] = []
    for trigger, versions in files.items():
        for number, path in versions.items():
            text = path.read_text(encoding="utf-8")
            shown = path.relative_to(MIGRATIONS)
            named = [created or dropped for created, dropped in TRIGGER_STATEMENT.findall(text)]
            if not text.startswith("-- "):
                problems.append(f"{shown}: say first which invariant it guards")
            if named != [trigger]:
                problems.append(f"{shown}: one CREATE or DROP of trigger {trigger}, not {named}")
            if f"triggers/{trigger}/{number}" not in loaded_by.get(number, set()):
                problems.append(f"{shown}: the migration numbered {number} does not load it")
    assert problems == []


def test_no_migration_writes_a_trigger_of_its_own() -> None:
    """Every trigger a migration creates comes from its file (downgrades included)."""
    inline = [
        Path(script.path).name
        for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()
        if INLINE_TRIGGER.search(Path(script.path).read_text(encoding="utf-8"))
    ]
    assert inline == []


def test_every_live_function_matches_its_newest_sql_file(
    test_database: IsolatedDatabase,
) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    assert differences_from_files(test_database, newest_files_at(revision_number(head))) == []


def test_every_live_trigger_matches_its_newest_sql_file(test_database: IsolatedDatabase) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    number = revision_number(head)
    assert differences_from_trigger_files(test_database, newest_trigger_files_at(number)) == []


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
        problems += [
            f"at {script.down_revision}: {problem}"
            for problem in differences_at(test_database, script.down_revision)
        ]
    command.upgrade(config, "head")
    head = scripts.get_current_head()
    assert head is not None
    problems += [f"back at head: {problem}" for problem in differences_at(test_database, head)]
    assert problems == []


def test_a_trigger_that_differs_from_its_file_is_reported(test_database: IsolatedDatabase) -> None:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    files = newest_trigger_files_at(revision_number(head))
    with owner_connection(test_database) as connection:
        # Fires in origin sessions only, not in every session as its file says.
        connection.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_assign")
        # Watches another event than its file's.
        connection.execute("DROP TRIGGER cards_guard ON cards")
        connection.execute(
            "CREATE TRIGGER cards_guard BEFORE UPDATE ON cards"
            " FOR EACH ROW EXECUTE FUNCTION cards_guard()"
        )
        # Gone, and one no file creates.
        connection.execute("DROP TRIGGER chain_totals_guard ON chain_totals")
        connection.execute(
            "CREATE TRIGGER chain_totals_unchecked BEFORE INSERT ON chain_totals"
            " FOR EACH ROW EXECUTE FUNCTION chain_totals_guard()"
        )
    problems = differences_from_trigger_files(test_database, files)
    assert [problem.split(":")[0] for problem in problems] == [
        "trigger chain_totals_unchecked on chain_totals has no file in migrations/sql/",
        "sql/triggers/chain_totals_guard/0015.sql creates no trigger there is",
        "sql/triggers/cards_guard/0008.sql is not the definition of trigger cards_guard in the "
        "database",
        "sql/triggers/ledger_entries_assign/0001.sql is not the definition of trigger "
        "ledger_entries_assign in the database",
    ]
