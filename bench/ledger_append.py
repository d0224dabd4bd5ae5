"""Ledger append and verification throughput, against a plain-INSERT baseline in the same run.

    python -m bench.ledger_append [--clients 16] [--per-client 200] [--rounds 5]
                                  [--verify-entries 100000]

Prints entries/s for: (a) plain single-row INSERTs into an unchained table with the ledger's
columns, one per transaction; (b) appends through the ledger's own statement
(:func:`amply.ledger.service.append_sql`, the one the service runs) spread over 1,000 chains;
(c) the same on ONE hot chain; and the ratio of each to (a). Then it appends a chain of
``--verify-entries`` entries and reports how fast Python reads and verifies it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import asyncpg

from amply.kit.ids import generate_id
from amply.ledger.service import EXPORT_ROWS_SQL, append_args, append_sql
from amply.verify import verify_entries
from bench._common import migrated_database, run_clients

BASELINE_TABLE = """
CREATE TABLE bench_plain_entries (
    id text PRIMARY KEY, chain_id text NOT NULL, seq bigint NOT NULL, type text NOT NULL,
    amount bigint NOT NULL, currency text NOT NULL, balance_after bigint NOT NULL,
    metadata text NOT NULL, journal_id text NOT NULL, created_at timestamptz NOT NULL,
    prev_entry_hash text, entry_hash text NOT NULL
);
GRANT INSERT ON bench_plain_entries TO amply_app;
"""
BASELINE_INSERT = """
INSERT INTO bench_plain_entries (id, chain_id, seq, type, amount, currency, balance_after,
    metadata, journal_id, created_at, prev_entry_hash, entry_hash)
VALUES ($1, $2, 1, 'donation_received', $3, 'EUR', $3, $4, $5, now(), NULL,
    'sha256:0000000000000000000000000000000000000000000000000000000000000000')
"""
METADATA = '{"donation_id":"don_bench","fund":null,"donor":"Anonymous"}'


async def _append(connection: asyncpg.Connection, chain_id: str) -> None:
    leg = (generate_id("led"), chain_id, "donation_received", 1000, "EUR", METADATA)
    await connection.execute(append_sql(1), *append_args([leg], generate_id("jrn")))


async def measure(dsn: str, *, clients: int, per_client: int, rounds: int) -> dict[str, float]:
    """Entries/s of each workload, and the ratios to the baseline, as medians over ``rounds``.

    The workloads take turns within each round, so a machine that slows down or speeds up
    during the run moves the baseline and the ledger alike; each ratio is taken within a
    round and the median of the rounds is reported.
    """
    connections = [await asyncpg.connect(dsn) for _ in range(clients)]
    try:

        async def plain(client: int, i: int) -> None:
            await connections[client].execute(
                BASELINE_INSERT, generate_id("led"), "org_bench", 1000, METADATA, generate_id("jrn")
            )

        async def spread(client: int, i: int) -> None:
            # At every step the 16 clients write 16 different chains, as independent callers would.
            await _append(connections[client], f"org_bench{(i * clients + client) % 1000}")

        async def hot(client: int, i: int) -> None:
            await _append(connections[client], "org_hot")

        async def serial(client: int, i: int) -> None:
            await plain(0, i)

        workloads = {"plain": plain, "spread": spread, "hot": hot}
        samples: dict[str, list[float]] = {name: [] for name in (*workloads, "serial")}
        for operation in workloads.values():  # warm-up
            await run_clients(clients, max(per_client // 10, 5), operation)
        for _ in range(rounds):
            for name, operation in workloads.items():
                samples[name].append(await run_clients(clients, per_client, operation))
            samples["serial"].append(await run_clients(1, per_client, serial))
        results = {name: statistics.median(rates) for name, rates in samples.items()}
        for name in ("spread", "hot"):
            pairs = zip(samples[name], samples["plain"], strict=True)
            ratios = [rate / base for rate, base in pairs]
            results[f"{name}_ratio"] = statistics.median(ratios)
        return results
    finally:
        for connection in connections:
            await connection.close()


async def measure_verification(dsn: str, owner_dsn: str, entries: int) -> tuple[float, float]:
    """Append ``entries`` to one chain (in bulk, as the owner), then read + verify it."""
    owner = await asyncpg.connect(owner_dsn)
    try:
        await owner.execute(
            "INSERT INTO ledger_chains (id, kind) VALUES ('org_verify', 'organisation')"
        )
        batch = 1000
        for start in range(0, entries, batch):
            size = min(batch, entries - start)
            legs = [
                (generate_id("led"), "org_verify", "donation_received", 1000, "EUR", METADATA)
                for _ in range(size)
            ]
            async with owner.transaction():
                await owner.execute(append_sql(size), *append_args(legs, generate_id("jrn")))
    finally:
        await owner.close()
    connection = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        rows = await connection.fetch(EXPORT_ROWS_SQL, "org_verify", 0, entries, entries)
        read_done = time.perf_counter()
        # As `amply verify` does: on two cores when there are two.
        result = verify_entries(
            "org_verify", kind="organisation", entries=rows, workers=os.cpu_count() or 1
        )
        if not result.ok:
            raise SystemExit(f"verification failed: {result.verdict()}")
        finished = time.perf_counter()
        assert result.entries_checked == entries
        return entries / (finished - started), entries / (finished - read_done)
    finally:
        await connection.close()


async def main_async(args: argparse.Namespace) -> None:
    with migrated_database() as urls:
        dsn, owner_dsn = urls.app, urls.migration
        owner = await asyncpg.connect(owner_dsn)
        await owner.execute(BASELINE_TABLE)
        await owner.execute(
            "INSERT INTO ledger_chains (id, kind) SELECT 'org_bench' || g, 'organisation' "
            "FROM generate_series(0, 999) g UNION ALL SELECT 'org_hot', 'organisation'"
        )
        await owner.close()
        rates = await measure(
            dsn, clients=args.clients, per_client=args.per_client, rounds=args.rounds
        )
        total, verify_only = await measure_verification(dsn, owner_dsn, args.verify_entries)
    print(
        f"clients: {args.clients}, appends per client and round: {args.per_client}, "
        f"rounds: {args.rounds} (medians; each ratio is taken within a round)"
    )
    print(f"(a) plain INSERT baseline       {rates['plain']:10.0f} entries/s   ratio 1.00")
    print(
        f"(b) ledger appends, 1,000 chains {rates['spread']:10.0f} entries/s   "
        f"ratio {rates['spread_ratio']:.2f}   (target >= 0.50)"
    )
    print(
        f"(c) ledger appends, one chain    {rates['hot']:10.0f} entries/s   "
        f"ratio {rates['hot_ratio']:.2f}   (target >= 1,000/s)"
    )
    print(
        f"    for scale: one client's plain INSERTs, one commit each: {rates['serial']:,.0f}/s "
        "(one chain commits one append at a time)"
    )
    print(
        f"(d) verify {args.verify_entries} entries in Python: {verify_only:,.0f} entries/s "
        f"(read + verify: {total:,.0f} entries/s; target >= 200,000/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--verify-entries", type=int, default=100_000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
