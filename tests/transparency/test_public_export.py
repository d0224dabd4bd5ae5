"""The streamed export: one consistent snapshot, verifiable offline, in flat memory."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger import checkpoints, exports
from amply.ledger.signing import NoteSigner
from amply.main import create_app
from amply.verify import verify_export
from amply.verify.crypto import entry_hash, format_timestamp
from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import append, make_chain

ServeApp = Callable[[Any], AbstractAsyncContextManager[str]]


@pytest.fixture
async def served(
    settings: Settings, test_database: IsolatedDatabase, serve_app: ServeApp
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over real HTTP: an ASGI test transport would buffer whole bodies."""
    app = create_app(settings, database_url=test_database.urls.app)
    try:
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
            yield http
    finally:
        await app.state.database.dispose()


def _url(chain_id: str) -> str:
    return f"/v1/public/organisations/{chain_id}/ledger/export"


async def test_an_export_verifies_offline_and_its_etag_names_its_head(
    served: httpx.AsyncClient, database: Database, signer: NoteSigner
) -> None:
    chain = await make_chain(database)
    for amount in (2_500, -103, 5_000):
        await append(database, chain, amount, entry_type="donation_received")

    response = await served.get(_url(chain))
    unchanged = await served.get(_url(chain), headers={"If-None-Match": response.headers["etag"]})
    await append(database, chain, 700, entry_type="donation_received")
    grown = await served.get(_url(chain), headers={"If-None-Match": response.headers["etag"]})

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == f'attachment; filename="{chain}.ledger.json"'
    document = response.json()
    result = verify_export(document, keys=[signer.verifier_key])
    assert (result.ok, result.entries_checked, result.head_seq) == (True, 3, 3)
    assert document["checkpoint"]["key"] == signer.verifier_key.encode()
    assert document["head"] == {"seq": 3, "entry_hash": document["entries"][-1]["entry_hash"]}
    assert document["chain"] == {"id": chain, "kind": "organisation"}
    assert unchanged.status_code == 304
    assert grown.status_code == 200
    assert len(grown.json()["entries"]) == 4


async def test_metadata_that_json_must_escape_exports_exactly_as_stored(
    served: httpx.AsyncClient, database: Database, signer: NoteSigner
) -> None:
    chain = await make_chain(database)
    tricky = 'quote " backslash \\ newline \n tab \t bell \u0007 é 日本 🎉 \u2028 </script>'
    stored = await append(
        database, chain, 2_500, entry_type="donation_received", metadata={"note": tricky}
    )

    document = (await served.get(_url(chain))).json()

    assert document["entries"][0]["metadata"] == stored.metadata
    assert json.loads(document["entries"][0]["metadata"])["note"] == tricky
    assert verify_export(document, keys=[signer.verifier_key]).ok


async def test_an_empty_chain_exports_as_an_empty_verifiable_document(
    served: httpx.AsyncClient, database: Database
) -> None:
    chain = await make_chain(database)

    document = (await served.get(_url(chain))).json()

    assert document["entries"] == []
    assert document["head"] == {"seq": 0, "entry_hash": None}
    assert "checkpoint" not in document  # nothing to sign yet
    assert verify_export(document).ok


async def test_entries_appended_during_an_export_are_not_in_it(
    served: httpx.AsyncClient,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    signer: NoteSigner,
) -> None:
    monkeypatch.setattr(exports, "BATCH_SIZE", 2)
    chain = await make_chain(database)
    for _ in range(6):
        await append(database, chain, 100, entry_type="donation_received")

    chunks: list[bytes] = []
    async with served.stream("GET", _url(chain)) as response:
        iterator = response.aiter_raw()
        chunks.append(await anext(iterator))
        # Appended while the export is under way, between its pages.
        for _ in range(5):
            await append(database, chain, 1, entry_type="donation_received")
        chunks.extend([chunk async for chunk in iterator])

    document = json.loads(b"".join(chunks))
    assert verify_export(document, keys=[signer.verifier_key]).ok
    assert len(document["entries"]) == 6
    assert document["head"]["seq"] == 6


OPEN_SNAPSHOTS = """
    SELECT count(*) FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = 'amply'
       AND xact_start IS NOT NULL
"""


async def _snapshots_closed(superuser_sql: SuperuserSql) -> bool:
    for _ in range(100):
        if superuser_sql(OPEN_SNAPSHOTS) == [(0,)]:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_unknown_chains_are_404_and_release_their_snapshot(
    served: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    missing = [await served.get(_url("org_000000000000000000000000")) for _ in range(3)]

    assert {r.status_code for r in missing} == {404}
    assert await _snapshots_closed(superuser_sql)


# A quarter of a million entries (about 85 MiB of JSON) by default, so that buffering the body,
# or the rows, would show in the memory it grows by; AMPLY_EXPORT_TEST_ENTRIES=1000000 for the
# million the README speaks of (bench/transparency.py measures 100k, 500k and 1M every time).
MILLION = int(os.environ.get("AMPLY_EXPORT_TEST_ENTRIES", "250000"))
START = datetime(2026, 1, 1, tzinfo=UTC)


def _created_at(seq: int) -> str:
    """``format_timestamp(START + seq µs)``, at a fraction of its cost a million times over."""
    seconds, micros = divmod(seq, 1_000_000)
    return f"2026-01-01T00:00:{seconds:02d}.{micros:06d}Z"


def _million_rows(chain_id: str) -> Iterator[tuple[object, ...]]:
    """A valid chain of a million entries, hashed by the auditors' own code."""
    for seq in (1, MILLION, 1_000_000):
        assert _created_at(seq) == format_timestamp(START + timedelta(microseconds=seq))
    previous = None
    for seq in range(1, MILLION + 1):
        entry = {
            "chain_id": chain_id,
            "seq": seq,
            "id": f"led_{seq:024d}",
            "type": "donation_received",
            "amount": 100,
            "currency": "EUR",
            "balance_after": 100 * seq,
            "metadata": '{"donation_id":"don_x"}',
            "journal_id": f"jrn_{seq:024d}",
            "created_at": _created_at(seq),
            "prev_entry_hash": previous,
        }
        previous = entry_hash(entry)
        yield (*entry.values(), False, previous)


def _load_million(superuser_url: str, chain_id: str) -> None:
    # Straight into the table with the ledger's triggers off (as the superuser): the same
    # rows the triggers would have written, a hundred times faster.
    columns = (
        "chain_id, seq, id, type, amount, currency, balance_after, metadata, journal_id, "
        "created_at, prev_entry_hash, internal, entry_hash"
    )
    with psycopg.connect(superuser_url, autocommit=True) as connection:
        connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ALL")
        try:
            with connection.cursor().copy(f"COPY ledger_entries ({columns}) FROM STDIN") as copy:
                for row in _million_rows(chain_id):
                    copy.write_row(row)
        finally:
            connection.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ALL")


async def test_a_long_chain_streams_in_flat_memory(
    served: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    signer: NoteSigner,
) -> None:
    chain = await make_chain(database)
    loading = time.monotonic()
    await asyncio.to_thread(_load_million, test_database.superuser_url, chain)
    print(f"\nloaded {MILLION:,} entries in {time.monotonic() - loading:.1f} s", end="")
    # The chain's first checkpoint: the signer verifies all of it before it signs.
    signing = time.monotonic()
    async with database.session() as session:
        checkpoint = await checkpoints.checkpoint_head(session, chain_id=chain, signer=signer)
        await session.commit()
    signed_in = time.monotonic() - signing
    print(f"\nverified and signed in {signed_in:.1f} s: {MILLION / signed_in:,.0f} entries/s")
    assert checkpoint is not None
    assert checkpoint.size == MILLION
    process = psutil.Process()
    baseline = peak = process.memory_info().rss
    received, entries, tail = 0, 0, b""

    started = time.monotonic()
    async with served.stream("GET", _url(chain)) as response:
        async for chunk in response.aiter_raw():
            received += len(chunk)
            # Each entry names its hash once (as does the head); a name may straddle chunks.
            entries += (tail[-11:] + chunk).count(b'"entry_hash"')
            tail = (tail + chunk)[-1000:]
            peak = max(peak, process.memory_info().rss)
    elapsed = time.monotonic() - started

    growth_mb = (peak - baseline) / 2**20
    print(
        f"\nexported {entries:,} entries ({received / 2**20:.0f} MiB) in {elapsed:.1f} s: "
        f"{entries / elapsed:,.0f} entries/s; RSS grew {growth_mb:.1f} MiB"
    )
    assert response.status_code == 200
    assert entries == MILLION + 1  # and the head's
    assert tail.endswith(b"]}")
    assert f'"seq":{MILLION},'.encode() in tail
    assert growth_mb < 60  # the body alone is 115 MiB


async def test_a_client_leaving_mid_export_releases_the_snapshot(
    served: httpx.AsyncClient,
    database: Database,
    test_database: IsolatedDatabase,
    monkeypatch: pytest.MonkeyPatch,
    superuser_sql: SuperuserSql,
) -> None:
    # Tens of megabytes: more than the loopback's socket buffers hold, so the export is
    # still under way when the client leaves.
    monkeypatch.setattr(sys.modules[__name__], "MILLION", 100_000)
    chain = await make_chain(database)
    await asyncio.to_thread(_load_million, test_database.superuser_url, chain)

    async with served.stream("GET", _url(chain)) as response:
        await anext(response.aiter_raw())
        assert superuser_sql(OPEN_SNAPSHOTS) == [(1,)]  # the export is still open

    assert await _snapshots_closed(superuser_sql)
