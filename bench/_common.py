"""Shared plumbing for the benchmarks: a throwaway embedded PostgreSQL migrated to head,
concurrent clients, a free port, and CPU accounting by process."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil  # type: ignore[import-untyped]

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- CPU accounting ---------------------------------------------------------------------------


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used over one phase, by process group, and by the whole machine."""

    wall: float
    seconds: dict[str, float]
    machine: float

    @property
    def others(self) -> float:
        """Cores that other processes (other people's tests) used meanwhile, on average."""
        return max(self.machine - sum(self.seconds.values()), 0.0) / self.wall

    def per(self, name: str, count: int) -> float:
        """Milliseconds of ``name``'s CPU per request."""
        return self.seconds.get(name, 0.0) * 1000 / max(count, 1)


@dataclass(frozen=True)
class CpuSnapshot:
    at: float
    groups: dict[str, dict[int, float]]  # by group: CPU seconds of each of its live processes
    machine: float


def _machine_busy() -> float:
    """Busy time of this machine's own processes: not idle, iowait, steal or guests."""
    times = psutil.cpu_times()
    fields = ("user", "nice", "system", "irq", "softirq")
    return float(sum(getattr(times, name, 0.0) for name in fields))


class CpuMeter:
    """CPU time of named groups of processes: each a root process, with its descendants if
    the group is a tree (the server's supervisor and workers; PostgreSQL's postmaster and
    backends). A process that exits meanwhile takes its CPU time with it."""

    def __init__(self, trees: dict[str, int], single: dict[str, int]) -> None:
        self.roots = {name: (psutil.Process(pid), True) for name, pid in trees.items()}
        self.roots.update({name: (psutil.Process(pid), False) for name, pid in single.items()})

    def _group(self, root: psutil.Process, tree: bool) -> dict[int, float]:
        processes = [root, *root.children(recursive=True)] if tree else [root]
        seconds = {}
        for process in processes:
            with suppress(psutil.NoSuchProcess):
                seconds[process.pid] = _cpu_seconds(process)
        return seconds

    def snapshot(self) -> CpuSnapshot:
        groups = {name: self._group(*root) for name, root in self.roots.items()}
        return CpuSnapshot(at=time.perf_counter(), groups=groups, machine=_machine_busy())

    def since(self, before: CpuSnapshot) -> CpuUse:
        after = self.snapshot()
        seconds = {
            name: sum(t - before.groups[name].get(pid, 0.0) for pid, t in group.items())
            for name, group in after.groups.items()
        }
        return CpuUse(after.at - before.at, seconds, after.machine - before.machine)


async def postmaster_pid(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        backend: int = await connection.fetchval("SELECT pg_backend_pid()")
        return int(psutil.Process(backend).ppid())
    finally:
        await connection.close()
