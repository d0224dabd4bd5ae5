"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset.

``pgserver`` ships real PostgreSQL binaries in a wheel. We start (or reuse) a server in the data
directory and create the privilege split of SPEC.md §4: ``amply_owner`` owns the schema and runs
migrations, ``amply_app`` is what the service connects as.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

OWNER_ROLE: Final = "amply_owner"
APP_ROLE: Final = "amply_app"
DEFAULT_DATABASE: Final = "amply"


@dataclass(frozen=True, slots=True)
class DatabaseUrls:
    """Where the service connects (``app``) and where migrations run (``migration``)."""

    app: str
    migration: str


def role_url(superuser_url: str, *, role: str, database: str) -> str:
    """The superuser's URL with another role and database (same host or socket)."""
    url = make_url(superuser_url).set(username=role, password=None, database=database)
    return url.render_as_string(hide_password=False)


def create_roles(superuser_url: str) -> None:
    """Create the owner and service roles if they do not exist yet."""
    with psycopg.connect(superuser_url, autocommit=True) as connection:
        for role in (OWNER_ROLE, APP_ROLE):
            exists = connection.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()
            if exists is None:
                connection.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))


def create_database(superuser_url: str, name: str, *, template: str = "template0") -> bool:
    """Create a UTF-8 database owned by ``amply_owner``; False if it already existed."""
    with psycopg.connect(superuser_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if exists is not None:
            return False
        connection.execute(
            sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(OWNER_ROLE), sql.Identifier(template)
            )
        )
        return True


def start_server(data_dir: Path) -> Any:
    """Start, or attach to, the embedded server whose data lives in ``data_dir/postgres``."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then
        # uses /tmp for its lock file, which is fine.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver  # imported late: only the embedded mode needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir.resolve() / "postgres"
    forget_dead_handles(pgdata)
    return pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]


def forget_dead_handles(pgdata: Path) -> list[int]:
    """Drop the processes that died without letting go of the server; which ones.

    pgserver lists the processes using a server in ``.handle_pids.json`` and stops the
    server when the last one lets go. A process killed outright (SIGKILL, OOM) never lets
    go: its PID stays listed, and every later process that lets go thinks another still
    uses the server, which then runs on for good. Called before attaching and before
    letting go, under pgserver's own lock, so that a clean stop after any earlier crash
    stops the server.
    """
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:  # the lock pgserver itself takes around this list
        listed = handles.get()
        dead = [pid for pid in listed if not _alive(pid)]
        if dead:
            handles.put([pid for pid in listed if pid not in dead])
    if dead:
        logger.info("embedded PostgreSQL in %s: forgot dead handles %s", pgdata, dead)
    return dead


def _alive(pid: int) -> bool:
    import psutil  # type: ignore[import-untyped]  # pgserver's own dependency

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


class EmbeddedPostgres:
    """One embedded server with the ``amply`` database and both roles ready."""

    def __init__(self, data_dir: Path, *, database: str = DEFAULT_DATABASE) -> None:
        self.data_dir = data_dir
        self.database = database
        self._server: Any = None

    def start(self) -> DatabaseUrls:
        self._server = start_server(self.data_dir)
        superuser_url: str = self._server.get_uri()
        create_roles(superuser_url)
        if create_database(superuser_url, self.database):
            logger.info("created database %s in %s", self.database, self.data_dir)
        return DatabaseUrls(
            app=role_url(superuser_url, role=APP_ROLE, database=self.database),
            migration=role_url(superuser_url, role=OWNER_ROLE, database=self.database),
        )

    def stop(self) -> None:
        """Stop the server unless another process still uses it (pgserver counts handles)."""
        if self._server is not None:
            forget_dead_handles(self.data_dir.resolve() / "postgres")
            self._server.cleanup()
            self._server = None
