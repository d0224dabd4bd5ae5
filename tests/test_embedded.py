"""The embedded PostgreSQL outlives a killed ``amply serve`` (it must: other handles may use
it), but a later clean stop stops it: the dead process's handle is forgotten."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psutil

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
