"""``amply serve`` run as a child process, as an operator runs it, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment_without(*prefixes: str, **settings: str) -> dict[str, str]:
    """This process's environment without the variables named ``prefixes…``, plus ``settings``."""
    kept = {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}
    return {**kept, **settings}


def start_serve(
    *options: str, environment: Mapping[str, str], keep_output: bool = False
) -> subprocess.Popen[str]:
    """``amply serve OPTIONS`` with ``environment``; its output piped if ``keep_output``."""
    output = subprocess.PIPE if keep_output else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "amply.cli", "serve", *options],
        env=dict(environment),
        stdout=output,
        stderr=subprocess.STDOUT if keep_output else subprocess.DEVNULL,
        text=True,
    )


def wait_until_ready(
    server: subprocess.Popen[str], port: int, *, timeout: float = 90
) -> httpx.Response:
    """The first 200 answer of ``GET /ready``; fails if the server exits or never gets there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            return response
        time.sleep(0.2)
    raise AssertionError(f"amply serve never became ready (exit code {server.poll()})")
