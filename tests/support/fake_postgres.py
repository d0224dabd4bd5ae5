"""A stand-in PostgreSQL server that speaks just enough of the wire protocol to play two
roles the embedded test cluster cannot: a server of an old major (it announces the
``server_version`` it is given) and one that refuses a password."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def _receive(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _startup(connection: socket.socket) -> None:
    """Decline SSL and GSS encryption until the client sends its startup message."""
    while True:
        (length,) = struct.unpack("!I", _receive(connection, 4))
        body = _receive(connection, length - 4)
        (code,) = struct.unpack("!I", body[:4])
        if code in (_SSL_REQUEST, _GSS_REQUEST):
            connection.sendall(b"N")
            continue
        return


def _serve_one(connection: socket.socket, *, version: str, password: str | None) -> None:
    _startup(connection)
    if password is not None:
        connection.sendall(_message(b"R", struct.pack("!I", 3)))  # cleartext password, please
        kind = _receive(connection, 1)
        (length,) = struct.unpack("!I", _receive(connection, 4))
        given = _receive(connection, length - 4).rstrip(b"\0").decode()
        if kind != b"p" or given != password:
            fields = b"".join(
                key + value.encode() + b"\0"
                for key, value in (
                    (b"S", "FATAL"),
                    (b"V", "FATAL"),
                    (b"C", "28P01"),
                    (b"M", 'password authentication failed for user "amply_app"'),
                )
            )
            connection.sendall(_message(b"E", fields + b"\0"))
            return
    connection.sendall(_message(b"R", struct.pack("!I", 0)))
    for name, value in (
        ("server_version", version),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
    ):
        connection.sendall(_message(b"S", f"{name}\0{value}\0".encode()))
    connection.sendall(_message(b"K", struct.pack("!II", 4242, 4242)))
    connection.sendall(_message(b"Z", b"I"))
    while connection.recv(4096):  # until the client says goodbye (Terminate) and closes
        pass


@contextmanager
def fake_postgres(*, version: str = "14.11", password: str | None = None) -> Iterator[int]:
    """A server on a loopback port (yielded) until the block ends."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port: int = listener.getsockname()[1]
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                with suppress(ConnectionError, OSError):
                    _serve_one(connection, version=version, password=password)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stopping.set()
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way
        listener.close()
        thread.join(timeout=5)
