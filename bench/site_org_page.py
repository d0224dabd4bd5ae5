"""The public site's organisation page (``GET /o/{slug}``) for an organisation whose chain has
a million entries, beside ``GET /health`` of the same server in the same run.

    python -m bench.site_org_page [--entries 1000000] [--requests 200]

1. Makes an organisation and loads a valid chain of ``--entries`` entries for it into a
   throwaway embedded PostgreSQL (in bulk, as bench.transparency does).
2. Serves the app with ``amply serve`` in a process of its own, before the running totals
   (``chain_totals``) were ever kept: the first view sums the whole chain (the worst case, and
   what every first view after a restart cost before migration 0015; timed apart).
3. Runs the totals job once (``chain_totals.advance_all``, what the background signer's loop
   does each pass), timed, and restarts the server: the first view after this restart (timed
   apart) reads the stored totals. Then ``--requests`` views of the page and of ``/health``,
   one at a time, interleaved: median and 95th percentile of each, and the ratio page /
   health. Target: the page in <= 50 ms.
4. Appends 1,000 entries to the chain, which the job has not seen yet (a stale row), and times
   the first view after that (stored totals + the 1,000 new entries), then the steady state
   again (each view adds those 1,000 entries until the job runs again).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
import psycopg

from amply.kit.db import Database
from amply.ledger import chain_totals
from amply.ledger.signing import NoteSigner
from bench._common import migrated_database
from bench.transparency import CHAIN, COLUMNS, _entries, serve

SLUG = "bench-million"


def make_organisation(owner_url: str) -> None:
    with psycopg.connect(owner_url, autocommit=True) as connection:
        # In bulk, as the owner: without the rule that an organisation has an owner (a user
        # and a membership the page never reads).
        connection.execute("ALTER TABLE organisations DISABLE TRIGGER USER")
        connection.execute(
            "INSERT INTO organisations (id, name, slug, country, default_currency, description)"
            " VALUES (%s, 'Bench Million', %s, 'DE', 'EUR', 'A chain of many entries')",
            (CHAIN, SLUG),
        )
        connection.execute("ALTER TABLE organisations ENABLE TRIGGER USER")
        connection.execute(
            "INSERT INTO ledger_chains (id, kind) VALUES (%s, 'organisation') "
            "ON CONFLICT DO NOTHING",
            (CHAIN,),
        )


def append_entries(owner_url: str, *, after: int, count: int) -> None:
    """Entries ``after + 1`` … ``after + count`` of the same chain, in bulk."""
    with psycopg.connect(owner_url, autocommit=True) as connection:
        connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        try:
            with connection.cursor().copy(f"COPY ledger_entries ({COLUMNS}) FROM STDIN") as copy:
                for entry in _entries(after + count):
                    if int(str(entry["seq"])) > after:
                        values = list(entry.values())
                        copy.write_row([*values[:-1], False, values[-1]])
        finally:
            connection.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")


def timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (path, response.status_code)
    return elapsed


def steady(client: httpx.Client, requests: int) -> tuple[list[float], list[float]]:
    page, health = [], []
    for _ in range(requests):
        page.append(timed(client, f"/o/{SLUG}"))
        health.append(timed(client, "/health"))
    return page, health


def advance_totals(app_url: str) -> tuple[float, int]:
    """One pass of the totals job over every public chain: (seconds, entries advanced)."""

    async def run() -> int:
        database = Database(app_url)
        try:
            return await chain_totals.advance_all(database)
        finally:
            await database.dispose()

    started = time.perf_counter()
    advanced = asyncio.run(run())
    return time.perf_counter() - started, advanced


def describe(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (
        f"{name:<28} median {statistics.median(samples) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    signer = NoteSigner.generate("amply.bench")
    with migrated_database() as urls:
        started = time.perf_counter()
        make_organisation(urls.migration)
        append_entries(urls.migration, after=0, count=args.entries)
        with psycopg.connect(urls.migration, autocommit=True) as connection:
            connection.execute("ANALYZE ledger_entries")
        print(f"loaded {args.entries:,} entries in {time.perf_counter() - started:.1f} s")
        process, url = serve(urls.app, urls.migration, signer)
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                timed(client, "/health")
                unkept = timed(client, f"/o/{SLUG}")
        finally:
            process.terminate()
            process.wait(timeout=30)
        job, advanced = advance_totals(urls.app)
        process, url = serve(urls.app, urls.migration, signer)
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                timed(client, "/health")
                first = timed(client, f"/o/{SLUG}")
                page, health = steady(client, args.requests)
                append_entries(urls.migration, after=args.entries, count=1000)
                grown = timed(client, f"/o/{SLUG}")
                page_after, health_after = steady(client, args.requests)
        finally:
            process.terminate()
            process.wait(timeout=30)
    print(f"first view, no running totals kept yet (sums the whole chain): {unkept * 1000:.0f} ms")
    print(
        f"totals job, one pass: {advanced:,} entries in {job:.1f} s "
        f"({chain_totals.BATCH:,} entries per transaction)"
    )
    print(f"first view after a restart, running totals kept: {first * 1000:.1f} ms")
    print(describe("GET /health (baseline)", health))
    print(describe(f"GET /o/{SLUG}", page))
    ratio = statistics.median(page) / statistics.median(health)
    print(f"ratio page / health (medians): {ratio:.1f}")
    print(f"first view after 1,000 more entries (stored totals + them): {grown * 1000:.1f} ms")
    print(describe("GET /health, after", health_after))
    print(describe(f"GET /o/{SLUG}, after", page_after))
    target = "met" if statistics.median(page_after) <= 0.05 else "NOT met"
    print(f"target <= 50 ms for {args.entries:,} entries: {target}")


if __name__ == "__main__":
    main()
