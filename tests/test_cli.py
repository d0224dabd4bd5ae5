"""The ``amply`` command: verify offline, migrate an external database, serve end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from amply.cli import main
from amply.migrate import head_revision
from amply.verify import EXPORT_FORMAT
from tests.conftest import IsolatedDatabase
from tests.support.fake_postgres import fake_postgres
from tests.support.serving import environment_without, free_port, start_serve, wait_until_ready
from tests.verify.test_verify import build_chain, export_of


def write_export(path: Path, *, tamper: bool = False) -> Path:
    entries = build_chain([1000, 250, -300, 40])
    if tamper:
        entries[2]["metadata"] = entries[2]["metadata"].replace("Zoë", "Zoe")
    document = export_of(entries)  # signed: an export without a checkpoint never verifies
    assert document["format"] == EXPORT_FORMAT
    path.write_text(json.dumps(document, ensure_ascii=False), "utf-8")
    return path


def test_verify_accepts_an_honest_export(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(write_export(tmp_path / "ok.json"))]) == 0
    assert capsys.readouterr().out.startswith("OK: chain org_Verify1 verifies, 4 entries")


def test_verify_names_the_tampered_seq_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(write_export(tmp_path / "bad.json", tamper=True))]) == 1
    assert capsys.readouterr().out.startswith("BROKEN: chain org_Verify1 at seq 3:")
    assert main(["verify", "--json", str(tmp_path / "bad.json")]) == 1
    assert json.loads(capsys.readouterr().out)["broken_seq"] == 3


def test_verify_reports_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.json").write_text("{", "utf-8")
    assert main(["verify", str(tmp_path / "junk.json")]) == 2
    assert "UNREADABLE" in capsys.readouterr().err
    assert main(["verify", "--json", str(tmp_path / "absent.json")]) == 2
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_verify_runs_with_no_database_and_no_server(tmp_path: Path) -> None:
    export = write_export(tmp_path / "ok.json")
    environment = {"PATH": os.environ["PATH"], "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"}
    completed = subprocess.run(
        [sys.executable, "-m", "amply.cli", "verify", str(export)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("OK:")


def test_migrate_brings_an_external_database_to_head(
    test_database: IsolatedDatabase,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from amply.kit.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", test_database.urls.app)
    monkeypatch.setenv("DATABASE_MIGRATION_URL", test_database.urls.migration)
    get_settings.cache_clear()
    try:
        assert main(["migrate"]) == 0
    finally:
        get_settings.cache_clear()
    assert head_revision() in capsys.readouterr().out


def test_migrate_starts_an_embedded_database_and_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from amply.kit.settings import get_settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("AMPLY_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    try:
        assert main(["migrate"]) == 0
        assert main(["migrate"]) == 0  # same data directory: roles and database are reused
    finally:
        get_settings.cache_clear()
    assert capsys.readouterr().out.count(f"database at revision {head_revision()}") == 2
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").is_file()
    assert not embedded_postgres_processes(tmp_path / "data")


def test_production_refuses_the_embedded_database(monkeypatch: pytest.MonkeyPatch) -> None:
    from amply.kit.settings import get_settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("AMPLY_ENVIRONMENT", "production")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit, match="needs DATABASE_URL"):
            main(["migrate"])
    finally:
        get_settings.cache_clear()


def test_production_needs_a_separate_migration_role(monkeypatch: pytest.MonkeyPatch) -> None:
    from amply.kit.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://amply_app@db.invalid/amply")
    monkeypatch.delenv("DATABASE_MIGRATION_URL", raising=False)
    monkeypatch.setenv("AMPLY_ENVIRONMENT", "production")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit, match="DATABASE_MIGRATION_URL"):
            main(["migrate"])
    finally:
        get_settings.cache_clear()


def embedded_postgres_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(data_dir) in " ".join(cmdline):
            found.append(process)
    return found


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_serve_starts_embedded_postgres_and_stops_it_on_a_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    environment = environment_without("DATABASE_", "AMPLY_", AMPLY_DATA_DIR=str(data_dir))
    server = start_serve("--port", str(port), environment=environment, keep_output=True)
    try:
        ready = wait_until_ready(server, port)
        assert ready.json()["status"] == "ready"
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}
        assert embedded_postgres_processes(data_dir)
    finally:
        server.send_signal(stop_signal)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    # One line says where to go.
    assert f"API docs at http://127.0.0.1:{port}/docs" in output
    deadline = time.monotonic() + 20
    while embedded_postgres_processes(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not embedded_postgres_processes(data_dir), "embedded PostgreSQL left running"


def test_serve_with_workers_shares_metrics_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    environment = environment_without(
        "DATABASE_",
        "AMPLY_",
        "PROMETHEUS_",
        AMPLY_DATA_DIR=str(data_dir),
        AMPLY_LOG_FORMAT="json",
    )
    server = start_serve(
        "--port", str(port), "--workers", "2", environment=environment, keep_output=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(server, port)
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=base) as http:
            for _ in range(30):
                assert http.get("/health").status_code == 200
        # Each scrape lands on one worker, and counts the requests both served.
        pattern = re.compile(
            r'amply_http_requests_total\{method="GET",route="/health",status="200"\} (\S+)'
        )
        counted = 0.0
        while counted < 30 and time.monotonic() < deadline:
            match = pattern.search(httpx.get(f"{base}/metrics").text)
            counted = float(match.group(1)) if match else 0.0
        assert counted >= 30
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    # Every line is JSON, from the first migration to the last worker's goodbye.
    lines = [json.loads(line) for line in output.splitlines()]
    messages = [line["message"] for line in lines]
    assert any(line["logger"].startswith("alembic") for line in lines), output
    assert sum(message.startswith("Finished server process") for message in messages) == 2
    deadline = time.monotonic() + 20
    while embedded_postgres_processes(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not embedded_postgres_processes(data_dir), "embedded PostgreSQL left running"


# --- Start-up that explains itself ------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from amply import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"amply {__version__}\n"


def serve_mistake(*options: str, **settings: str) -> tuple[int, list[str]]:
    """``amply serve`` with a mistake: its exit code and the lines it printed."""
    environment = environment_without("DATABASE_", "AMPLY_", **settings)
    server = start_serve(*options, environment=environment, keep_output=True)
    output, _ = server.communicate(timeout=120)
    return server.returncode, output.strip().splitlines()


def assert_explained(code: int, lines: list[str], *phrases: str) -> str:
    """Exit code 3, one line (or two) from amply naming the setting, no traceback."""
    assert code == 3, lines
    assert 1 <= len(lines) <= 2, lines
    message = " ".join(lines)
    assert message.startswith("amply: "), message
    assert "Traceback" not in message
    for phrase in phrases:
        assert phrase in message, message
    return message


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("not a url", "DATABASE_URL is not a database URL. Write it as postgresql://"),
        ("mysql://amply@127.0.0.1/amply", "DATABASE_URL names a mysql database"),
    ],
)
def test_serve_explains_a_malformed_database_url(url: str, phrase: str) -> None:
    code, lines = serve_mistake("--port", str(free_port()), DATABASE_URL=url)
    assert_explained(code, lines, phrase, "unset DATABASE_URL to use the embedded")


def test_serve_explains_an_unreachable_database() -> None:
    port = free_port()  # nothing listens there
    code, lines = serve_mistake(
        "--port", str(free_port()), DATABASE_URL=f"postgresql://amply_app@127.0.0.1:{port}/amply"
    )
    assert_explained(
        code,
        lines,
        f"Cannot reach PostgreSQL at 127.0.0.1:{port}, named in DATABASE_URL",
        "connection refused",
    )


def test_serve_explains_a_wrong_password() -> None:
    with fake_postgres(version="17.2", password="the right one") as port:
        code, lines = serve_mistake(
            "--port",
            str(free_port()),
            DATABASE_URL=f"postgresql://amply_app:a-wrong-one@127.0.0.1:{port}/amply",
        )
    assert_explained(
        code,
        lines,
        "refused the password of role 'amply_app' given in DATABASE_URL",
        "Correct the password in DATABASE_URL",
    )


def test_serve_explains_a_migration_url_that_cannot_connect(
    test_database: IsolatedDatabase,
) -> None:
    port = free_port()
    code, lines = serve_mistake(
        "--port",
        str(free_port()),
        DATABASE_URL=test_database.urls.app,
        DATABASE_MIGRATION_URL=f"postgresql://amply_owner@127.0.0.1:{port}/amply",
    )
    assert_explained(code, lines, "named in DATABASE_MIGRATION_URL")


def test_serve_refuses_postgresql_older_than_15() -> None:
    with fake_postgres(version="14.11") as port:
        code, lines = serve_mistake(
            "--port",
            str(free_port()),
            DATABASE_URL=f"postgresql://amply_app@127.0.0.1:{port}/amply",
        )
    assert_explained(
        code, lines, "DATABASE_URL points at PostgreSQL 14", "needs PostgreSQL 15 or newer"
    )


def test_serve_explains_a_port_in_use_before_touching_the_database() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The database is unreachable too: the port is checked first, before any database.
        code, lines = serve_mistake(
            "--port", str(port), DATABASE_URL="postgresql://amply_app@127.0.0.1:1/amply"
        )
    message = assert_explained(code, lines, f"Port {port} on 127.0.0.1 is already in use", "--port")
    assert "PostgreSQL" not in message


def test_logs_are_text_on_a_terminal_and_json_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from amply.kit.observability import json_logs
    from amply.kit.settings import Settings

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert json_logs(Settings()) is False
    assert json_logs(Settings(log_format="json")) is True
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert json_logs(Settings()) is True
    assert json_logs(Settings(log_format="text")) is False
