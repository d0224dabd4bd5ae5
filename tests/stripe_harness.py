"""Pytest plugin: a real HTTP server speaking Stripe's protocol, and helpers for webhooks.

Load it with ``pytest_plugins = ["tests.stripe_harness"]`` in ``tests/conftest.py`` or a test
module (``-p tests.stripe_harness`` works only under ``python -m pytest``: ``-p`` imports before
the repository root is on ``sys.path``). It provides:

- ``stripe_server`` (session fixture): a :class:`StripeServer` for one subprocess running
  ``tests/support/stripe_server.py``, which is localstripe extended with Connect accounts,
  Stripe's card fee, idempotency, ``Stripe-Account`` scoping, a request log and more (the
  server's docstring lists exactly what is localstripe, recorded or extended). Point the
  official ``stripe`` library at ``stripe_server.url`` for both the "api" and "connect" bases.
  State persists across tests: call ``stripe_server.reset()`` where a test needs a clean slate.
- ``serve_app`` (function fixture): ``async with serve_app(app) as base_url`` runs an ASGI app
  under uvicorn in the current event loop, so the server's webhooks reach it over real HTTP.
- ``sign_payload``, ``recorded`` and ``make_event``: build Stripe webhook deliveries that the
  server cannot produce itself (disputes, say) from the recordings in
  ``tests/support/recorded``.

Test modules may import this before pytest loads it as a plugin, too late for pytest to rewrite
its asserts (it has none worth rewriting), hence: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import uvicorn

SECRET_KEY = "sk_test_amply_harness"
PUBLISHABLE_KEY = "pk_test_amply_harness"
API_VERSION = "2026-10-28.endive"  # the version the stripe library pins; the server's too
REPO_ROOT = Path(__file__).resolve().parent.parent
RECORDED_DIR = REPO_ROOT / "tests" / "support" / "recorded"
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0

ServeApp = Callable[[Any], AbstractAsyncContextManager[str]]  # the ``serve_app`` fixture's type


@dataclass(frozen=True)
class RecordedRequest:
    """One ``/v1`` request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    params: dict[str, Any]  # form (or JSON) body, or query, parsed: {"metadata": {"k": "v"}}


@dataclass
class StripeServer:
    """The running Stripe-protocol server, and its control routes (synchronous, over httpx)."""

    url: str
    secret_key: str = SECRET_KEY
    publishable_key: str = PUBLISHABLE_KEY
    _http: httpx.Client = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(base_url=self.url, timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def _control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        response.raise_for_status()
        return response

    def register_webhook(self, url: str, secret: str, name: str = "amply") -> None:
        """Deliver every event to ``url``, signed with ``secret``; ``name`` replaces its like."""
        self._control("POST", f"/_config/webhooks/{name}", json={"url": url, "secret": secret})

    def requests(self, path_prefix: str | None = None) -> list[RecordedRequest]:
        """The ``/v1`` requests received since the last clear, oldest first."""
        return [
            RecordedRequest(
                method=item["method"],
                path=item["path"],
                headers=item["headers"],
                params=item["params"],
            )
            for item in self._control("GET", "/_config/requests").json()
            if path_prefix is None or item["path"].startswith(path_prefix)
        ]

    def clear_requests(self) -> None:
        self._control("DELETE", "/_config/requests")

    def set_account(
        self,
        account_id: str,
        *,
        charges_enabled: bool,
        payouts_enabled: bool,
        details_submitted: bool,
    ) -> dict[str, Any]:
        """Move a connected account through onboarding, as Stripe would once the charity has
        filled in its forms; the server then sends a signed ``account.updated`` (with
        ``account`` set) to the registered webhooks. Returns the updated account."""
        body: dict[str, Any] = self._control(
            "POST",
            f"/_config/accounts/{account_id}",
            json={
                "charges_enabled": charges_enabled,
                "payouts_enabled": payouts_enabled,
                "details_submitted": details_submitted,
            },
        ).json()
        return body

    def deauthorize(self, account_id: str) -> None:
        """The account's owner disconnects Amply: a signed ``account.application.deauthorized``
        follows, and Stripe refuses the platform's requests on the account from then on."""
        self._control("POST", f"/_config/accounts/{account_id}", json={"deauthorize": True})

    def set_latency(
        self, seconds: float, path_prefix: str | None = None, *, after: bool = False
    ) -> None:
        """Make Stripe slow: every ``/v1`` request whose path starts with ``path_prefix``
        (all of them when None) waits ``seconds`` before it runs, or with ``after`` runs at
        once (its events go out) and waits before it answers; 0 makes it fast again."""
        self._control(
            "POST",
            "/_config/latency",
            json={"seconds": seconds, "path_prefix": path_prefix, "after": after},
        )

    def reset(self) -> None:
        """Forget every object, idempotency key, webhook and logged request; no latency."""
        self.set_latency(0)
        self._control("DELETE", "/_config/data")
        self._control("DELETE", "/_config/webhooks")
        self.clear_requests()

    def payout(
        self, account_id: str, amount: int, *, fail: bool = False, currency: str = "usd"
    ) -> dict[str, Any]:
        """The connected account pays ``amount`` of its balance out to its bank: its
        balance transaction, ``payout.created``, then ``payout.paid`` (or ``payout.failed``
        and a ``payout_failure`` balance transaction). Returns the payout."""
        body: dict[str, Any] = self._control(
            "POST",
            f"/_config/accounts/{account_id}/payouts",
            json={"amount": amount, "currency": currency, "fail": fail},
        ).json()
        return body

    def fail_payout(self, account_id: str, payout_id: str) -> dict[str, Any]:
        """A payout fails after the fact (a paid one too): ``payout.failed`` follows."""
        body: dict[str, Any] = self._control(
            "POST", f"/_config/accounts/{account_id}/payouts/{payout_id}/fail"
        ).json()
        return body

    def dispute(
        self, charge_id: str, *, amount: int | None = None, inquiry: bool = False
    ) -> dict[str, Any]:
        """The cardholder disputes the charge (its full amount by default; an inquiry moves
        nothing): ``charge.dispute.created`` and, for a dispute, the withdrawal's balance
        transaction and ``charge.dispute.funds_withdrawn``. Returns the dispute."""
        params: dict[str, Any] = {"inquiry": inquiry}
        if amount is not None:
            params["amount"] = amount
        body: dict[str, Any] = self._control(
            "POST", f"/_config/charges/{charge_id}/dispute", json=params
        ).json()
        return body

    def counter_dispute(self, dispute_id: str) -> dict[str, Any]:
        """Evidence submitted: Stripe's countered fee, then ``charge.dispute.updated``."""
        body: dict[str, Any] = self._control(
            "POST", f"/_config/disputes/{dispute_id}/counter"
        ).json()
        return body

    def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        """The card network decides (``won`` or ``lost``): reinstatement (if any), then
        ``charge.dispute.closed``. Returns the dispute."""
        body: dict[str, Any] = self._control(
            "POST", f"/_config/disputes/{dispute_id}/close", json={"outcome": outcome}
        ).json()
        return body


# --- The server process -----------------------------------------------------------------------


def _read_first_line(stream: IO[bytes], lines: queue.Queue[bytes]) -> None:
    lines.put(stream.readline())


def _log_tail(log: IO[bytes]) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-4000:]


def _start_server(log: IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.stripe_server", "--port", "0"],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=_read_first_line, args=(process.stdout, lines), daemon=True).start()
    try:
        line = lines.get(timeout=STARTUP_TIMEOUT).decode().strip()
    except queue.Empty:
        line = ""
    if not line.startswith("LISTENING "):
        _stop_server(process)
        raise RuntimeError(
            f"the Stripe test server did not start (said {line!r}):\n{_log_tail(log)}"
        )
    return process, int(line.split()[1])


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[StripeServer]:
    """One Stripe-protocol server for the session (its log: the subprocess's stderr)."""
    with tempfile.TemporaryFile(prefix="stripe-server-") as log:
        process, port = _start_server(log)
        server = StripeServer(url=f"http://127.0.0.1:{port}")
        try:
            yield server
        finally:
            server.close()
            _stop_server(process)


# --- Serving an ASGI app to receive webhooks --------------------------------------------------


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C belongs to pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Run ``app`` on a free port of 127.0.0.1 in the current event loop; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        log_config=None,  # leave the process's logging (and pytest's capture) alone
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if task.done() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            await asyncio.sleep(0.005)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=SHUTDOWN_TIMEOUT)
        except TimeoutError:
            server.force_exit = True
            await task


@pytest.fixture
def serve_app() -> ServeApp:
    """``async with serve_app(app) as base_url:`` serves an ASGI app for the test's duration."""
    return serve_asgi


# --- Webhook payloads -------------------------------------------------------------------------


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header value for ``payload``: ``t=…,v1=…`` (HMAC-SHA256)."""
    t = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), b"%d.%s" % (t, payload), hashlib.sha256).hexdigest()
    return f"t={t},v1={signature}"


def recorded(name: str) -> dict[str, Any]:
    """A fresh copy of ``tests/support/recorded/<name>.json`` (ids in it are placeholders)."""
    body: dict[str, Any] = json.loads((RECORDED_DIR / f"{name}.json").read_text())
    return body


def make_event(
    type: str,  # noqa: A002 - Stripe's name for it
    obj: dict[str, Any],
    *,
    account: str | None,
    event_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """An event envelope as Stripe delivers it (``account``: the connected account, or None)."""
    return {
        "id": event_id or "evt_" + secrets.token_hex(12),
        "object": "event",
        "account": account,
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
    }
