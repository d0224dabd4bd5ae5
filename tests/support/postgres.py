"""PostgreSQL clusters of a test's own, run with the embedded server's binaries: one the test
may stop and restart at will, and streaming replicas of it made with ``pg_basebackup``.

The session's shared cluster (``tests/conftest.py``) is left alone: these tests take a
database server down, which would break every other test's connections.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from amply.embedded import (
    APP_ROLE,
    DEFAULT_DATABASE,
    OWNER_ROLE,
    DatabaseUrls,
    create_database,
    create_roles,
    embedded_binaries,
    first_closed_folder,
    reachable_binaries,
    role_url,
    service_account,
)
from amply.ledger.key_custody import install_key
from amply.ledger.signing import NoteSigner
from amply.migrate import upgrade_to_head

#: Another PostgreSQL installation's ``bin`` folder for the whole run (CI points it at Debian's
#: PostgreSQL 15, the oldest supported major), instead of the embedded binaries.
TEST_BINARIES_VARIABLE = "AMPLY_TEST_POSTGRES_BIN"
#: The major the run's server must be (``tests/test_postgres_version.py`` checks it).
TEST_MAJOR_VARIABLE = "AMPLY_TEST_POSTGRES_MAJOR"


def test_binaries() -> Path | None:
    """The binaries named by ``AMPLY_TEST_POSTGRES_BIN``; None: the embedded ones."""
    named = os.environ.get(TEST_BINARIES_VARIABLE)
    return Path(named) if named else None


test_binaries.__test__ = False  # type: ignore[attr-defined]  # not a test, for pytest
# PostgreSQL refuses to run as root: as root, the clusters run as `nobody` (amply.embedded).
_ACCOUNT = service_account()


@functools.cache
def postgres_bin_path() -> Path:
    """The binaries, copied where ``nobody`` can run them if it cannot reach them (as root, in
    a checkout under a closed folder)."""
    binaries = test_binaries() or embedded_binaries()
    if _ACCOUNT is None or first_closed_folder(binaries, _ACCOUNT) is None:
        return binaries
    copies = Path(tempfile.mkdtemp(prefix="amply-postgres-bin-"))
    copies.chmod(0o755)
    return reachable_binaries(binaries, copies, _ACCOUNT)


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
            [str(postgres_bin_path() / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            check=False,
            **_as_account(),
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
    if _ACCOUNT is not None:
        directory.parent.chmod(0o711)  # the test's own temporary folder: `nobody` passes through
        os.chown(directory, _ACCOUNT.uid, _ACCOUNT.gid)


def _as_account() -> dict[str, Any]:
    if _ACCOUNT is None:
        return {}
    return {"user": _ACCOUNT.uid, "group": _ACCOUNT.gid, "extra_groups": []}


def _run(tool: str, *args: str) -> None:
    subprocess.run(
        [str(postgres_bin_path() / tool), *args],
        check=True,
        capture_output=True,
        cwd="/",
        **_as_account(),
    )
