"""Public ledger pages that end before the chain's head never change: the process keeps them
rendered and answers the same request again before routing, with a strong ETag. The page at
the head, and filtered pages, are read from the database every time."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from amply.kit.db import Database
from amply.kit.page_cache import IMMUTABLE_CACHE, CachedPage, PageCache
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.main import create_app
from amply.transparency.routes import LIST_CACHE
from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import create_organisation, donate, onboard, sandbox_succeed, sign_up


@pytest.fixture
async def app(settings: Settings, test_database: IsolatedDatabase) -> AsyncIterator[FastAPI]:
    app = create_app(settings, database_url=test_database.urls.app)
    try:
        yield app
    finally:
        await app.state.database.dispose()


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://amply.test") as client:
        yield client


async def _organisation(http: httpx.AsyncClient) -> str:
    owner = await sign_up(http)
    organisation_id = await create_organisation(http, owner)
    await onboard(http, owner, organisation_id)
    return organisation_id


async def _donations(http: httpx.AsyncClient, organisation_id: str, count: int) -> None:
    """Each completed sandbox donation appends two entries: the gift and Stripe's fee."""
    for n in range(count):
        await sandbox_succeed(http, await donate(http, organisation_id, amount=1_000 + n))


def _cached_pages(app: FastAPI) -> int:
    cache: PageCache = app.state.ledger_pages
    return len(cache)


async def test_a_kept_page_is_the_page_as_read_from_the_database(
    app: FastAPI,
    http: httpx.AsyncClient,
    database: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    organisation_id = await _organisation(http)
    await _donations(http, organisation_id, 3)
    url = f"/v1/public/organisations/{organisation_id}/ledger"

    with caplog.at_level(logging.INFO, logger="amply.access"):
        first = await http.get(url, params={"after_seq": 1, "limit": 2})
        kept = _cached_pages(app)
        second = await http.get(url, params={"after_seq": 1, "limit": 2})
        spelt_otherwise = await http.get(url, params={"limit": 2, "after_seq": 1})

    assert first.status_code == second.status_code == spelt_otherwise.status_code == 200
    assert kept == 1
    assert _cached_pages(app) == 2  # the other spelling went through the route, and was kept
    assert first.content == second.content == spelt_otherwise.content
    for header in ("etag", "cache-control", "content-type", "content-length"):
        assert first.headers[header] == second.headers[header]
    assert first.headers["cache-control"] == IMMUTABLE_CACHE
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    routes = [getattr(r, "fields", {}).get("route") for r in caplog.records]
    assert routes == ["/v1/public/organisations/{organisation_id}/ledger"] * 3
    page = first.json()
    assert (page["object"], page["has_more"], page["next_after_seq"]) == ("list", True, 3)
    async with database.session() as session:
        entries = await ledger.list_entries(session, chain_id=organisation_id, after_seq=1, limit=2)
    assert page["data"] == [entry.as_export() for entry in entries.entries]


async def test_the_page_that_reaches_the_head_is_read_afresh(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    organisation_id = await _organisation(http)
    await _donations(http, organisation_id, 1)
    url = f"/v1/public/organisations/{organisation_id}/ledger"

    head = await http.get(url, params={"limit": 2})
    beyond = await http.get(url, params={"after_seq": 2})
    assert _cached_pages(app) == 0
    await _donations(http, organisation_id, 1)
    grown = await http.get(url, params={"limit": 2})
    more = await http.get(url, params={"after_seq": 2})

    assert (head.json()["has_more"], head.headers["cache-control"]) == (False, LIST_CACHE)
    assert "etag" not in head.headers
    assert [e["seq"] for e in head.json()["data"]] == [1, 2]
    assert beyond.json()["data"] == []
    assert grown.json()["data"] == head.json()["data"]
    assert (grown.json()["has_more"], grown.json()["next_after_seq"]) == (True, 2)
    assert grown.headers["cache-control"] == IMMUTABLE_CACHE
    assert [e["seq"] for e in more.json()["data"]] == [3, 4]
    assert _cached_pages(app) == 1


async def test_filtered_pages_bypass_the_cache(app: FastAPI, http: httpx.AsyncClient) -> None:
    organisation_id = await _organisation(http)
    await _donations(http, organisation_id, 3)
    url = f"/v1/public/organisations/{organisation_id}/ledger"

    unfiltered = await http.get(url, params={"limit": 2})
    received = await http.get(url, params={"limit": 2, "type": "donation_received"})
    since = await http.get(url, params={"limit": 2, "created_gte": "2000-01-01T00:00:00Z"})
    before = await http.get(url, params={"limit": 2, "created_lt": "2999-01-01T00:00:00Z"})

    assert [e["type"] for e in unfiltered.json()["data"]] == [
        "donation_received",
        "payment_processing_fee",
    ]
    assert [e["seq"] for e in received.json()["data"]] == [1, 3]
    assert since.json() == before.json() == unfiltered.json()
    for filtered in (received, since, before):
        assert filtered.headers["cache-control"] == LIST_CACHE
        assert "etag" not in filtered.headers
    assert _cached_pages(app) == 1


async def test_a_caller_holding_an_immutable_page_is_answered_304(
    http: httpx.AsyncClient,
) -> None:
    organisation_id = await _organisation(http)
    await _donations(http, organisation_id, 2)
    url = f"/v1/public/organisations/{organisation_id}/ledger"
    page = await http.get(url, params={"limit": 2})
    etag = page.headers["etag"]

    held = await http.get(url, params={"limit": 2}, headers={"If-None-Match": etag})
    other = await http.get(url, params={"limit": 2}, headers={"If-None-Match": '"other"'})
    next_page = await http.get(
        url, params={"after_seq": 1, "limit": 2}, headers={"If-None-Match": etag}
    )

    assert (held.status_code, held.content, held.headers["etag"]) == (304, b"", etag)
    assert held.headers["cache-control"] == IMMUTABLE_CACHE
    assert (other.status_code, other.content) == (200, page.content)
    assert next_page.status_code == 200
    assert next_page.headers["etag"] != etag


async def test_an_organisation_without_entries_has_an_empty_page_and_an_unknown_one_is_404(
    app: FastAPI, http: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    organisation_id = await _organisation(http)
    # An organisation's chain, with an entry, and no organisation (only a superuser could).
    stray = "org_" + "S" * 24
    superuser_sql("INSERT INTO ledger_chains (id, kind) VALUES (%s, 'organisation')", stray)
    superuser_sql(
        "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, journal_id) "
        "VALUES ('led_stray', %s, 'donation_received', 100, 'EUR', 'jrn_stray')",
        stray,
    )

    empty = await http.get(f"/v1/public/organisations/{organisation_id}/ledger")
    unknown = await http.get("/v1/public/organisations/org_000000000000000000000000/ledger")
    not_an_organisation = await http.get(f"/v1/public/organisations/{stray}/ledger")

    assert empty.status_code == 200
    assert empty.json() == {"object": "list", "data": [], "has_more": False, "next_after_seq": None}
    assert unknown.status_code == not_an_organisation.status_code == 404
    assert _cached_pages(app) == 0


def test_the_cache_keeps_the_most_recently_used_pages_within_its_budget() -> None:
    cache = PageCache(max_bytes=20)  # a key's path and query count too: 2 bytes here
    a, b, c = (CachedPage.of(bytes(4), route=None) for _ in range(3))
    cache.put(("/a", b""), a)
    cache.put(("/b", b""), b)
    assert cache.get(("/a", b"")) is a  # now the most recently used
    cache.put(("/c", b"x=1"), c)  # 6 + 6 + 9 bytes: the least recently used one goes
    cache.put(("/d", b""), CachedPage.of(bytes(19), route=None))  # beyond the budget alone

    assert cache.get(("/b", b"")) is None
    assert cache.get(("/d", b"")) is None
    assert (cache.get(("/a", b"")), cache.get(("/c", b"x=1"))) == (a, c)
    assert (len(cache), cache.size) == (2, 15)
    cache.put(("/a", b""), CachedPage.of(bytes(2), route=None))
    assert (len(cache), cache.size) == (2, 13)
