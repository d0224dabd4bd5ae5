"""Completed transfers per second, through the database and through the HTTP API, each beside
the plain-INSERT baseline of the same run (issue 5).

    python -m bench.transfers [--clients 16] [--per-client 600] [--rounds 3]
                              [--http-transfers 3200] [--http-users 96]
                              [--profile auto|always|never]

(a) plain single-row INSERTs, one per transaction: bench.ledger_append's baseline.
(b) completed double-entry transfers through the ledger's own database path. One transfer is
    one transaction holding what the service writes for a transfer that completes at once: the
    two-leg journal through :func:`amply.ledger.service.append_sql` (``transfer_out`` on the
    sender's wallet chain, ``transfer_in`` on the recipient's, one journal id) and the
    ``transactions`` row naming it, which the deferred ``transactions_journal_matches`` checks
    at commit. ``--clients`` clients over 1,000 funded wallets (each client a different pair at
    every step), and over ONE hot pair (alternating directions). (a) and (b) run ``--rounds``
    times, interleaved; each (b) line gives the median rate and the median of the rounds' own
    ratios to (a), which drifting load from other processes on the machine disturbs least.
    For the spread case, two labelled extras: (b') the service's whole statement sequence for
    such a transfer in raw SQL (recipient lookup, chain locks, balance and risk queries, journal,
    row), and (b") the service function ``transfers.create_transfer()`` through SQLAlchemy
    sessions (``amply.kit.db.Database``): the ORM's and the service's overhead over (b).
(c) the same through the HTTP API: ``amply serve`` in a subprocess (its database pool sized to
    ``--clients``; ``--http-pool-size 0`` keeps the service's 10 + 10 overflow, which closes and
    reopens connections under 16 concurrent requests), and a client process (httpx.AsyncClient,
    ``--clients`` concurrent requests) sending ``POST /v1/transfers`` over ``--http-users``
    users (each client among its own users) and over one hot pair; beside it, ``GET /health``
    from the same client. Each line gives the CPU time per request of the server, of
    PostgreSQL and of the client, and what other processes used meanwhile. Below 500
    transfers/s (or with ``--profile always``) the spread runs again with the server under a
    sampling profiler, and the report says where the server's time goes.

    python -m bench.transfers --per-client 50 --http-transfers 500     # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any, Final, cast

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from amply.embedded import DatabaseUrls
from amply.kit.db import Database
from amply.kit.ids import generate_id
from amply.kit.settings import Settings
from amply.ledger.service import append_args, append_sql, encode_metadata
from amply.models import User, Wallet
from amply.wallets import risk, transfers
from amply.wallets import service as wallets
from bench._common import (
    CpuMeter,
    CpuUse,
    free_port,
    migrated_database,
    postmaster_pid,
    run_clients,
)
from bench.ledger_append import BASELINE_INSERT, BASELINE_TABLE, METADATA

WALLETS: Final = 1000
CURRENCY: Final = "USD"
FUNDING: Final = 10**9  # minor units deposited into every bench wallet: never short
AMOUNT: Final = 100
DESCRIPTION: Final = "bench transfer"
PASSWORD: Final = "violet-quartz-lantern-harbor-917"  # noqa: S105 - a throwaway bench user's
HTTP_TARGET: Final = 500.0
SPREAD_TARGET: Final = 0.17
ROOT: Final = Path(__file__).resolve().parents[1]


def _progress(message: str) -> None:
    print(f"[bench.transfers] {message}", file=sys.stderr, flush=True)


# --- (b): the ledger's own database path ----------------------------------------------------

# The transfer's row, as the ORM writes it for a transfer created completed (services/
# transfers.py: _complete), with the server defaults read back (eager_defaults).
INSERT_TRANSFER_SQL: Final = """
INSERT INTO transactions (id, kind, status, wallet_id, counterparty_wallet_id, amount, fee,
    currency, description, risk_flags, journal_id, completed_at)
VALUES ($1, 'transfer', 'completed', $2, $3, $4, 0, $5, $6, '[]', $7, now())
RETURNING created_at, updated_at
"""


def _positional(statement: ClauseElement) -> tuple[str, list[str]]:
    """The service's statement as asyncpg runs it through SQLAlchemy ($n), and its names."""
    compiled = cast(SQLCompiler, statement.compile(dialect=asyncpg_dialect()))  # type: ignore[no-untyped-call]
    return str(compiled), list(compiled.positiontup or [])


# The statements transfers.create_transfer() runs, in its order (b'). of_username() builds its
# query inline; this is the same expression.
OF_USERNAME = _positional(
    select(Wallet)
    .join(User, User.id == Wallet.user_id)
    .where(func.lower(User.username) == bindparam("username"))
)
LOCK_CHAINS_SQL: Final = "SELECT ledger_lock_chains($1::text[])"  # ledger.lock_chains()
BALANCE = _positional(wallets._BALANCE_SQL)  # the balance and what holds keep, in one
SENT_TODAY = _positional(risk._SENT_TODAY_SQL)
COMPLETED_BEFORE = _positional(risk._COMPLETED_BEFORE_SQL)
RECENT_COUNT = _positional(risk._RECENT_COUNT_SQL)


async def _query(
    connection: asyncpg.Connection, statement: tuple[str, list[str]], **params: Any
) -> Any:
    sql, names = statement
    return await connection.fetchval(sql, *(params[name] for name in names))


@dataclass(frozen=True)
class BenchWallets:
    ids: list[str]  # 0..WALLETS-1 spread over; the last two are the hot pair
    usernames: list[str]

    @property
    def hot(self) -> tuple[str, str]:
        return self.ids[-2], self.ids[-1]


async def create_wallets(owner: asyncpg.Connection, count: int) -> BenchWallets:
    """Users with wallets and wallet chains, in bulk as the owner, each funded by a deposit."""
    ids = [generate_id("wal") for _ in range(count)]
    users = [generate_id("usr") for _ in range(count)]
    usernames = [f"bench_w{n}" for n in range(count)]
    async with owner.transaction():
        await owner.execute(
            "INSERT INTO users (id, name, username, email, password_hash) "
            "SELECT u, 'Bench ' || n, n, n || '@example.org', '$argon2id$bench' "
            "FROM unnest($1::text[], $2::text[]) AS t (u, n)",
            users,
            usernames,
        )
        await owner.execute(
            "INSERT INTO ledger_chains (id, kind) SELECT unnest($1::text[]), 'wallet'", ids
        )
        await owner.execute(
            "INSERT INTO wallets (id, user_id, currency) "
            "SELECT w, u, $3 FROM unnest($1::text[], $2::text[]) AS t (w, u)",
            ids,
            users,
            CURRENCY,
        )
        funding = encode_metadata({"source": "bench"})
        await owner.executemany(
            append_sql(1),
            [
                append_args(
                    [(generate_id("led"), wallet, "deposit", FUNDING, CURRENCY, funding)],
                    generate_id("jrn"),
                )
                for wallet in ids
            ],
        )
    return BenchWallets(ids=ids, usernames=usernames)


async def write_transfer(
    connection: asyncpg.Connection, sender: str, recipient: str, amount: int
) -> None:
    """What the service writes for a completed transfer: the journal, then its row."""
    transaction_id = generate_id("txn")
    journal_id = generate_id("jrn")
    await connection.fetch(
        append_sql(2),
        *append_args(
            [
                (
                    generate_id("led"),
                    sender,
                    "transfer_out",
                    -amount,
                    CURRENCY,
                    encode_metadata({"transaction_id": transaction_id, "to": recipient}),
                ),
                (
                    generate_id("led"),
                    recipient,
                    "transfer_in",
                    amount,
                    CURRENCY,
                    encode_metadata({"transaction_id": transaction_id, "from": sender}),
                ),
            ],
            journal_id,
        ),
    )
    await connection.fetch(
        INSERT_TRANSFER_SQL,
        transaction_id,
        sender,
        recipient,
        amount,
        CURRENCY,
        DESCRIPTION,
        journal_id,
    )


async def transfer_sql(
    connection: asyncpg.Connection, sender: str, recipient: str, amount: int = AMOUNT
) -> None:
    """(b): one completed transfer, in one transaction."""
    async with connection.transaction():
        await write_transfer(connection, sender, recipient, amount)


async def transfer_service_sql(
    connection: asyncpg.Connection, sender: str, recipient_username: str, amount: int = AMOUNT
) -> None:
    """(b'): the statements create_transfer() runs for a transfer that completes at once."""
    async with connection.transaction():
        sql, _ = OF_USERNAME
        row = await connection.fetchrow(sql, recipient_username.lower())
        if row is None:
            raise SystemExit(f"no bench user {recipient_username}")
        recipient: str = row["id"]
        await connection.fetchval(LOCK_CHAINS_SQL, sorted([sender, recipient]))
        sql, names = BALANCE
        params = {"wallet_id": sender, "currency": CURRENCY}
        money = await connection.fetchrow(sql, *(params[name] for name in names))
        assert money is not None  # one row, always
        if amount > money["balance"] - (money["held"] or 0):
            raise SystemExit(f"bench wallet {sender} ran short")
        day, hour = float(risk.DAILY_WINDOW.total_seconds()), 3600.0
        await _query(connection, SENT_TODAY, sender=sender, seconds=day)
        await _query(connection, COMPLETED_BEFORE, sender=sender, recipient=recipient)
        await _query(connection, RECENT_COUNT, sender=sender, seconds=hour)
        await write_transfer(connection, sender, recipient, amount)


def spread_pair(client: int, i: int, clients: int) -> tuple[int, int]:
    """Sender and recipient indexes: at every step the clients' pairs share no wallet."""
    k = (i * clients + client) % WALLETS
    return k, (k + WALLETS // 2) % WALLETS


def service_settings() -> Settings:
    """The service's settings with the risk rules out of the way of a completed transfer."""
    return Settings(
        risk_large_transfer_threshold=10**12,
        risk_rapid_transfer_count=10**6,
        transfer_daily_limit=10**15,
        checkpoint_interval_seconds=0,
        housekeeping_interval_seconds=0,
    )


@dataclass(frozen=True)
class Run:
    count: int
    rate: float
    cpu: CpuUse


async def timed(
    meter: CpuMeter,
    clients: int,
    per_client: int,
    operation: Callable[[int, int], Awaitable[None]],
) -> Run:
    before = meter.snapshot()
    rate = await run_clients(clients, per_client, operation)
    return Run(clients * per_client, rate, meter.since(before))


@dataclass
class SqlResults:
    runs: dict[str, list[Run]] = field(default_factory=dict)

    def median(self, name: str) -> Run:
        """The run with the median rate (the lower middle one of an even number)."""
        runs = sorted(self.runs[name], key=lambda run: run.rate)
        return runs[(len(runs) - 1) // 2]

    def ratios(self, name: str) -> list[float]:
        """Each round's rate over the same round's plain-INSERT rate."""
        return [
            run.rate / plain.rate
            for run, plain in zip(self.runs[name], self.runs["plain"], strict=True)
        ]


async def measure_sql(
    urls: DatabaseUrls, *, clients: int, per_client: int, rounds: int
) -> SqlResults:
    owner = await asyncpg.connect(urls.migration)
    try:
        await owner.execute(BASELINE_TABLE)
        _progress(f"creating and funding {WALLETS} + 2 wallets")
        bench = await create_wallets(owner, WALLETS + 2)
    finally:
        await owner.close()
    connections = [await asyncpg.connect(urls.app) for _ in range(clients)]
    meter = CpuMeter(
        trees={"postgres": await postmaster_pid(urls.app)}, single={"bench": os.getpid()}
    )
    results = SqlResults()
    try:

        async def plain(client: int, i: int) -> None:
            await connections[client].execute(
                BASELINE_INSERT, generate_id("led"), "org_bench", 1000, METADATA, generate_id("jrn")
            )

        async def spread(client: int, i: int) -> None:
            sender, recipient = spread_pair(client, i, clients)
            await transfer_sql(connections[client], bench.ids[sender], bench.ids[recipient])

        async def hot(client: int, i: int) -> None:
            a, b = bench.hot
            sender, recipient = (a, b) if (i + client) % 2 == 0 else (b, a)
            await transfer_sql(connections[client], sender, recipient)

        async def seed(client: int, i: int) -> None:
            # One completed transfer on every spread pair before anything is timed: (b'')
            # then meets no first-transfer-to-this-recipient hold.
            if i * clients + client < WALLETS:
                await spread(client, i)

        await run_clients(clients, -(-WALLETS // clients), seed)
        operations: dict[str, Callable[[int, int], Awaitable[None]]] = {
            "plain": plain,
            "spread": spread,
            "hot": hot,
        }
        warm_up = max(per_client // 10, 5)
        for operation in operations.values():
            await run_clients(clients, warm_up, operation)
        for round_number in range(1, rounds + 1):
            for name, operation in operations.items():
                _progress(f"round {round_number}/{rounds}: {name}")
                run = await timed(meter, clients, per_client, operation)
                results.runs.setdefault(name, []).append(run)

        async def service_sql(client: int, i: int) -> None:
            sender, recipient = spread_pair(client, i, clients)
            await transfer_service_sql(
                connections[client], bench.ids[sender], bench.usernames[recipient]
            )

        _progress("(b') the service's statements in SQL")
        await run_clients(clients, warm_up, service_sql)
        results.runs["service_sql"] = [await timed(meter, clients, per_client, service_sql)]
    finally:
        for connection in connections:
            await connection.close()

    _progress('(b") transfers.create_transfer() through SQLAlchemy sessions')
    results.runs["orm"] = [
        await measure_orm(urls.app, bench, meter, clients=clients, per_client=per_client)
    ]
    return results


async def measure_orm(
    dsn: str, bench: BenchWallets, meter: CpuMeter, *, clients: int, per_client: int
) -> Run:
    """(b''): the service function, one session (and transaction) per transfer."""
    database = Database(dsn, pool_size=clients, max_overflow=0)
    settings = service_settings()
    try:

        async def service(client: int, i: int) -> None:
            sender_index, recipient_index = spread_pair(client, i, clients)
            async with database.session() as session:
                sender = await session.get_one(Wallet, bench.ids[sender_index])
                transfer = await transfers.create_transfer(
                    session,
                    sender=sender,
                    recipient_username=bench.usernames[recipient_index],
                    amount=AMOUNT,
                    currency=None,
                    description=DESCRIPTION,
                    settings=settings,
                )
                await session.commit()
            if transfer.status != "completed":
                raise SystemExit(f"create_transfer() left a transfer {transfer.status}")

        await run_clients(clients, max(per_client // 10, 5), service)
        return await timed(meter, clients, per_client, service)
    finally:
        await database.dispose()


# --- (c): the HTTP API, client side (runs in a process of its own) --------------------------


def _http(url: str, clients: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=120)


def _error_key(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{response.status_code} {error.get('code')}"
    return f"{response.status_code} status={body.get('status') if isinstance(body, dict) else ''}"


def _client_pid() -> int:
    return os.getpid()


def client_signups(url: str, usernames: list[str], clients: int) -> dict[str, str]:
    """Sign the users up (201 each); their session tokens."""

    async def run() -> dict[str, str]:
        tokens: dict[str, str] = {}
        async with _http(url, clients) as client:

            async def worker(names: list[str]) -> None:
                for username in names:
                    response = await client.post(
                        "/v1/auth/signup",
                        json={
                            "name": f"Bench {username}",
                            "username": username,
                            "email": f"{username}@example.org",
                            "password": PASSWORD,
                            "session_type": "token",
                        },
                    )
                    if response.status_code != 201:
                        raise RuntimeError(f"sign-up {username}: {response.text[:500]}")
                    tokens[username] = response.json()["session"]["token"]

            await asyncio.gather(*(worker(usernames[c::clients]) for c in range(clients)))
        return tokens

    return asyncio.run(run())


def _transfer_request(token: str, recipient: str) -> dict[str, Any]:
    return {
        "json": {"recipient": recipient, "amount": 1, "description": DESCRIPTION},
        "headers": {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex},
    }


def client_first_transfers(url: str, plan: list[list[tuple[str, str]]]) -> int:
    """One transfer per (sender token, recipient): held as a first transfer to a new recipient,
    then confirmed. Returns how many were held and confirmed."""

    async def run() -> int:
        confirmed = 0
        async with _http(url, len(plan)) as client:

            async def worker(steps: list[tuple[str, str]]) -> None:
                nonlocal confirmed
                for token, recipient in steps:
                    response = await client.post(
                        "/v1/transfers", **_transfer_request(token, recipient)
                    )
                    body = response.json()
                    if response.status_code != 201:
                        raise RuntimeError(f"first transfer: {response.text[:500]}")
                    if body["status"] == "completed":
                        continue
                    confirm = await client.post(
                        f"/v1/transfers/{body['id']}/confirm",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    if confirm.status_code != 200 or confirm.json()["status"] != "completed":
                        raise RuntimeError(f"confirm: {confirm.text[:500]}")
                    confirmed += 1

            await asyncio.gather(*(worker(steps) for steps in plan))
        return confirmed

    return asyncio.run(run())


def client_transfers(url: str, plan: list[list[tuple[str, str]]]) -> dict[str, Any]:
    """Each client sends its steps' transfers one after another, all clients at once.
    A transfer counts when it is answered 201 and completed; anything else is an error."""

    async def run() -> dict[str, Any]:
        errors: Counter[str] = Counter()
        samples: list[str] = []
        completed = 0
        async with _http(url, len(plan)) as client:

            async def worker(steps: list[tuple[str, str]]) -> None:
                nonlocal completed
                for token, recipient in steps:
                    response = await client.post(
                        "/v1/transfers", **_transfer_request(token, recipient)
                    )
                    if response.status_code == 201 and response.json()["status"] == "completed":
                        completed += 1
                        continue
                    errors[_error_key(response)] += 1
                    if len(samples) < 3:
                        samples.append(f"{response.status_code} {response.text[:300]}")

            started = time.perf_counter()
            await asyncio.gather(*(worker(steps) for steps in plan))
            seconds = time.perf_counter() - started
        return {
            "completed": completed,
            "seconds": seconds,
            "errors": dict(errors),
            "samples": samples,
        }

    return asyncio.run(run())


def client_health(url: str, clients: int, per_client: int) -> dict[str, Any]:
    """GET /health from ``clients`` concurrent workers: the HTTP stack without the work."""

    async def run() -> dict[str, Any]:
        failures = 0
        async with _http(url, clients) as client:

            async def worker() -> None:
                nonlocal failures
                for _ in range(per_client):
                    if (await client.get("/health")).status_code != 200:
                        failures += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            seconds = time.perf_counter() - started
        return {"completed": clients * per_client - failures, "seconds": seconds, "errors": {}}

    return asyncio.run(run())


# --- (c): the server, its CPU, and its profile -----------------------------------------------


def server_env(urls: DatabaseUrls, data_dir: Path, pool_size: int | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AMPLY_")}
    env.update(
        {
            "DATABASE_URL": urls.app,
            "DATABASE_MIGRATION_URL": urls.migration,
            "AMPLY_ENVIRONMENT": "development",
            "AMPLY_DATA_DIR": str(data_dir),
            "AMPLY_LOG_LEVEL": "warning",
            "AMPLY_CHECKPOINT_INTERVAL_SECONDS": "0",
            "AMPLY_HOUSEKEEPING_INTERVAL_SECONDS": "0",
            "AMPLY_PASSWORD_HASH_TIME_COST": "1",
            "AMPLY_PASSWORD_HASH_MEMORY_KIB": "1024",
            "AMPLY_PASSWORD_HASH_PARALLELISM": "1",
            "AMPLY_RISK_LARGE_TRANSFER_THRESHOLD": str(10**12),
            "AMPLY_RISK_RAPID_TRANSFER_COUNT": str(10**6),
            "AMPLY_TRANSFER_DAILY_LIMIT": str(10**15),
        }
    )
    if pool_size is not None:
        env["AMPLY_DB_POOL_SIZE"] = str(pool_size)
    return env


@contextmanager
def serve(
    env: dict[str, str], log: Path, *, profile_dir: Path | None = None
) -> Iterator[tuple[int, str]]:
    """``amply serve`` in a subprocess (under the sampling profiler when ``profile_dir`` is
    given), its output in ``log``; yields its pid and URL once it is ready."""
    port = free_port()
    if profile_dir is None:
        command = [sys.executable, "-m", "amply.cli", "serve", "--port", str(port)]
    else:
        entry = "from bench.transfers import profiled_serve; profiled_serve()"
        command = [sys.executable, "-c", entry, str(port), str(profile_dir)]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise SystemExit(
                    f"amply serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("amply serve did not become ready")
        yield process.pid, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- (c): where the server's time goes ------------------------------------------------------

# A sample of the server's main thread is put in the phase of the innermost frame on its
# stack that matches one of PHASES (path fragment, function name or None for any); failing
# that, in the layer of the innermost frame that matches one of LAYERS. SQLAlchemy runs each
# statement in a greenlet of its own; its stack is joined to the event loop's suspended stack
# that started it, so that a statement counts for the service function that ran it.
PHASES: Final = (
    ("sqlalchemy/pool/", None, "connection pool: checkout (pre-ping), return, connect"),
    ("amply/ledger/service.py", "append_journal", "ledger: the journal (append_sql)"),
    ("amply/ledger/service.py", "lock_chains", "ledger: chain locks"),
    ("amply/wallets/risk.py", None, "risk rules: 3 queries"),
    ("amply/wallets/service.py", "require_available", "balance and held: 2 queries"),
    ("amply/wallets/service.py", "of_username", "recipient wallet lookup"),
    ("amply/wallets/service.py", "of_user", "sender wallet lookup"),
    ("amply/wallets/transfers.py", None, "transfer: the rest (transactions row flush)"),
    ("amply/wallets/views.py", None, "response view (usernames query, model)"),
    ("amply/kit/idempotency.py", "begin", "idempotency: lock, lookup, purge"),
    ("amply/kit/idempotency.py", "remember", "idempotency: sweep, store response"),
    ("amply/identity/auth.py", None, "authentication: session and user query"),
    ("amply/kit/dependencies.py", "get_session", "session: commit, close"),
    ("starlette/responses.py", None, "response rendering"),
)
LAYERS: Final = (
    ("amply/cli.py", None, "event loop, and C code it calls (uvloop, httptools, asyncpg)"),
    ("amply/", None, "amply: the rest (route, dependencies)"),
    ("fastapi/", None, "FastAPI: routing, dependencies, validation"),
    ("starlette/", None, "Starlette: middleware, routing"),
    ("uvicorn/", None, "uvicorn: HTTP protocol"),
)
LOOP: Final = LAYERS[0][2]
Stack = list[tuple[str, str]]
_STDLIB = re.compile(r"/lib/python3\.\d+/([^/]+)")


def _phase(stack: Stack) -> str:
    if stack[0][0].endswith("asyncio/runners.py"):
        return LOOP
    for rules in (PHASES, LAYERS):
        for filename, qualname in stack:
            for fragment, name, label in rules:
                if fragment in filename and (name is None or qualname.rsplit(".", 1)[-1] == name):
                    return label
    return "other"


def _package(filename: str) -> str:
    if filename.endswith("asyncio/runners.py"):
        return LOOP
    if filename == __file__:
        return "the sampler itself"
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/amply/" in filename:
        return "amply"
    match = _STDLIB.search(filename)
    return f"stdlib {match.group(1).removesuffix('.py')}" if match else filename


def _amply_function(stack: Stack) -> str:
    """The innermost function of Amply's own on the stack (what the time is spent for)."""
    for filename, qualname in stack:
        if "/amply/" in filename and not filename.endswith("amply/cli.py"):
            return f"{filename.rsplit('/amply/', 1)[1]}:{qualname}"
    return "(none) " + _phase(stack)


class Sampler:
    """A CPU-time sampling profiler of the server: every millisecond of the process's CPU time
    (``ITIMER_PROF``), the signal handler, which Python runs in the main thread, records that
    thread's stack. On between the files ``start`` and ``stop`` appearing in its directory;
    then writes ``profile.json`` there."""

    INTERVAL: Final = 0.001

    def __init__(self, directory: Path, root: Any) -> None:
        self.directory = directory
        self.root = root  # the main thread's root greenlet: the event loop's
        self.active = False
        self.samples = 0
        self.statements = 0
        self.connections = 0
        self.views: dict[str, defaultdict[str, int]] = {
            view: defaultdict(int)
            for view in ("phases", "amply", "packages", "leaves", "statements_run")
        }

    def count_statement(self, _: object, __: object, statement: str, *___: object) -> None:
        if self.active:
            self.statements += 1
            self.views["statements_run"][" ".join(statement.split())[:100]] += 1

    def count_connection(self, *_: object) -> None:
        if self.active:
            self.connections += 1

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.active or frame is None:
            return
        stack: Stack = []
        # In one of SQLAlchemy's greenlets, go on with the event loop's suspended stack.
        for start in (frame, self.root.gr_frame):
            while start is not None:
                stack.append((start.f_code.co_filename, start.f_code.co_qualname))
                start = start.f_back
        self.samples += 1
        self.views["phases"][_phase(stack)] += 1
        self.views["amply"][_amply_function(stack)] += 1
        self.views["packages"][_package(stack[0][0])] += 1
        self.views["leaves"][f"{_package(stack[0][0])}: {stack[0][1]}"] += 1

    def control(self) -> None:
        while not (self.directory / "start").exists():
            time.sleep(0.02)
        started, cpu = time.perf_counter(), time.process_time()
        self.active = True
        signal.setitimer(signal.ITIMER_PROF, self.INTERVAL, self.INTERVAL)
        while not (self.directory / "stop").exists():
            time.sleep(0.05)
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        self.active = False
        report = {
            "wall": time.perf_counter() - started,
            "cpu": time.process_time() - cpu,
            "samples": self.samples,
            "statements": self.statements,
            "connections": self.connections,
            **{view: dict(counts) for view, counts in self.views.items()},
        }
        (self.directory / "profile.tmp").write_text(json.dumps(report))
        (self.directory / "profile.tmp").replace(self.directory / "profile.json")


def profiled_serve() -> None:
    """``amply serve --port PORT`` with a :class:`Sampler` (argv: PORT DIRECTORY)."""
    import greenlet  # type: ignore[import-untyped]
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    from amply.cli import main as amply_main

    port, directory = sys.argv[1], Path(sys.argv[2])
    sampler = Sampler(directory, greenlet.getcurrent())
    event.listen(Engine, "before_cursor_execute", sampler.count_statement)
    event.listen(Pool, "connect", sampler.count_connection)
    signal.signal(signal.SIGPROF, sampler.on_signal)
    threading.Thread(target=sampler.control, daemon=True).start()
    raise SystemExit(amply_main(["serve", "--port", port]))


# --- (c): orchestration ------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRun:
    result: dict[str, Any]
    cpu: CpuUse

    @property
    def count(self) -> int:
        completed: int = self.result["completed"]
        return completed

    @property
    def errors(self) -> int:
        return sum(self.result["errors"].values())

    @property
    def rate(self) -> float:
        seconds: float = self.result["seconds"]
        return self.count / seconds


@dataclass
class HttpResults:
    users: int
    runs: dict[str, HttpRun] = field(default_factory=dict)
    profile: dict[str, Any] | None = None


Plan = list[list[tuple[str, str]]]  # per client: (sender's session token, recipient username)


def plans(
    tokens: dict[str, str], users: list[str], hot: tuple[str, str], clients: int, per_client: int
) -> tuple[Plan, Plan, Plan]:
    """The spread plan (each client round a cycle of its own users), the hot-pair plan, and
    the first transfers of each directed pair of either, to warm up with."""
    spread, firsts = [], []
    for client in range(clients):
        own = users[client::clients]
        cycle = [(tokens[own[j]], own[(j + 1) % len(own)]) for j in range(len(own))]
        firsts.append(cycle)
        spread.append([cycle[i % len(cycle)] for i in range(per_client)])
    a, b = hot
    firsts[0] = [*firsts[0], (tokens[a], b)]
    firsts[1] = [*firsts[1], (tokens[b], a)]
    hot_plan = [
        [(tokens[a], b) if (i + client) % 2 == 0 else (tokens[b], a) for i in range(per_client)]
        for client in range(clients)
    ]
    return spread, hot_plan, firsts


def measure_http(urls: DatabaseUrls, args: argparse.Namespace) -> HttpResults:
    clients: int = args.clients
    per_client = max(args.http_transfers // clients, 1)
    users = [f"bench_h{n}" for n in range(args.http_users)]
    hot = ("bench_hot_a", "bench_hot_b")
    results = HttpResults(users=len(users))
    postmaster = asyncio.run(postmaster_pid(urls.app))
    with (
        tempfile.TemporaryDirectory(prefix="amply-bench-serve-") as data_dir,
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        client_pid = pool.submit(_client_pid).result()
        pool_size = clients if args.http_pool_size is None else args.http_pool_size or None
        env = server_env(urls, Path(data_dir), pool_size)

        def measure(meter: CpuMeter, job: Callable[[], dict[str, Any]]) -> HttpRun:
            before = meter.snapshot()
            result = pool.submit(job).result()
            return HttpRun(result, meter.since(before))

        with serve(env, Path(data_dir) / "server.log") as (server_pid, url):
            meter = CpuMeter(
                trees={"postgres": postmaster},
                single={"server": server_pid, "client": client_pid, "bench": os.getpid()},
            )
            _progress(f"(c) signing up {len(users) + 2} users through the API")
            tokens = pool.submit(client_signups, url, [*users, *hot], clients).result()
            spread, hot_plan, firsts = plans(tokens, users, hot, clients, per_client)
            confirmed = pool.submit(client_first_transfers, url, firsts).result()
            _progress(f"(c) {confirmed} first transfers held, and confirmed; warming up")
            warm = [steps[: max(per_client // 10, 5)] for steps in spread]
            pool.submit(client_transfers, url, warm).result()
            for name, job in (
                ("health", partial(client_health, url, clients, max(per_client, 50))),
                ("spread", partial(client_transfers, url, spread)),
                ("hot", partial(client_transfers, url, hot_plan)),
            ):
                _progress(f"(c) measuring {name}")
                results.runs[name] = measure(meter, job)

        if args.profile == "always" or (
            args.profile == "auto" and results.runs["spread"].rate < HTTP_TARGET
        ):
            _progress("(c) the spread again, with the server under a sampling profiler")
            profile_dir = Path(data_dir) / "profile"
            profile_dir.mkdir()
            log = Path(data_dir) / "profiled-server.log"
            with serve(env, log, profile_dir=profile_dir) as (server_pid, url):
                meter = CpuMeter(
                    trees={"postgres": postmaster},
                    single={"server": server_pid, "client": client_pid},
                )
                pool.submit(client_transfers, url, warm).result()
                (profile_dir / "start").touch()
                results.runs["profiled"] = measure(meter, partial(client_transfers, url, spread))
                (profile_dir / "stop").touch()
                for _ in range(300):
                    if (profile_dir / "profile.json").exists():
                        break
                    time.sleep(0.1)
                results.profile = json.loads((profile_dir / "profile.json").read_text())
    return results


# --- report ------------------------------------------------------------------------------------


def _rates(runs: list[Run]) -> str:
    return "[" + " ".join(f"{run.rate:,.0f}" for run in runs) + "]"


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def _line(label: str, rate: float, unit: str, base: float, note: str = "") -> None:
    print(f"{label:<46}{rate:9,.0f} {unit:<12} ratio {rate / base:.3f}{note}")


def _cpu_sql(run: Run) -> None:
    print(
        f"{'':6}CPU per operation: bench process {run.cpu.per('bench', run.count):.2f} ms, "
        f"PostgreSQL {run.cpu.per('postgres', run.count):.2f} ms; "
        f"other processes on the machine meanwhile: {run.cpu.others:.1f} cores"
    )


def _cpu_http(run: HttpRun) -> None:
    cpu = run.cpu
    print(
        f"{'':6}CPU per request: server {cpu.per('server', run.count):.2f} ms "
        f"({cpu.seconds['server'] / cpu.wall:.0%} of a core), "
        f"PostgreSQL {cpu.per('postgres', run.count):.2f} ms, "
        f"client {cpu.per('client', run.count):.2f} ms; other processes: {cpu.others:.1f} cores"
    )
    server = cpu.per("server", run.count)
    total = sum(cpu.per(name, run.count) for name in ("server", "postgres", "client"))
    cores = psutil.cpu_count() or 1
    print(
        f"{'':6}ceilings from these CPU times alone: {1000 / max(server, 1e-9):,.0f}/s with a "
        f"core to the server; {cores * 1000 / max(total, 1e-9):,.0f}/s with all {cores} cores "
        "to server, PostgreSQL and client"
    )


def report(args: argparse.Namespace, sql: SqlResults, http: HttpResults | None) -> None:
    plain, spread, hot = (sql.median(name) for name in ("plain", "spread", "hot"))
    base = plain.rate
    cores = psutil.cpu_count() or 1
    print(
        f"\n{cores} cores; {args.clients} clients; (a) and (b): {args.per_client} per client, "
        f"{args.rounds} rounds interleaved: the median rate, and the median of the rounds' own "
        "ratios to (a) (every round in brackets)"
    )
    _line("(a)  plain INSERT baseline", base, "rows/s", base, f"   {_rates(sql.runs['plain'])}")
    _cpu_sql(plain)
    for name, label, median_run in (
        ("spread", "(b)  ledger transfers, 1,000 wallets", spread),
        ("hot", "(b)  ledger transfers, one hot pair", hot),
    ):
        ratios = sql.ratios(name)
        note = ""
        if name == "spread":
            verdict = "met" if _median(ratios) >= SPREAD_TARGET else "NOT MET"
            note = f" (target >= {SPREAD_TARGET}: {verdict})"
        rounds = f"{_rates(sql.runs[name])} ratios [{' '.join(f'{r:.3f}' for r in ratios)}]"
        print(
            f"{label:<46}{median_run.rate:9,.0f} {'transfers/s':<12} "
            f"ratio {_median(ratios):.3f}{note}   {rounds}"
        )
        _cpu_sql(median_run)
    service_sql, orm = sql.runs["service_sql"][0], sql.runs["orm"][0]
    print(
        "(b') 1,000 wallets, create_transfer()'s statements in raw SQL (recipient lookup, "
        "locks, balance, held, 3 risk queries, journal, row):"
    )
    _line("", service_sql.rate, "transfers/s", base)
    _cpu_sql(service_sql)
    print('(b") 1,000 wallets, transfers.create_transfer() through SQLAlchemy sessions:')
    _line("", orm.rate, "transfers/s", base)
    _cpu_sql(orm)
    if http is None:
        return
    for name, label in (
        ("spread", f"(c)  HTTP POST /v1/transfers, {http.users} users"),
        ("hot", "(c)  HTTP POST /v1/transfers, one hot pair"),
    ):
        run = http.runs[name]
        note = ""
        if name == "spread":
            note = f"   (target >= {HTTP_TARGET:.0f}/s: "
            note += "met)" if run.rate >= HTTP_TARGET else "NOT MET)"
        _line(label, run.rate, "transfers/s", base, note)
        print(f"{'':6}{run.count} completed, {run.errors} errors {run.result['errors'] or ''}")
        for sample in run.result.get("samples", []):
            print(f"{'':8}e.g. {sample}")
        _cpu_http(run)
    health = http.runs["health"]
    _line("     HTTP GET /health, the same client", health.rate, "requests/s", base)
    _cpu_http(health)
    if http.profile is not None:
        _print_profile(http.profile, http.runs["profiled"])


def _print_profile(profile: dict[str, Any], run: HttpRun) -> None:
    requests = run.count + run.errors
    server = run.cpu.seconds["server"]
    print(
        f"\nWhere the server's time goes: the spread again, {requests} transfers at "
        f"{run.rate:,.0f}/s with the server under a sampling profiler "
        f"({profile['samples']:,} samples, one per ms of its CPU time):\n"
        f"  server process: {server * 1000 / max(requests, 1):.2f} ms CPU per transfer, "
        f"{server / run.cpu.wall:.0%} of a core (other processes: {run.cpu.others:.1f} cores); "
        f"{profile['statements'] / max(requests, 1):.1f} SQL statements per transfer besides "
        f"BEGIN and COMMIT; {profile['connections']} new database connections"
    )
    print("  SQL statements per transfer (besides BEGIN and COMMIT, and a pre-ping per checkout):")
    statements: dict[str, int] = profile["statements_run"]
    for statement, count in sorted(statements.items(), key=lambda item: -item[1])[:25]:
        print(f"    {count / max(requests, 1):5.2f}  {statement}")
    for title, view, rows in (
        ("by request phase", "phases", 20),
        ("by innermost Amply function on the stack", "amply", 15),
        ("by package of the running code", "packages", 12),
        ("hottest functions", "leaves", 12),
    ):
        counts: dict[str, int] = profile[view]
        total = sum(counts.values()) or 1
        per_sample = profile["cpu"] * 1000 / total / max(requests, 1)  # ms per transfer
        print(f"  server CPU {title} (share, ms per transfer):")
        for name, count in sorted(counts.items(), key=lambda item: -item[1])[:rows]:
            print(f"    {count / total:6.1%} {count * per_sample:5.2f}  {name}")


async def _measure_sql(urls: DatabaseUrls, args: argparse.Namespace) -> SqlResults:
    return await measure_sql(
        urls, clients=args.clients, per_client=args.per_client, rounds=args.rounds
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--per-client", type=int, default=600, help="of (a) and (b)")
    parser.add_argument("--rounds", type=int, default=3, help="of (a) and (b), interleaved")
    parser.add_argument("--http-transfers", type=int, default=3200, help="per (c) line; 0: skip")
    parser.add_argument("--http-users", type=int, default=96)
    parser.add_argument(
        "--http-pool-size",
        type=int,
        default=None,
        help="the server's AMPLY_DB_POOL_SIZE (default: --clients; 0: the service's default)",
    )
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto")
    args = parser.parse_args()
    if args.http_users < 2 * args.clients:
        parser.error("--http-users must be at least twice --clients")
    with migrated_database() as urls:
        sql = asyncio.run(_measure_sql(urls, args))
        http = measure_http(urls, args) if args.http_transfers else None
    report(args, sql, http)


if __name__ == "__main__":
    main()
