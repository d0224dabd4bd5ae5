"""PostgreSQL clusters of a test's own, run with the embedded server's binaries: one the test
may stop and restart at will, and streaming replicas of it made with ``pg_basebackup``.

The session's shared cluster (``tests/conftest.py``) is left alone: these tests take a
database server down, which would break every other test's connections.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pgserver._commands import POSTGRES_BIN_PATH

from amply.embedded import (
    APP_ROLE,
    DEFAULT_DATABASE,
    OWNER_ROLE,
    DatabaseUrls,
    create_database,
    create_roles,
    role_url,
)
from amply.key_custody import install_key
from amply.lib.signing import NoteSigner
from amply.migrate import upgrade_to_head

# PostgreSQL refuses to run as root; pgserver creates this user when it is started as root.
_SYSTEM_USER = "pgserver" if os.geteuid() == 0 else None


class Cluster:
    """One PostgreSQL server in a directory of its own, on a Unix socket in that directory."""

    def __init__(self, root: Path, *, port: int = 5432) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port

    def superuser_url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.root}&port={self.port}"

    def urls(self, database: str = DEFAULT_DATABASE) -> DatabaseUrls:
        superuser = self.superuser_url()
        return DatabaseUrls(
            app=role_url(superuser, role=APP_ROLE, database=database),
            migration=role_url(superuser, role=OWNER_ROLE, database=database),
        )

    def initdb(self) -> None:
        _own(self.root)
        _run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def start(self) -> None:
        options = f"-h '' -k {self.root} -p {self.port}"
        log = str(self.root / "postgres.log")
        _run("pg_ctl", "-D", str(self.data), "-w", "-o", options, "-l", log, "start")

    def stop(self, *, mode: str = "fast") -> None:
        """Stop the server; ``immediate`` is a crash: no checkpoint, clients cut off."""
        _run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def is_running(self) -> bool:
        status = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data), "status"],
            user=_SYSTEM_USER,
            capture_output=True,
            check=False,
        )
        return status.returncode == 0

    def execute(self, statement: str, *, database: str = "postgres") -> list[tuple[object, ...]]:
        with psycopg.connect(self.superuser_url(database), autocommit=True) as connection:
            cursor = connection.execute(statement.encode())
            return cursor.fetchall() if cursor.description else []

    def standby(self, root: Path) -> Cluster:
        """A streaming replica of this (running) server, started on its own socket."""
        replica = Cluster(root, port=self.port + 1)
        _own(replica.root)
        # -R writes standby.signal and primary_conninfo; -X stream copies the WAL it needs.
        _run(
            "pg_basebackup",
            f"--dbname={self.superuser_url()}",
            f"--pgdata={replica.data}",
            "--write-recovery-conf",
            "--wal-method=stream",
            "--checkpoint=fast",
        )
        replica.start()
        return replica


@contextmanager
def amply_cluster(*, replica: bool = False) -> Iterator[tuple[Cluster, Cluster | None]]:
    """A migrated Amply database on a cluster of its own (and a streaming replica of it)."""
    root = Path(tempfile.mkdtemp(prefix="amply-cluster-"))
    primary = Cluster(root / "primary")
    clusters = [primary]
    try:
        _own(root)
        primary.initdb()
        primary.start()
        superuser = primary.superuser_url()
        create_roles(superuser)
        create_database(superuser, DEFAULT_DATABASE)
        upgrade_to_head(primary.urls().migration)
        install_key(
            primary.urls().migration,
            NoteSigner.parse(os.environ["AMPLY_CHECKPOINT_SIGNING_KEY"]).verifier_key,
        )
        standby = primary.standby(root / "replica") if replica else None
        if standby is not None:
            clusters.append(standby)
        yield primary, standby
    finally:
        for cluster in reversed(clusters):
            if cluster.is_running():
                cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def _own(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if _SYSTEM_USER is not None:
        shutil.chown(directory, _SYSTEM_USER, _SYSTEM_USER)


def _run(tool: str, *args: str) -> None:
    subprocess.run(
        [str(POSTGRES_BIN_PATH / tool), *args],
        user=_SYSTEM_USER,
        check=True,
        capture_output=True,
    )
