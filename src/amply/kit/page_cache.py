"""Rendered public ledger pages that can never change, kept in the process.

A page of a chain that ends before the chain's head, read without filters, is fixed for good:
entries are never updated or deleted (the database refuses it), and a chain's seqs are
assigned one after another under the chain's lock, each committed before the next is
assigned, so once an entry after the page is visible, every entry of the page is too.

The ledger route renders such a page once and keeps it here under the request's exact path
and query string (least recently used out, within a byte budget per process), with a strong
ETag. :class:`ServeCachedPages` then answers the same request (``GET``, byte for byte the same
path and query) before routing, with the same body and headers the route sent: the route
itself only ever sees requests whose answer it has not kept. Any other page (the one that
reaches the head, filtered ones, a chain's empty end) and any error is never kept, so it is
read from the database every time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from fastapi import Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

# Per process (each `amply serve` worker has its own): about 900 pages of 100 entries.
MAX_BYTES: Final = 64 * 1024 * 1024
# A page before the head never changes; a day bounds what shared caches keep if an operator
# ever had to restore a chain from a backup that lacks its newest entries.
IMMUTABLE_CACHE: Final = "public, max-age=86400, immutable"

Target = tuple[str, bytes]  # a request's path and raw query string


@dataclass(frozen=True, slots=True)
class CachedPage:
    body: bytes
    etag: str  # strong: the body's hash
    route: Any  # the route that rendered it, for the access log and metrics

    @classmethod
    def of(cls, body: bytes, *, route: Any) -> CachedPage:
        return cls(body=body, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"', route=route)

    def response(self, if_none_match: str | None) -> Response:
        """The page, or 304 when the caller already holds it."""
        headers = {"ETag": self.etag, "Cache-Control": IMMUTABLE_CACHE}
        if if_none_match is not None and self.etag in if_none_match:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type="application/json", headers=headers)


def target(scope: Scope) -> Target:
    return scope["path"], scope["query_string"]


class PageCache:
    """Pages by request target, least recently used out first, within ``max_bytes``."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._pages: OrderedDict[Target, CachedPage] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: Target) -> CachedPage | None:
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
        return page

    def put(self, key: Target, page: CachedPage) -> None:
        size = _size(key, page)
        if size > self.max_bytes:
            return
        replaced = self._pages.pop(key, None)
        if replaced is not None:
            self.size -= _size(key, replaced)
        self._pages[key] = page
        self.size += size
        while self.size > self.max_bytes:
            evicted_key, evicted = self._pages.popitem(last=False)
            self.size -= _size(evicted_key, evicted)


def _size(key: Target, page: CachedPage) -> int:
    return len(key[0]) + len(key[1]) + len(page.body)


def keep_page(request: Request, body: bytes) -> Response:
    """Keep an immutable page for the request that rendered it; the response to send."""
    pages: PageCache = request.app.state.ledger_pages
    page = CachedPage.of(body, route=request.scope.get("route"))
    pages.put(target(request.scope), page)
    return page.response(_header(request.scope, b"if-none-match"))


class ServeCachedPages:
    """Answers a ``GET`` whose exact path and query string the ledger route answered with a
    page it kept, before routing; passes every other request on."""

    def __init__(self, app: ASGIApp, *, pages: PageCache) -> None:
        self.app = app
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = None
        if scope["type"] == "http" and scope["method"] == "GET":
            page = self.pages.get(target(scope))
        if page is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = page.route
        response = page.response(_header(scope, b"if-none-match"))
        await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ", ".join(values) if values else None
