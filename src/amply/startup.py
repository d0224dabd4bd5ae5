"""What ``amply serve`` checks before it touches anything, so that a common mistake ends in
one or two lines that name the setting at fault and say what to do, not in a traceback.

In order: the database URLs parse as PostgreSQL URLs; the port is free (probed before any
migration runs); and each configured database answers, accepts its role's password, and runs
a PostgreSQL major Amply supports. (The embedded database's own mistakes, an unwritable data
folder or a second server on it, are reported by :mod:`amply.embedded`.)
"""

from __future__ import annotations

import errno
import re
import socket
from typing import TYPE_CHECKING, Final

import psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

if TYPE_CHECKING:
    from amply.kit.settings import Settings

#: The oldest PostgreSQL major Amply runs on (docs/operations.md).
MINIMUM_MAJOR: Final = 15
_CONNECT_TIMEOUT_SECONDS: Final = 5
_URL_SHAPE: Final = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"


class StartupError(Exception):
    """A mistake in how Amply is started; its message names the setting and the fix."""


def configured_urls(settings: Settings) -> dict[str, str]:
    """The database URLs set, by the name of their setting."""
    urls = {
        "DATABASE_URL": settings.database_url,
        "DATABASE_MIGRATION_URL": settings.database_migration_url,
        "DATABASE_READ_URL": settings.database_read_url,
    }
    return {name: url.get_secret_value() for name, url in urls.items() if url is not None}


def check_urls(settings: Settings) -> None:
    """Each database URL that is set is a PostgreSQL URL."""
    for setting, url in configured_urls(settings).items():
        parse_url(url, setting=setting)


def parse_url(url: str, *, setting: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StartupError(
            f"{setting} is not a database URL. Write it as {_URL_SHAPE}, or unset "
            "DATABASE_URL to use the embedded PostgreSQL."
        ) from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise StartupError(
            f"{setting} names a {parsed.get_backend_name()} database; Amply needs PostgreSQL. "
            f"Write it as {_URL_SHAPE}, or unset DATABASE_URL to use the embedded PostgreSQL."
        )
    if not parsed.database:
        raise StartupError(f"{setting} names no database. Write it as {_URL_SHAPE}.")
    return parsed


def check_port(host: str, port: int) -> None:
    """The address ``amply serve`` will listen on is free (probed by binding it briefly)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise StartupError(
            f"--host {host} is not an address of this machine: use 127.0.0.1 (this machine "
            "only) or 0.0.0.0 (every interface)."
        ) from None
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        # As uvicorn binds: an address in TIME_WAIT is free, one someone listens on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"Port {port} on {host} is already in use (another amply serve?). Stop "
                    f"what listens there, or choose another port: amply serve --port {port + 1}"
                ) from None
            if error.errno == errno.EACCES:
                raise StartupError(
                    f"Not allowed to listen on port {port}: ports below 1024 need privileges. "
                    "Choose another port: amply serve --port 8000"
                ) from None
            raise StartupError(
                f"Cannot listen on {host}:{port} ({error.strerror}): check --host and --port."
            ) from None


def check_database(url: str, *, setting: str) -> None:
    """The database at ``url`` answers, accepts the password, and runs PostgreSQL 15+."""
    parsed = parse_url(url, setting=setting)
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, connect_timeout=_CONNECT_TIMEOUT_SECONDS) as connection:
            version = connection.info.server_version
    except psycopg.OperationalError as error:
        raise StartupError(_connection_failure(str(error), parsed, setting, where)) from None
    if version < MINIMUM_MAJOR * 10000:
        major = version // 10000
        raise StartupError(
            f"{setting} points at PostgreSQL {major} ({where}); Amply needs PostgreSQL "
            f"{MINIMUM_MAJOR} or newer. Upgrade that server, or point {setting} at a newer one."
        )


def _connection_failure(message: str, url: URL, setting: str, where: str) -> str:
    lowered = message.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return (
            f"PostgreSQL at {where} refused the password of role {url.username!r} given in "
            f"{setting}. Correct the password in {setting}."
        )
    if re.search(r'role ".*" does not exist', lowered):
        return (
            f"PostgreSQL at {where} has no role {url.username!r}, named in {setting}. Create "
            "it (README, Using your own PostgreSQL) or correct the user name."
        )
    if re.search(r'database ".*" does not exist', lowered):
        return (
            f"PostgreSQL at {where} has no database {url.database!r}, named in {setting}. "
            "Create it (README, Using your own PostgreSQL) or correct the name."
        )
    reason = _reason(lowered)
    return (
        f"Cannot reach PostgreSQL at {where}, named in {setting} ({reason}). Start it, or "
        f"correct the host and port in {setting}; unset DATABASE_URL to use the embedded one."
    )


def _reason(message: str) -> str:
    for phrase, reason in (
        ("connection refused", "connection refused"),
        ("timeout expired", "no answer"),
        ("could not translate host name", "unknown host"),
        ("name or service not known", "unknown host"),
        ("no route to host", "no route to host"),
        ("no such file or directory", "no server socket there"),
    ):
        if phrase in message:
            return reason
    first = message.strip().splitlines()[0] if message.strip() else "no answer"
    return first[:120]
