"""Faults: the server killed with SIGKILL in the middle of a burst of transfers loses no
acknowledged transfer, duplicates none when clients retry with their keys, and leaves every
chain verifying."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from amply.db import Database
from amply.services import ledger
from tests.conftest import IsolatedDatabase
from tests.factories import PASSWORD
from tests.test_cli import free_port

CLIENTS = 16


@contextmanager
def served(test_database: IsolatedDatabase, port: int) -> Iterator[subprocess.Popen[str]]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PROMETHEUS_"))},
        "DATABASE_URL": test_database.urls.app,
        "DATABASE_MIGRATION_URL": test_database.urls.migration,
        "AMPLY_ENVIRONMENT": "test",
        "AMPLY_PASSWORD_HASH_TIME_COST": "1",
        "AMPLY_PASSWORD_HASH_MEMORY_KIB": "1024",
        "AMPLY_PASSWORD_HASH_PARALLELISM": "1",
        "AMPLY_CHECKPOINT_INTERVAL_SECONDS": "0",
        "AMPLY_RISK_RAPID_TRANSFER_COUNT": "1000000",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "amply.cli", "serve", "--port", str(port)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError("amply serve never became ready")
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
    with served(test_database, port) as server:
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

    with served(test_database, port):
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

    database = Database(test_database.urls.app)
    try:
        async with database.session() as session:
            connection = await ledger.driver_connection(session)
            stored = await connection.fetch(
                "SELECT id, journal_id FROM transactions WHERE kind = 'transfer'"
            )
            # One transfer per key (plus the first, confirmed one): nothing duplicated.
            assert {row["id"] for row in stored} == {*acknowledged.values(), first["id"]}
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
