"""Requests per second, p50 and p99 latency of the HTTP API under mixed load, each beside the
trivial ``GET /health`` of the same run (the baseline).

    python -m bench.http_load [--connections 32] [--seconds 15] [--journals 3000]
                              [--mix 70,15,15] [--quick]

``amply serve --workers 2`` runs in a process group of its own, on a throwaway embedded
PostgreSQL with durable defaults. One organisation's public chain is seeded with ``--journals``
donations (a ``donation_received`` and a ``payment_processing_fee`` entry each, appended by the
ledger's own statement, so the database hashes and links them; then analysed, as autovacuum
would have it by then), and two users per connection sign up through the API and make (and
confirm) their first transfer to each other.

The load comes from a separate client process: ``--connections`` keep-alive HTTP/1.1
connections over raw asyncio streams (uvloop), each sending its next request when the last
one is answered, for ``--seconds`` per phase, after a warm-up of the same mix:

- baseline: ``GET /health``;
- reads: ``GET /v1/public/organisations/{id}/ledger?after_seq=N`` only: pages of the default
  size (100), ``after_seq`` drawn from the page boundaries of the seeded chain (what a reader
  following ``next_after_seq`` asks for). Target: at least 1,000 requests/s with a p99 under
  50 ms;
- reads-any: the same with ``after_seq`` anywhere in the chain, mostly pages not asked for
  before (the database path: pages the server keeps are answered before routing);
- mixed: per operation, by ``--mix`` weights: a ledger page read as in ``reads``; a donation
  (``POST /v1/donations`` from a donor address of its own, given as ``X-Forwarded-For``,
  which the server trusts from loopback through ``AMPLY_TRUSTED_PROXIES``; then
  ``POST /v1/sandbox/payments/{id}/succeed``, which appends to the chain the readers read
  through the webhook's path); a wallet transfer
  (``POST /v1/transfers`` between the connection's own funded users: completed at once, or
  confirmed if a risk rule holds it). Target: no errors.

Every line gives requests, req/s, p50 and p99 latency, the errors (any answer other than the
expected one), and the ratio of its throughput to the baseline; every phase the CPU time per
request of the server (all its processes), PostgreSQL and the client.

    python -m bench.http_load --quick                 # a smoke run: small chain, 3 s phases
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import psutil  # type: ignore[import-untyped]
import uvloop

from amply.embedded import DatabaseUrls
from amply.kit.ids import generate_id
from amply.ledger.service import append_args, append_sql, encode_metadata
from bench._common import CpuMeter, CpuUse, free_port, migrated_database, postmaster_pid

WORKERS: Final = 2
ROOT: Final = Path(__file__).resolve().parents[1]
PASSWORD: Final = "violet-quartz-lantern-harbor-917"  # noqa: S105 - a throwaway bench user's
PAGE: Final = 100  # the ledger route's default limit
READ_TARGET: Final = 1000.0  # ledger page reads per second
P99_TARGET_MS: Final = 50.0
VALIDATE_EVERY: Final = 50  # every so many reads a connection checks the page's content
CURRENCY: Final = "EUR"
LEDGER: Final = "GET /v1/public/organisations/{id}/ledger"
HEALTH: Final = "GET /health"
DONATE: Final = "POST /v1/donations"
SUCCEED: Final = "POST /v1/sandbox/payments/{id}/succeed"
TRANSFER: Final = "POST /v1/transfers"
CONFIRM: Final = "POST /v1/transfers/{id}/confirm"


def _progress(message: str) -> None:
    print(f"[bench.http_load] {message}", file=sys.stderr, flush=True)


# --- the client: raw HTTP/1.1 over asyncio streams (runs in a process of its own) ------------


class HttpError(Exception):
    """An answer the client cannot read as HTTP/1.1 with a Content-Length."""


class Connection:
    """One keep-alive HTTP/1.1 connection; a request at a time, the whole answer read back."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.etag = False  # whether the last answer carried an ETag

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}"
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        try:
            return await self._answer(reader)
        except (HttpError, asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            raise

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(b"\r\ncontent-length:")
        if start < 0:
            raise HttpError(f"no Content-Length: {head[:200]!r}")
        end = lower.index(b"\r\n", start + 2)
        body = await reader.readexactly(int(lower[start + 17 : end]))
        self.etag = b"\r\netag:" in lower
        if b"\r\nconnection: close" in lower:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.streams is not None:
            _, writer = self.streams
            self.streams = None
            writer.close()


@dataclass
class Endpoint:
    """What one endpoint answered: latencies (ms) of the expected answers, and the errors."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    etags: int = 0  # answers with an ETag: for ledger pages, the immutable ones

    def error(self, key: str, detail: str) -> None:
        self.errors[key] += 1
        if len(self.samples) < 3:
            self.samples.append(f"{key}: {detail[:300]}")


@dataclass(frozen=True)
class LoadPlan:
    """One phase: what each connection asks for, for how long."""

    connections: int
    seconds: float
    weights: tuple[int, int, int, int]  # health, ledger read, donation, transfer
    organisation_id: str = ""
    pages: tuple[int, ...] = (0,)  # the after_seq values readers ask for
    transfers: tuple[tuple[tuple[str, str], ...], ...] = ()  # per connection: (token, to)
    about: str = ""  # for the report


class Load:
    """The client side of one phase: each connection's loop of weighted operations."""

    def __init__(self, plan: LoadPlan, host: str, port: int) -> None:
        self.plan = plan
        self.host, self.port = host, port
        self.endpoints: dict[str, Endpoint] = {}
        self.deadline = 0.0

    def endpoint(self, name: str) -> Endpoint:
        return self.endpoints.setdefault(name, Endpoint())

    async def timed(
        self, connection: Connection, name: str, method: str, path: str, **options: Any
    ) -> tuple[int, bytes] | None:
        started = time.perf_counter()
        try:
            answer = await connection.request(method, path, **options)
        except (HttpError, asyncio.IncompleteReadError, ConnectionError) as error:
            self.endpoint(name).error(type(error).__name__, str(error))
            return None
        self.endpoint(name).latencies.append((time.perf_counter() - started) * 1000)
        return answer

    def unexpected(self, name: str, status: int, body: bytes) -> None:
        """An answer other than the expected one: an error, and its latency not counted."""
        endpoint = self.endpoint(name)
        endpoint.latencies.pop()
        try:
            code = json.loads(body).get("error", {}).get("code")
        except (ValueError, AttributeError):
            code = None
        endpoint.error(f"{status} {code or ''}".strip(), body.decode(errors="replace"))

    async def health(self, connection: Connection, _: int, __: int) -> None:
        answer = await self.timed(connection, HEALTH, "GET", "/health")
        if answer is not None and answer[0] != 200:
            self.unexpected(HEALTH, *answer)

    async def read(self, connection: Connection, client: int, i: int) -> None:
        after_seq = random.choice(self.plan.pages)  # noqa: S311 - a benchmark's choice
        path = f"/v1/public/organisations/{self.plan.organisation_id}/ledger?after_seq={after_seq}"
        answer = await self.timed(connection, LEDGER, "GET", path)
        if answer is None:
            return
        status, body = answer
        self.endpoint(LEDGER).etags += connection.etag
        if status != 200:
            self.unexpected(LEDGER, status, body)
        elif i % VALIDATE_EVERY == 0 and not _valid_page(body, after_seq):
            self.unexpected(LEDGER, status, b"a page not in chain order: " + body[:200])

    async def donate(self, connection: Connection, client: int, i: int) -> None:
        body = {
            "organisation_id": self.plan.organisation_id,
            "amount": random.randrange(500, 20_000),  # noqa: S311 - a benchmark's amount
            "currency": CURRENCY,
            "donor_name": f"Donor {client}-{i}",
            "donor_email": f"donor-{uuid.uuid4().hex[:12]}@example.org",
        }
        # Donors at addresses of their own, behind the proxy the server trusts on loopback.
        address = ".".join(str(random.randrange(1, 255)) for _ in range(3))  # noqa: S311
        headers = f"Idempotency-Key: {uuid.uuid4()}\r\nX-Forwarded-For: 10.{address}\r\n"
        answer = await self.timed(
            connection, DONATE, "POST", "/v1/donations", body=_json(body), headers=headers
        )
        if answer is None:
            return
        if answer[0] != 201:
            self.unexpected(DONATE, *answer)
            return
        payment = json.loads(answer[1])["payment"]["payment_intent_id"]
        path = f"/v1/sandbox/payments/{payment}/succeed"
        answer = await self.timed(connection, SUCCEED, "POST", path)
        if answer is not None and (answer[0] != 200 or _status(answer[1]) != "completed"):
            self.unexpected(SUCCEED, *answer)

    async def transfer(self, connection: Connection, client: int, i: int) -> None:
        steps = self.plan.transfers[client]
        token, recipient = steps[i % len(steps)]
        auth = f"Authorization: Bearer {token}\r\n"
        body = {"recipient": recipient, "amount": 1, "description": "bench transfer"}
        headers = f"{auth}Idempotency-Key: {uuid.uuid4()}\r\n"
        answer = await self.timed(
            connection, TRANSFER, "POST", "/v1/transfers", body=_json(body), headers=headers
        )
        if answer is None:
            return
        if answer[0] != 201 or _status(answer[1]) not in ("completed", "pending_confirmation"):
            self.unexpected(TRANSFER, *answer)
        elif _status(answer[1]) == "pending_confirmation":  # a risk rule held it: confirm it
            path = f"/v1/transfers/{json.loads(answer[1])['id']}/confirm"
            answer = await self.timed(connection, CONFIRM, "POST", path, headers=auth)
            if answer is not None and (answer[0] != 200 or _status(answer[1]) != "completed"):
                self.unexpected(CONFIRM, *answer)

    async def worker(self, client: int) -> None:
        operations = (self.health, self.read, self.donate, self.transfer)
        connection = Connection(self.host, self.port)
        choose = random.Random(client)  # noqa: S311 - a benchmark's mix
        i = 0
        try:
            while time.perf_counter() < self.deadline:
                operation = choose.choices(operations, weights=self.plan.weights)[0]
                await operation(connection, client, i)
                i += 1
        finally:
            await connection.close()

    async def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        cpu = time.process_time()
        self.deadline = started + self.plan.seconds
        await asyncio.gather(*(self.worker(c) for c in range(self.plan.connections)))
        return {
            "seconds": time.perf_counter() - started,
            "client_cpu": time.process_time() - cpu,
            "endpoints": {
                name: {
                    "latencies": e.latencies,
                    "errors": dict(e.errors),
                    "samples": e.samples,
                    "etags": e.etags,
                }
                for name, e in self.endpoints.items()
            },
        }


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _status(body: bytes) -> object:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed.get("status") if isinstance(parsed, dict) else None


def _valid_page(body: bytes, after_seq: int) -> bool:
    """The page holds the entries right after ``after_seq``, in order, and says what follows."""
    page = json.loads(body)
    seqs = [entry["seq"] for entry in page["data"]]
    expected = list(range(after_seq + 1, after_seq + 1 + len(seqs)))
    follows = page["next_after_seq"] == (seqs[-1] if page["has_more"] else None)
    return bool(seqs) and seqs == expected and len(seqs) <= PAGE and follows


def client_load(url: str, plan: LoadPlan) -> dict[str, Any]:
    """Run one phase from this (client) process; what each endpoint answered."""
    host, port = url.removeprefix("http://").split(":")
    return uvloop.run(Load(plan, host, int(port)).run())


async def _signup(connection: Connection, username: str) -> str:
    body = {
        "name": f"Bench {username}",
        "username": username,
        "email": f"{username}@example.org",
        "password": PASSWORD,
        "session_type": "token",
    }
    status, answer = await connection.request("POST", "/v1/auth/signup", body=_json(body))
    if status != 201:
        raise RuntimeError(f"sign-up {username}: {status} {answer[:300]!r}")
    token: str = json.loads(answer)["session"]["token"]
    return token


async def _first_transfer(connection: Connection, token: str, recipient: str) -> None:
    """A first transfer to a new recipient: held by the new_recipient rule, then confirmed."""
    auth = f"Authorization: Bearer {token}\r\n"
    body = {"recipient": recipient, "amount": 1, "description": "bench transfer"}
    headers = f"{auth}Idempotency-Key: {uuid.uuid4()}\r\n"
    status, answer = await connection.request(
        "POST", "/v1/transfers", body=_json(body), headers=headers
    )
    if status != 201:
        raise RuntimeError(f"first transfer: {status} {answer[:300]!r}")
    if _status(answer) == "pending_confirmation":
        path = f"/v1/transfers/{json.loads(answer)['id']}/confirm"
        status, answer = await connection.request("POST", path, headers=auth)
    if _status(answer) != "completed":
        raise RuntimeError(f"first transfer not completed: {status} {answer[:300]!r}")


TransferPlans = tuple[tuple[tuple[str, str], ...], ...]


def client_setup(url: str, connections: int) -> TransferPlans:
    """Two users per connection, signed up (each wallet credited the welcome bonus), who each
    make a first transfer to the other (held: a new recipient; confirmed), so that every later
    one completes at once. Per connection: its users' (session token, recipient) cycle."""
    host, port = url.removeprefix("http://").split(":")

    async def pair(client: int) -> tuple[tuple[str, str], ...]:
        connection = Connection(host, int(port))
        try:
            users = [f"bench_l{client}a", f"bench_l{client}b"]
            tokens = [await _signup(connection, user) for user in users]
            cycle = ((tokens[0], users[1]), (tokens[1], users[0]))
            for token, recipient in cycle:
                await _first_transfer(connection, token, recipient)
            return cycle
        finally:
            await connection.close()

    async def run() -> TransferPlans:
        return tuple(await asyncio.gather(*(pair(c) for c in range(connections))))

    return uvloop.run(run())


def _client_pid() -> int:
    return os.getpid()


# --- the server: amply serve --workers 2, in a process group of its own ----------------------


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"amply serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            ready = httpx.get(f"{url}/ready").status_code == 200
        except httpx.TransportError:
            ready = False
        if ready and len(psutil.Process(process.pid).children(recursive=True)) >= WORKERS:
            return
        time.sleep(0.1)
    raise SystemExit("amply serve did not become ready")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (supervisor and workers), then SIGKILL."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[tuple[int, str]]:
    """``amply serve --workers 2`` in a process group of its own; its pid and URL once its
    workers are up."""
    port = free_port()
    command = [sys.executable, "-m", "amply.cli", "serve", "--port", str(port)]
    command += ["--workers", str(WORKERS)]
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and CLI
            command,
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as one
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, url, log)
        yield process.pid, url
    finally:
        _stop(process)


def server_env(urls: DatabaseUrls, data_dir: Path, connections: int) -> dict[str, str]:
    """The service's settings, with the risk rules out of the way of transfers that complete
    at once."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AMPLY_")}
    env.update(
        {
            "DATABASE_URL": urls.app,
            "DATABASE_MIGRATION_URL": urls.migration,
            "AMPLY_ENVIRONMENT": "development",
            "AMPLY_DATA_DIR": str(data_dir),
            "AMPLY_LOG_LEVEL": "warning",
            "AMPLY_DB_POOL_SIZE": str(min(connections, 40)),  # per worker
            "AMPLY_DB_MAX_OVERFLOW": "0",
            "AMPLY_CHECKPOINT_INTERVAL_SECONDS": "0",
            "AMPLY_HOUSEKEEPING_INTERVAL_SECONDS": "0",
            "AMPLY_PASSWORD_HASH_TIME_COST": "1",
            "AMPLY_PASSWORD_HASH_MEMORY_KIB": "1024",
            "AMPLY_PASSWORD_HASH_PARALLELISM": "1",
            "AMPLY_RISK_LARGE_TRANSFER_THRESHOLD": str(10**12),
            "AMPLY_RISK_RAPID_TRANSFER_COUNT": str(10**6),
            "AMPLY_TRANSFER_DAILY_LIMIT": str(10**15),
            # The client stands in for a reverse proxy on loopback (donors' X-Forwarded-For).
            "AMPLY_TRUSTED_PROXIES": "127.0.0.1",
        }
    )
    return env


# --- set-up: an organisation with a long chain, and funded users -----------------------------


def create_organisation(url: str) -> str:
    """A signed-up owner's organisation, onboarded (sandbox: it accepts donations at once)."""
    with httpx.Client(base_url=url, timeout=60) as client:
        signup = client.post(
            "/v1/auth/signup",
            json={
                "name": "Bench Owner",
                "username": "bench_owner",
                "email": "bench_owner@example.org",
                "password": PASSWORD,
                "session_type": "token",
            },
        )
        signup.raise_for_status()
        headers = {"Authorization": f"Bearer {signup.json()['session']['token']}"}
        created = client.post(
            "/v1/organisations",
            json={
                "name": "Bench Rivers",
                "slug": "bench-rivers",
                "country": "DE",
                "default_currency": CURRENCY,
            },
            headers=headers,
        )
        created.raise_for_status()
        organisation_id: str = created.json()["organisation"]["id"]
        onboard = client.post(
            f"/v1/organisations/{organisation_id}/stripe-account", headers=headers
        )
        onboard.raise_for_status()
    return organisation_id


def _donation_journal(organisation_id: str, n: int) -> tuple[Any, ...]:
    """A completed donation as the webhook journals it: gross in, Stripe's fee out."""
    amount = 500 + (n * 7919) % 20_000
    fee = (amount * 29 + 500) // 1000 + 30
    donation, payment = generate_id("don"), f"pi_sandbox_{uuid.uuid4().hex[:24]}"
    received = {
        "donation_id": donation,
        "fund_id": None,
        "donor": "Anonymous" if n % 3 else f"Donor {n}",
        "payment_intent": payment,
        "charge": f"ch_sandbox_{n:024d}",
        "platform_fee": 0,
        "receipt_commitment": f"sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}",
    }
    fee_metadata = {
        "donation_id": donation,
        "fund_id": None,
        "charge": f"ch_sandbox_{n:024d}",
        "balance_transaction": f"txn_sandbox_{n:024d}",
    }
    legs = [
        (generate_id("led"), organisation_id, "donation_received", amount, CURRENCY,
         encode_metadata(received)),
        (generate_id("led"), organisation_id, "payment_processing_fee", -fee, CURRENCY,
         encode_metadata(fee_metadata)),
    ]  # fmt: skip
    return append_args(legs, generate_id("jrn"))


async def seed_chain(urls: DatabaseUrls, organisation_id: str, journals: int) -> int:
    """Append ``journals`` donations to the organisation's chain, and analyse the table, as
    autovacuum would have by the time a chain is this long; the chain's head seq."""
    connection = await asyncpg.connect(urls.migration)
    try:
        async with connection.transaction():
            await connection.executemany(
                append_sql(2), [_donation_journal(organisation_id, n) for n in range(journals)]
            )
        await connection.execute("ANALYZE ledger_entries")
        head: int = await connection.fetchval(
            "SELECT max(seq) FROM ledger_entries WHERE chain_id = $1", organisation_id
        )
        return head
    finally:
        await connection.close()


# --- the phases, and the report --------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    plan: LoadPlan
    result: dict[str, Any]
    cpu: CpuUse

    @property
    def seconds(self) -> float:
        seconds: float = self.result["seconds"]
        return seconds

    def count(self, name: str | None = None) -> int:
        endpoints: dict[str, dict[str, Any]] = self.result["endpoints"]
        chosen = endpoints.values() if name is None else [endpoints[name]]
        return sum(len(e["latencies"]) + sum(e["errors"].values()) for e in chosen)

    def errors(self) -> int:
        endpoints: dict[str, dict[str, Any]] = self.result["endpoints"]
        return sum(sum(e["errors"].values()) for e in endpoints.values())


@dataclass
class Results:
    connections: int
    seconds: float
    head: int
    phases: dict[str, Phase] = field(default_factory=dict)


def run_phases(
    pool: ProcessPoolExecutor, meter: CpuMeter, url: str, plans: dict[str, LoadPlan]
) -> dict[str, Phase]:
    phases = {}
    for name, plan in plans.items():
        _progress(f"measuring {name}: {plan.seconds:.0f} s")
        before = meter.snapshot()
        result = pool.submit(client_load, url, plan).result()
        phases[name] = Phase(name, plan, result, meter.since(before))
    return phases


def _percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)]


def _endpoint_line(phase: Phase, name: str, base: float, note: str = "") -> None:
    endpoint = phase.result["endpoints"][name]
    ordered = sorted(endpoint["latencies"])
    count = phase.count(name)
    rate = count / phase.seconds
    errors = sum(endpoint["errors"].values())
    print(
        f"{phase.name:<10}{name:<45}{count:9,}{rate:9,.0f}{_percentile(ordered, 0.5):8.1f}"
        f"{_percentile(ordered, 0.99):8.1f}{errors:7}{rate / base:8.3f}{note}"
    )
    for sample in endpoint["samples"]:
        print(f"{'':12}e.g. {sample}")


def _about_line(phase: Phase) -> None:
    about = phase.plan.about
    ledger = phase.result["endpoints"].get(LEDGER)
    if ledger is not None and phase.count(LEDGER):
        share = ledger["etags"] / phase.count(LEDGER)
        about += f"; {share:.0%} of the pages immutable (with an ETag)"
    if about:
        print(f"{'':12}{about}")


def _cpu_line(phase: Phase) -> None:
    count = max(phase.count(), 1)
    cpu = phase.cpu
    server_cores = cpu.seconds["server"] / cpu.wall
    client_own = phase.result["client_cpu"] * 1000 / count
    print(
        f"{'':12}CPU per request: server {cpu.per('server', count):.2f} ms "
        f"({server_cores:.2f} cores), "
        f"PostgreSQL {cpu.per('postgres', count):.2f} ms, client {cpu.per('client', count):.2f}"
        f" ms (its own count: {client_own:.2f} ms); other processes: {cpu.others:.1f} cores"
    )


def _read_note(phase: Phase) -> str:
    ordered = sorted(phase.result["endpoints"][LEDGER]["latencies"])
    rate, p99 = phase.count(LEDGER) / phase.seconds, _percentile(ordered, 0.99)
    met = rate >= READ_TARGET and p99 < P99_TARGET_MS and not phase.errors()
    verdict = "met" if met else "NOT MET"
    return f"  (target >= {READ_TARGET:,.0f}/s, p99 < {P99_TARGET_MS:.0f} ms: {verdict})"


def report(results: Results) -> None:
    cores = psutil.cpu_count() or 1
    print(
        f"\n{cores} cores; amply serve --workers {WORKERS}; {results.connections} keep-alive "
        f"connections from one client process; {results.seconds:.0f} s per phase; the chain: "
        f"{results.head:,} entries (pages of {PAGE})"
    )
    print(
        f"{'phase':<10}{'endpoint':<45}{'requests':>9}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'errors':>7}{'ratio':>8}"
    )
    baseline = results.phases["baseline"]
    base = baseline.count(HEALTH) / baseline.seconds
    for phase in results.phases.values():
        for name in phase.result["endpoints"]:
            note = _read_note(phase) if (phase.name, name) == ("reads", LEDGER) else ""
            _endpoint_line(phase, name, base, note)
        _about_line(phase)
        if phase.name == "mixed":
            verdict = "met" if not phase.errors() else "NOT MET"
            rate = phase.count() / phase.seconds
            print(
                f"{phase.name:<10}{'all of the above':<45}{phase.count():9,}{rate:9,.0f}{'':16}"
                f"{phase.errors():7}{rate / base:8.3f}  (target: error-free: {verdict})"
            )
        _cpu_line(phase)


def phase_plans(
    args: argparse.Namespace,
    organisation_id: str,
    head: int,
    transfers: TransferPlans,
) -> dict[str, LoadPlan]:
    base = LoadPlan(
        connections=args.connections,
        seconds=args.seconds,
        weights=(1, 0, 0, 0),
        organisation_id=organisation_id,
        pages=tuple(range(0, head, PAGE)),
        transfers=transfers,
    )
    reads, donations, transfer = args.mix
    mixed = replace(
        base,
        weights=(0, reads, donations, transfer),
        about=f"per operation, weights {reads}:{donations}:{transfer}: a page read as in "
        "'reads'; a donation (checkout, then sandbox success: 2 requests); a transfer",
    )
    return {
        "warm-up": replace(mixed, seconds=args.warm_up),
        "baseline": base,
        "reads": replace(
            base,
            weights=(0, 1, 0, 0),
            about=f"after_seq: one of the seeded chain's {len(base.pages)} page boundaries, as "
            "next_after_seq gives them (the warm-up's donations have grown the chain since)",
        ),
        "reads-any": replace(
            base,
            weights=(0, 1, 0, 0),
            pages=tuple(range(head)),
            about=f"after_seq: any of 0-{head - 1}, mostly pages not asked for before",
        ),
        "mixed": mixed,
    }


def measure(urls: DatabaseUrls, args: argparse.Namespace) -> Results:
    postmaster = asyncio.run(postmaster_pid(urls.app))
    with (
        tempfile.TemporaryDirectory(prefix="amply-bench-serve-") as data_dir,
        ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):
        client_pid = pool.submit(_client_pid).result()
        env = server_env(urls, Path(data_dir), args.connections)
        with serve(env, Path(data_dir) / "server.log") as (server_pid, url):
            organisation_id = create_organisation(url)
            _progress(f"seeding {organisation_id} with {args.journals:,} donations")
            head = asyncio.run(seed_chain(urls, organisation_id, args.journals))
            _progress(f"signing up {2 * args.connections} users; their first transfers")
            transfers = pool.submit(client_setup, url, args.connections).result()
            plans = phase_plans(args, organisation_id, head, transfers)
            meter = CpuMeter(
                trees={"server": server_pid, "postgres": postmaster},
                single={"client": client_pid, "bench": os.getpid()},
            )
            phases = run_phases(pool, meter, url, plans)
    del phases["warm-up"]
    return Results(args.connections, args.seconds, head, phases)


def _mix(text: str) -> tuple[int, int, int]:
    reads, donations, transfers = (int(part) for part in text.split(","))
    return reads, donations, transfers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measured phase")
    parser.add_argument("--warm-up", type=float, default=5.0, help="seconds of the mix first")
    parser.add_argument("--journals", type=int, default=3000, help="donations on the chain")
    parser.add_argument(
        "--mix", type=_mix, default=(70, 15, 15), help="weights: reads,donations,transfers"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 3 s phases")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warm_up, args.journals = 3.0, 1.0, min(args.journals, 500)
    with migrated_database() as urls:
        results = measure(urls, args)
    report(results)


if __name__ == "__main__":
    main()
