"""The OpenAPI document behind /docs: credentials the Authorize button offers, the error
codes of every response, and good enough to generate a typed client from."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from amply.kit.errors import ERROR_CODES, ERROR_STATUSES, ErrorCode
from amply.kit.settings import Settings
from amply.main import create_app


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(Settings(environment="test"), database_url="postgresql://unused/amply")
    openapi: dict[str, Any] = app.openapi()
    return openapi


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def test_the_three_credentials_are_security_schemes(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["session"]["scheme"] == schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["sessionCookie"] == {**schemes["sessionCookie"], "in": "cookie"}
    assert schemes["csrfToken"]["name"] == "X-CSRF-Token"
    assert "X-CSRF-Token" in schemes["sessionCookie"]["description"]


def test_each_operation_names_the_credentials_it_takes(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert "security" not in paths["/v1/auth/login"]["post"]
    assert "security" not in paths["/v1/public/organisations"]["get"]
    assert paths["/v1/wallet"]["get"]["security"] == [{"session": []}, {"sessionCookie": []}]
    # A write with the cookie needs the CSRF token too.
    assert {"sessionCookie": [], "csrfToken": []} in paths["/v1/transfers"]["post"]["security"]
    # The organisation's API accepts its API keys; checkout takes one optionally.
    assert {"apiKey": []} in paths["/v1/organisations/{organisation_id}/donations"]["get"][
        "security"
    ]
    assert paths["/v1/donations"]["post"]["security"] == [{"apiKey": []}, {}]
    secured = [op for _, _, op in operations(document) if "security" in op]
    assert len(secured) > 50


def test_every_error_response_says_what_it_means_and_which_codes_it_carries(
    document: dict[str, Any],
) -> None:
    checked = 0
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            checked += 1
            assert response["description"] != "Error", (method, path, status)
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}
            assert content["example"]["error"]["code"] in response["description"]
            # Every code listed is registered for this status.
            for code in re.findall(r"`([a-z_]+)`: ", response["description"]):
                registered = ErrorCode.of(code)
                assert registered is not None, (method, path, code)
                assert int(status) in registered.statuses, (method, path, status, code)
    assert checked > 200
    for _, codes in ERROR_STATUSES.values():
        assert set(codes) <= set(ErrorCode)
    assert "| `slug_taken` |" in document["info"]["description"]
    assert set(ERROR_CODES) == {code.value for code in ErrorCode}


def test_a_route_lists_only_its_own_codes(document: dict[str, Any]) -> None:
    """A 409 names the route's conflicts, not every conflict of the API."""
    create = document["paths"]["/v1/organisations"]["post"]["responses"]["409"]["description"]
    assert "`slug_taken`" in create
    assert "`fund_name_taken`" not in create
    assert "`idempotency_key_reused`" not in create
    transfer = document["paths"]["/v1/transfers"]["post"]["responses"]
    assert "`idempotency_key_reused`" in transfer["409"]["description"]
    assert "`insufficient_funds`" in transfer["422"]["description"]
    assert "`slug_taken`" not in transfer["409"]["description"]


def test_a_typed_python_client_generates_without_warnings(
    document: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "openapi.json").write_text(json.dumps(document), "utf-8")
    bin_dir = Path(sys.executable).parent
    generated = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            "openapi.json",
            "--output-path",
            "amply_client",
            "--meta",
            "none",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        # Its post-generation hook runs ruff, which this environment installs.
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    output = generated.stdout + generated.stderr
    assert generated.returncode == 0, output
    assert "Warning" not in output, output
    assert "Error" not in output, output
    # It builds: every module of the client imports.
    sys.path.insert(0, str(tmp_path))
    try:
        package = importlib.import_module("amply_client")
        modules = list(pkgutil.walk_packages(package.__path__, "amply_client."))
        for module in modules:
            importlib.import_module(module.name)
        models = importlib.import_module("amply_client.models")
        assert hasattr(models, "Error")
        assert len(modules) > 60
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.startswith("amply_client")]:
            del sys.modules[name]
