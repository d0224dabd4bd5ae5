"""Test fixtures: one embedded PostgreSQL per session (per xdist worker), a fresh database per
test.

The server is the embedded one, or, with ``AMPLY_TEST_POSTGRES_BIN`` set, one run with that
installation's binaries (CI runs part of the suite on Debian's PostgreSQL 15 this way). The
session migrates a template database once; each test that needs a database gets its own
copy (``CREATE DATABASE … TEMPLATE``), so tests may commit, run concurrent writers and attack
the ledger as a superuser without affecting each other.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncSession

from amply.embedded import (
    APP_ROLE,
    OWNER_ROLE,
    DatabaseUrls,
    create_database,
    create_roles,
    role_url,
    start_server,
)
from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger.key_custody import install_key
from amply.ledger.signing import NoteSigner
from amply.main import create_app
from amply.migrate import upgrade_to_head
from tests.support.postgres import test_binaries

pytest_plugins = ["tests.stripe_harness"]

# One checkpoint signing key for the whole run (apps, and servers started as subprocesses,
# read it from the environment), so that no test writes a key into a data directory.
os.environ.setdefault("AMPLY_CHECKPOINT_SIGNING_KEY", NoteSigner.generate("amply.test").encode())

TEMPLATE = "amply_template"
_counter = itertools.count()


@dataclass(frozen=True)
class Cluster:
    superuser_url: str


@dataclass(frozen=True)
class IsolatedDatabase:
    name: str
    urls: DatabaseUrls
    superuser_url: str


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """As root, the embedded PostgreSQL runs as ``nobody``, which must be able to pass through
    the folders above its data directory (amply.embedded changes none of them); pytest's own
    temporary root is private (0700) and shared by every run. So a run as root gets a base
    folder of its own, which others may pass through (0711), for tests that put a data
    directory in ``tmp_path``. (xdist workers get theirs inside it from the controller.)"""
    if os.geteuid() == 0 and config.option.basetemp is None:
        base = Path(tempfile.mkdtemp(prefix="amply-pytest-"))
        base.chmod(0o711)
        config.option.basetemp = str(base / "run")
        config.add_cleanup(partial(shutil.rmtree, base, ignore_errors=True))


# The longest tests (tens of seconds to minutes each), started first: with two workers, one
# that started last would leave the other idle for its whole length at the end of the run.
SLOW_FIRST: Final = (
    "tests/test_wallet_stress.py",
    "tests/transparency/test_public_export.py::test_a_long_chain",
    "tests/test_docs_run.py",
    "tests/verify/test_verify_fuzz.py",
    "tests/test_deployment.py",
    "tests/test_faults.py",
    "tests/test_embedded.py",
    "tests/test_demo.py",
    "tests/test_cli.py",
    "tests/integration/test_reconcile.py",
    "tests/site/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        ranks = (i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix))
        return next(ranks, len(SLOW_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def _temporary_folders_reachable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The run's own temporary folders (see ``pytest_configure``) let others pass (0711)."""
    if os.geteuid() != 0:
        return
    folder = tmp_path_factory.getbasetemp().resolve()
    while folder.name.startswith(("run", "popen-gw")):
        folder.chmod(folder.stat().st_mode | 0o011)
        folder = folder.parent


class _UndeclaredCodes(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Routes a test adds to the app for itself (`/test/...`) document nothing.
        if record.getMessage().startswith("undeclared_error_code") and not str(
            getattr(record, "route", "")
        ).startswith("/test/"):
            self.seen.append(record.getMessage())


@pytest.fixture(autouse=True)
def undeclared_error_codes() -> Iterator[list[str]]:
    """Fails the test during which a route answered an error code its ``responses=`` does
    not declare (amply.kit.error_responses logs ``undeclared_error_code``). A test that
    provokes one on purpose clears the list it gets."""
    handler = _UndeclaredCodes()
    logger = logging.getLogger("amply.kit.error_responses")
    logger.addHandler(handler)
    try:
        yield handler.seen
    finally:
        logger.removeHandler(handler)
    if handler.seen:
        pytest.fail("a route answered an undeclared error code:\n" + "\n".join(handler.seen))


@pytest.fixture
def tmp_path(tmp_path: Path) -> Path:
    """pytest's ``tmp_path``, which, as root, others may pass through (0711): see above."""
    if os.geteuid() == 0:
        tmp_path.chmod(0o711)
    return tmp_path


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    data_dir = Path(tempfile.mkdtemp(prefix="amply-tests-"))
    data_dir.chmod(0o711)  # as root the server runs as `nobody`, which must pass through
    server = start_server(data_dir, bin_dir=test_binaries())
    superuser_url = server.superuser_url
    try:  # a failed set-up (a broken migration) stops the server too
        with psycopg.connect(superuser_url, autocommit=True) as connection:
            # Durability is irrelevant to tests; the benchmarks keep PostgreSQL's defaults.
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                connection.execute(
                    sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting))
                )
            connection.execute("SELECT pg_reload_conf()")
        create_roles(superuser_url)
        create_database(superuser_url, TEMPLATE)
        owner_url = role_url(superuser_url, role=OWNER_ROLE, database=TEMPLATE)
        upgrade_to_head(owner_url)
        install_key(owner_url, run_signer().verifier_key)
        yield Cluster(superuser_url=superuser_url)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def fresh_database(cluster: Cluster, *, template: str = TEMPLATE) -> Iterator[IsolatedDatabase]:
    """A new copy of ``template`` (the migrated one by default), dropped afterwards."""
    name = f"amply_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(cluster.superuser_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} OWNER {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template), sql.Identifier(OWNER_ROLE)
            )
        )
    try:
        yield IsolatedDatabase(
            name=name,
            urls=DatabaseUrls(
                app=role_url(cluster.superuser_url, role=APP_ROLE, database=name),
                migration=role_url(cluster.superuser_url, role=OWNER_ROLE, database=name),
            ),
            superuser_url=role_url(cluster.superuser_url, role="postgres", database=name),
        )
    finally:
        with psycopg.connect(cluster.superuser_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def test_database(cluster: Cluster) -> Iterator[IsolatedDatabase]:
    with fresh_database(cluster) as database:
        yield database


@pytest.fixture
async def database(test_database: IsolatedDatabase) -> AsyncIterator[Database]:
    """The service's connection pool (as ``amply_app``) on this test's database."""
    db = Database(test_database.urls.app, pool_size=20, max_overflow=80)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    async with database.session() as db_session:
        yield db_session


@pytest.fixture
def settings() -> Settings:
    return cheapest_settings()


@asynccontextmanager
async def app_client(
    settings: Settings, *, database_url: str, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a new app on ``database_url``; the app's pool is closed afterwards."""
    app = create_app(settings, database_url=database_url)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="https://amply.test") as http:
            yield http
    finally:
        await app.state.database.dispose()


ClientFactory = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def make_client(test_database: IsolatedDatabase) -> ClientFactory:
    """Clients of apps with their own settings, all on this test's database."""
    return partial(app_client, database_url=test_database.urls.app)


@pytest.fixture
async def client(
    settings: Settings, make_client: ClientFactory
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(settings) as http:
        yield http


def run_signer() -> NoteSigner:
    """The key the apps of this run sign checkpoints with, installed in every test database."""
    return NoteSigner.parse(os.environ["AMPLY_CHECKPOINT_SIGNING_KEY"])


@pytest.fixture(scope="session")
def signer() -> NoteSigner:
    """The key the apps of this run sign checkpoints with."""
    return run_signer()


SuperuserSql = Callable[..., list[tuple[Any, ...]]]


@pytest.fixture
def superuser_sql(test_database: IsolatedDatabase) -> SuperuserSql:
    """Run one SQL statement as the superuser on this test's database; return its rows."""

    def run(statement: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(test_database.superuser_url, autocommit=True) as connection:
            cursor = connection.execute(statement, params or None)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    return run


# --- Module-scoped variants -----------------------------------------------------------------
#
# For modules of many cheap tests over one expensive set-up (the authorization matrix): one
# database, app and client for the whole module. Their async fixtures run on the module's
# event loop, so the tests that use them must too: mark them
# ``@pytest.mark.asyncio(loop_scope="module")``. Such tests share state, so the module must
# make sure, and show, that no test can change the outcome of another.


def cheapest_settings(**overrides: Any) -> Settings:
    """What the ``settings`` fixture gives: test settings with the cheapest argon2id the
    settings allow (tests sign up hundreds of users), and any ``overrides``."""
    return Settings(
        environment="test",
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
        **overrides,
    )


@pytest.fixture(scope="module")
def module_database(cluster: Cluster) -> Iterator[IsolatedDatabase]:
    """One fresh database shared by the tests of a module."""
    with fresh_database(cluster) as database:
        yield database


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def module_client(module_database: IsolatedDatabase) -> AsyncIterator[httpx.AsyncClient]:
    """A client of one app (``cheapest_settings``) on ``module_database``, for a module."""
    async with app_client(cheapest_settings(), database_url=module_database.urls.app) as http:
        yield http
