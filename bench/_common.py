"""Shared plumbing for the benchmarks: a throwaway embedded PostgreSQL, migrated to head."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from amply.embedded import DatabaseUrls, EmbeddedPostgres
from amply.migrate import upgrade_to_head


@contextmanager
def migrated_database() -> Iterator[DatabaseUrls]:
    """A fresh embedded PostgreSQL (durable defaults: fsync and synchronous_commit on)."""
    with tempfile.TemporaryDirectory(prefix="amply-bench-") as directory:
        server = EmbeddedPostgres(Path(directory))
        urls = server.start()
        try:
            upgrade_to_head(urls.migration)
            yield urls
        finally:
            server.stop()


async def run_clients(
    clients: int, per_client: int, operation: Callable[[int, int], Awaitable[None]]
) -> float:
    """Run ``clients`` workers that each call ``operation(client, i)`` ``per_client`` times.

    Returns operations per second over the whole run.
    """

    async def worker(client: int) -> None:
        for i in range(per_client):
            await operation(client, i)

    started = time.perf_counter()
    await asyncio.gather(*(worker(client) for client in range(clients)))
    return clients * per_client / (time.perf_counter() - started)
