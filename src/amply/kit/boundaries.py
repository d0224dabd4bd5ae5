"""What every request and response passes through at the edge: a request body limit, the
security headers of every response, and which peers may say who the client is.

All are pure ASGI middleware (no ``BaseHTTPMiddleware``): they never buffer a request body,
and they add precomputed header tuples to each response. See docs/operations.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Collection
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from amply.kit.errors import BodyTooLarge

# --- Request body limit ----------------------------------------------------------------------


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimit:
    """Refuses a request whose body is larger than ``max_bytes`` with 413 ``body_too_large``.

    A declared ``Content-Length`` over the limit is answered before the app runs, without
    reading a byte of the body. A body that streams (chunked, or longer than declared) is
    counted as the app receives it: past the limit, ``receive`` raises, whatever the app
    answers instead is dropped, and the 413 is sent (the route has not run with the body,
    since a route reads its whole body before it runs). The 413 closes the connection, so
    the rest of the body is not read either.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it never got whole: the 413 replaces it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
        if exceeded and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        error = BodyTooLarge(self.max_bytes)
        body = _json_bytes(error.body())
        await send(
            {
                "type": "http.response.start",
                "status": error.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _json_bytes(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


# --- Security headers ------------------------------------------------------------------------

# Every response: no MIME sniffing, never framed, no Referer sent onwards from our pages (an
# API and its docs have nothing to tell the sites they link to), and for everything but the
# docs pages a policy that lets a response run, load or embed nothing at all.
_ALWAYS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
API_POLICY: Final = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_API_POLICY_HEADER: Final = (b"content-security-policy", API_POLICY.encode())
# A response that says nothing about caching is never stored: most carry a credential
# (session tokens, API key secrets, CSRF tokens, client secrets, receipt tokens) or personal
# data. Public pages that may be cached set their own Cache-Control, which is kept.
_NO_STORE: Final = (b"cache-control", b"no-store")

# /docs (Swagger UI) and /redoc load their scripts, styles and favicon from Amply itself
# (/docs/assets, from the installed fastapi-offline package: nothing from a CDN, so they work
# offline), and run one inline script (Swagger UI's set-up, and the OAuth2 redirect page's),
# allowed by its hash, computed from the page as it is sent. Both style their elements
# inline, Redoc renders its search in a blob: worker, and both fetch the OpenAPI document.
DOCS_POLICY: Final = (
    "default-src 'none'; script-src 'self'{hashes}; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
    "connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_INLINE_SCRIPT: Final = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_policy(html: bytes) -> str:
    """The Content-Security-Policy of a docs page: its own inline scripts by hash."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return DOCS_POLICY.format(hashes=hashes)


class SecurityHeaders:
    """Adds the security headers to every HTTP response, keeping any the response set itself
    (a route that may be cached sets its own Cache-Control)."""

    def __init__(self, app: ASGIApp, *, script_pages: Collection[str] = ()) -> None:
        self.app = app
        self.script_pages = frozenset(script_pages)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _route_path(scope) in self.script_pages:
            await self._script_page(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _with_defaults(message.get("headers", ()), _API_POLICY_HEADER)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _script_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A docs page (small, one body): held until its body is known, then sent with a
        policy that allows its own inline scripts."""
        start: Message | None = None
        body = bytearray()

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            policy = (b"content-security-policy", docs_policy(bytes(body)).encode())
            start["headers"] = _with_defaults(start.get("headers", ()), policy)
            await send(start)
            await send({"type": "http.response.body", "body": bytes(body)})

        await self.app(scope, receive, hold)


def _route_path(scope: Scope) -> str:
    """The path without the root path it is served under, if any."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _with_defaults(
    headers: Collection[tuple[bytes, bytes]], policy: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    added = [header for header in (*_ALWAYS, policy, _NO_STORE) if header[0] not in present]
    return [*headers, *added]
