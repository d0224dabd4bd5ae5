"""The public site in a real headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright for Python; ``.ci/run`` installs it when missing).

One app per module, served by uvicorn on a loopback port from a thread, on the module's own
database; one browser per module. Screenshots go to ``$AMPLY_TEST_ARTEFACTS`` (default
``<temp>/amply-artefacts``), one per page looked at.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import uvicorn

from amply.main import create_app
from tests.conftest import IsolatedDatabase, cheapest_settings
from tests.support.serving import free_port

CHROMIUM: Final = os.environ.get("AMPLY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTEFACTS: Final = Path(
    os.environ.get("AMPLY_TEST_ARTEFACTS", Path(tempfile.gettempdir()) / "amply-artefacts")
)
AXE: Final = (Path(__file__).parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")
PASSWORD: Final = "a long site test password"


@dataclass
class Site:
    """A running app: its base URL, and what the module made on it."""

    url: str
    http: httpx.Client
    data: dict[str, Any] = field(default_factory=dict)

    def signup(self) -> str:
        name = f"site_{secrets.token_hex(4)}"
        response = self.http.post(
            "/v1/auth/signup",
            json={
                "name": name.title(),
                "username": name,
                "email": f"{name}@example.org",
                "password": PASSWORD,
                "session_type": "token",
            },
        )
        assert response.status_code == 201, response.text
        token: str = response.json()["session"]["token"]
        return token

    def organisation(self, token: str, *, name: str, slug: str) -> str:
        headers = {"Authorization": f"Bearer {token}"}
        response = self.http.post(
            "/v1/organisations",
            json={"name": name, "slug": slug, "country": "DE", "default_currency": "EUR"},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        organisation_id: str = response.json()["organisation"]["id"]
        onboarded = self.http.post(
            f"/v1/organisations/{organisation_id}/stripe-account", headers=headers
        )
        assert onboarded.status_code == 200, onboarded.text
        return organisation_id

    def fund(self, token: str, organisation_id: str, name: str) -> str:
        response = self.http.post(
            f"/v1/organisations/{organisation_id}/funds",
            json={"name": name, "description": f"{name}, in the open"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 201, response.text
        fund_id: str = response.json()["id"]
        return fund_id

    def donate(self, organisation_id: str, amount: int, **fields: object) -> dict[str, Any]:
        checkout = self.http.post(
            "/v1/donations",
            json={
                "organisation_id": organisation_id,
                "amount": amount,
                "currency": "EUR",
                **fields,
            },
        )
        assert checkout.status_code == 201, checkout.text
        body: dict[str, Any] = checkout.json()
        paid = self.http.post(
            f"/v1/sandbox/payments/{body['payment']['payment_intent_id']}/succeed"
        )
        assert paid.status_code == 200, paid.text
        return body


@contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a loopback port from a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def site(module_database: IsolatedDatabase) -> Iterator[Site]:
    settings = cheapest_settings(
        checkout_max_per_address=1_000_000,
        checkout_max_per_email=1_000_000,
        checkpoint_interval_seconds=0,
        housekeeping_interval_seconds=0,
    )
    app = create_app(settings, database_url=module_database.urls.app)
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Site(url=url, http=http)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).is_file():
        missing = f"no Chromium at {CHROMIUM} (`apt-get install chromium`; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(missing)  # CI installs it: a browser test never passes by skipping
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    opened.problems = problems
    try:
        yield opened
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def serious_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations of the page (WCAG 2.1 A and AA)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE + "\n;0")
    result: dict[str, Any] = page.evaluate(
        """async () => await axe.run(document, {
            runOnly: { type: "tag",
                       values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] }
        })"""
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
