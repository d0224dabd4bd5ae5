"""Faults: the server killed with SIGKILL in the middle of a burst of transfers loses no
acknowledged transfer, duplicates none when clients retry with their keys, and leaves every
chain verifying; the database restarted under load makes requests fail with 503 until it is
back, then the same server carries on, with nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from amply.embedded import DatabaseUrls
from amply.kit.db import Database
from amply.ledger import service as ledger
from tests.conftest import IsolatedDatabase
from tests.factories import PASSWORD
from tests.support.postgres import amply_cluster
from tests.support.serving import environment_without, free_port, start_serve, wait_until_ready

CLIENTS = 16


@contextmanager
def served(urls: DatabaseUrls, port: int, **settings: str) -> Iterator[subprocess.Popen[str]]:
    environment = environment_without(
        "DATABASE_",
        "PROMETHEUS_",
        DATABASE_URL=urls.app,
        DATABASE_MIGRATION_URL=urls.migration,
        AMPLY_ENVIRONMENT="test",
        AMPLY_PASSWORD_HASH_TIME_COST="1",
        AMPLY_PASSWORD_HASH_MEMORY_KIB="1024",
        AMPLY_PASSWORD_HASH_PARALLELISM="1",
        AMPLY_CHECKPOINT_INTERVAL_SECONDS="0",
        AMPLY_RISK_RAPID_TRANSFER_COUNT="1000000",
    )
    server = start_serve("--port", str(port), environment={**environment, **settings})
    try:
        wait_until_ready(server, port, timeout=60)
        yield server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


async def _sign_up(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await http.post(
        "/v1/auth/signup",
        json={
            "name": username,
            "username": username,
            "email": f"{username}@example.org",
            "password": PASSWORD,
            "session_type": "token",
        },
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['session']['token']}"}


async def _transfer(http: httpx.AsyncClient, headers: dict[str, str], key: str) -> httpx.Response:
    return await http.post(
        "/v1/transfers",
        json={"recipient": "bob_faults", "amount": 1, "description": "burst"},
        headers={**headers, "Idempotency-Key": key},
        timeout=10,
    )


async def test_a_killed_server_loses_no_acknowledged_transfer(
    test_database: IsolatedDatabase,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acknowledged: dict[str, str] = {}  # idempotency key -> transfer id
    attempted: list[str] = []
    with served(test_database.urls, port) as server:
        async with httpx.AsyncClient(base_url=base) as http:
            alice = await _sign_up(http, "alice_faults")
            await _sign_up(http, "bob_faults")
            first = (await _transfer(http, alice, uuid.uuid4().hex)).json()
            confirm = await http.post(f"/v1/transfers/{first['id']}/confirm", headers=alice)
            assert confirm.status_code == 200, confirm.text

            killed, enough = asyncio.Event(), asyncio.Event()

            async def burst() -> None:
                while not killed.is_set():
                    key = uuid.uuid4().hex
                    attempted.append(key)
                    try:
                        response = await _transfer(http, alice, key)
                    except httpx.TransportError:
                        return
                    if response.status_code == 201:
                        acknowledged[key] = response.json()["id"]
                        if len(acknowledged) >= 60:
                            enough.set()

            async def killer() -> None:
                await enough.wait()
                server.send_signal(signal.SIGKILL)
                killed.set()

            await asyncio.gather(killer(), *(burst() for _ in range(CLIENTS)))
    assert server.returncode == -signal.SIGKILL

    with served(test_database.urls, port):
        async with httpx.AsyncClient(base_url=base) as http:
            token = await http.post(
                "/v1/auth/login",
                json={"login": "alice_faults", "password": PASSWORD, "session_type": "token"},
            )
            assert token.status_code == 200, token.text
            alice = {"Authorization": f"Bearer {token.json()['session']['token']}"}
            # Every acknowledged transfer is there, completed.
            for transfer_id in acknowledged.values():
                shown = await http.get(f"/v1/transfers/{transfer_id}", headers=alice)
                assert shown.status_code == 200, shown.text
                assert shown.json()["status"] == "completed"
            # Clients retry what they never heard back about, with the same keys: a transfer
            # that committed before the kill is replayed, one that did not is made now.
            unknown = [key for key in attempted if key not in acknowledged]
            for key in unknown:
                retried = await _transfer(http, alice, key)
                assert retried.status_code == 201, retried.text
                acknowledged[key] = retried.json()["id"]

    await _assert_whole(test_database.urls, {*acknowledged.values(), first["id"]})


async def _assert_whole(urls: DatabaseUrls, transfer_ids: set[str]) -> None:
    """Exactly these transfers exist, each once, and every wallet's chain verifies."""
    database = Database(urls.app)
    try:
        async with database.session() as session:
            connection = await ledger.driver_connection(session)
            stored = await connection.fetch(
                "SELECT id, journal_id FROM transactions WHERE kind = 'transfer'"
            )
            assert {row["id"] for row in stored} == transfer_ids
            wallets = [row["id"] for row in await connection.fetch("SELECT id FROM wallets")]
            for chain_id in wallets:
                result = await ledger.verify_chain(session, chain_id=chain_id)
                assert result.ok, result.verdict()
                balance = await connection.fetchval(
                    "SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE chain_id = $1",
                    chain_id,
                )
                assert balance >= 0
            moved = await connection.fetchval(
                "SELECT count(*) FROM ledger_entries WHERE type = 'transfer_out'"
            )
            assert moved == len(stored)
    finally:
        await database.dispose()


async def test_a_database_restart_mid_load_answers_503_and_the_server_recovers() -> None:
    port = free_port()
    acknowledged: dict[str, str] = {}  # idempotency key -> transfer id
    statuses: list[int] = []
    progress = asyncio.Condition()
    with (
        amply_cluster() as (primary, _),
        served(
            primary.urls(),
            port,
            AMPLY_CHECKPOINT_INTERVAL_SECONDS="1",
            AMPLY_HOUSEKEEPING_INTERVAL_SECONDS="1",
        ) as server,
    ):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            alice = await _sign_up(http, "alice_faults")
            await _sign_up(http, "bob_faults")
            first = (await _transfer(http, alice, uuid.uuid4().hex)).json()
            confirm = await http.post(f"/v1/transfers/{first['id']}/confirm", headers=alice)
            assert confirm.status_code == 200, confirm.text
            done = asyncio.Event()

            async def client() -> None:
                # Each transfer is retried with its key until it is acknowledged.
                while not done.is_set():
                    key = uuid.uuid4().hex
                    response = await _transfer(http, alice, key)
                    while response.status_code == 503:
                        assert response.json()["error"]["code"] == "database_unavailable"
                        assert response.headers["retry-after"] == "1"
                        async with progress:
                            statuses.append(503)
                            progress.notify_all()
                        await asyncio.sleep(0.05)
                        response = await _transfer(http, alice, key)
                    assert response.status_code == 201, response.text
                    async with progress:
                        statuses.append(201)
                        acknowledged[key] = response.json()["id"]
                        progress.notify_all()

            async def restart() -> None:
                async with progress:
                    await progress.wait_for(lambda: len(acknowledged) >= 30)
                # A crash (no shutdown checkpoint, every connection cut), down for a while.
                await asyncio.to_thread(primary.stop, mode="immediate")
                async with progress:
                    await progress.wait_for(lambda: statuses.count(503) >= CLIENTS)
                    after = len(acknowledged)
                await asyncio.to_thread(primary.start)
                async with progress:
                    await progress.wait_for(lambda: len(acknowledged) >= after + 30)
                done.set()

            await asyncio.wait_for(
                asyncio.gather(restart(), *(client() for _ in range(CLIENTS))), timeout=120
            )
            ready = await http.get("/ready")
            assert ready.status_code == 200, ready.text
        assert server.poll() is None, "the server must not have needed a restart"
        assert statuses.count(503) >= CLIENTS
        await _assert_whole(primary.urls(), {*acknowledged.values(), first["id"]})
