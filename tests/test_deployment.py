"""The container image and the compose file, checked as far as this machine allows: their
structure, and the image's own commands (serve, health check) run outside Docker against a
real database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import IsolatedDatabase
from tests.support.serving import environment_without, free_port

ROOT = Path(__file__).parents[1]


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions, stage by stage (continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line)
    return stages


def instruction(stage: list[str], name: str) -> str:
    [found] = [line for line in stage if line.startswith(f"{name} ")]
    return found[len(name) + 1 :].strip()


def test_the_image_is_multi_stage_slim_and_runs_as_a_user() -> None:
    build, final = dockerfile_stages()
    assert instruction(build, "FROM").endswith("AS build")
    assert instruction(final, "FROM") == "python:3.11-slim"
    assert instruction(final, "USER") == "amply"
    # No compilers or package installs in the final image: it copies the built venv.
    assert not [line for line in final if line.startswith("RUN ") and "apt" in line]
    assert any(line.startswith("COPY --from=build ") for line in final)
    command = json.loads(instruction(final, "CMD"))
    assert command[:2] == ["amply", "serve"]
    assert command[command.index("--workers") + 1] == "2"
    assert "HEALTHCHECK" in " ".join(final)


def test_compose_runs_two_api_replicas_after_a_one_shot_migration() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:15"
    migrate, api = services["migrate"], services["api"]
    assert migrate["command"] == ["amply", "migrate"]
    assert "amply_owner" in migrate["environment"]["DATABASE_MIGRATION_URL"]
    assert api["deploy"]["replicas"] == 2
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["environment"]["DATABASE_URL"].startswith("postgresql://amply_app:")
    assert "AMPLY_CHECKPOINT_SIGNING_KEY" in api["environment"]
    roles = (ROOT / "deploy" / "postgres-init.sql").read_text()
    assert "CREATE ROLE amply_owner" in roles
    assert "CREATE ROLE amply_app" in roles
    docker = shutil.which("docker")
    if docker is not None and _docker_compose_available(docker):
        checked = subprocess.run(
            [docker, "compose", "config", "--quiet"],
            cwd=ROOT,
            env={**os.environ, "AMPLY_CHECKPOINT_SIGNING_KEY": "PRIVATE+KEY+x"},
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr


def _docker_compose_available(docker: str) -> bool:
    """Whether Docker's compose plugin is installed (it is not on every CI machine)."""
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


def test_the_images_command_serves_and_its_health_check_passes(
    test_database: IsolatedDatabase,
) -> None:
    final = dockerfile_stages()[-1]
    port = str(free_port())
    command = [port if arg == "8000" else arg for arg in json.loads(instruction(final, "CMD"))]
    health = instruction(final, "HEALTHCHECK").split("CMD ", 1)[1]
    check = [arg.replace(":8000/", f":{port}/") for arg in json.loads(health)]
    environment = environment_without(
        "DATABASE_",
        "PROMETHEUS_",
        AMPLY_ENVIRONMENT="production",  # as the image sets it
        DATABASE_URL=test_database.urls.app,
        DATABASE_MIGRATION_URL=test_database.urls.migration,
    )
    executable = str(Path(sys.executable).parent / command[0])
    server = subprocess.Popen(
        [executable, *command[1:]],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, healthy = time.monotonic() + 60, False
        while not healthy and time.monotonic() < deadline and server.poll() is None:
            probe = subprocess.run(
                [sys.executable, *check[1:]], capture_output=True, check=False, timeout=10
            )
            healthy = probe.returncode == 0
            time.sleep(0.25)
        assert healthy, "the image's HEALTHCHECK never passed"
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
