"""The layout's rules (docs/architecture.md), checked on the source: which domain may import
which, what a router may import, and where FastAPI may appear."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

SOURCE: Final = Path(__file__).resolve().parents[1] / "src" / "amply"

# The packages and modules of amply, lowest first: each may import only those before it (and
# itself). Cutting a cycle means moving code down, never importing up.
LAYERS: Final = (
    "models",  # the ORM models, central
    "kit",  # settings, sessions, errors, pagination, idempotency, rate limits, observability
    "verify",  # the offline verifier: standard library only (tests/verify/test_imports.py)
    "ledger",  # appends, chains, checkpoints, exports, signing
    "auth",  # who is calling: sessions and API keys recognised, security events
    "organisations",  # organisations, members, funds
    "payments",  # the Stripe boundary: gateway, Connect, payouts, reads
    "donations",  # checkout, refunds, disputes, receipts
    "transparency",  # the public API
    "wallets",  # wallets, transfers, requests, cards, deposits, withdrawals, giving
    "identity",  # sign-up (which opens a wallet), login, sessions, API keys
    "webhooks",  # Stripe's and the sandbox's events applied to donations and wallets
    "site",  # the public web pages
    "health",
    "api",  # /v1, assembled from each domain's routers
    "migrate",
    "startup",
    "embedded",
    "main",  # the application
    "demo",
    "cli",
)
# Modules that speak HTTP: only these may import FastAPI or Starlette.
HTTP_PACKAGES: Final = frozenset({"kit", "site"})
HTTP_MODULES: Final = frozenset({"api", "health", "main"})


def _is_router(path: Path) -> bool:
    return path.stem == "routes" or path.stem.endswith("_routes")


def _speaks_http(path: Path) -> bool:
    layer = _layer(path)
    if layer in HTTP_PACKAGES or layer in HTTP_MODULES:
        return True
    return _is_router(path) or path.stem == "dependencies" or path.stem.endswith("_responses")


def _layer(path: Path) -> str:
    relative = path.relative_to(SOURCE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _sources() -> Iterator[Path]:
    for path in sorted(SOURCE.rglob("*.py")):
        if path != SOURCE / "__init__.py":
            yield path


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _amply_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "amply" or len(parts) < 2 or parts[1] == "__version__":
        return None
    return parts[1]


def test_every_package_and_module_has_a_layer() -> None:
    assert {_layer(path) for path in _sources()} == set(LAYERS)


def test_domains_import_only_the_layers_below_them() -> None:
    upward = [
        f"{path.relative_to(SOURCE)} imports {module}"
        for path in _sources()
        for module in _imports(path)
        if (target := _amply_layer(module)) is not None
        and LAYERS.index(target) > LAYERS.index(_layer(path))
    ]
    assert upward == []


def test_no_router_imports_another_router() -> None:
    router_modules = {
        "amply." + ".".join(path.relative_to(SOURCE).with_suffix("").parts)
        for path in _sources()
        if _is_router(path)
    }
    imported = [
        f"{path.relative_to(SOURCE)} imports {module}"
        for path in _sources()
        if _is_router(path)
        for module in _imports(path)
        if module in router_modules
    ]
    assert imported == []


def test_only_routers_dependencies_and_the_kit_speak_http() -> None:
    speaking = [
        f"{path.relative_to(SOURCE)} imports {module}"
        for path in _sources()
        if not _speaks_http(path)
        for module in _imports(path)
        if module.split(".")[0] in {"fastapi", "starlette"}
    ]
    assert speaking == []


def test_only_the_ledger_service_writes_ledger_entries() -> None:
    writers = [
        str(path.relative_to(SOURCE))
        for path in _sources()
        if "INSERT INTO ledger_entries" in path.read_text(encoding="utf-8")
    ]
    assert writers == ["ledger/service.py"]
