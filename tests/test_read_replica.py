"""Read scaling: with ``DATABASE_READ_URL`` set, public ledger reads and exports come from a
streaming replica of the primary (made here with ``pg_basebackup``); a replica that lags
behind serves an older but whole chain, so verification never fails because of it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from amply.kit.settings import Settings
from amply.ledger.signing import NoteSigner
from amply.main import create_app
from amply.verify import verify_export
from tests.factories import donate, onboarded_organisation, sandbox_succeed
from tests.support.postgres import Cluster, amply_cluster


@pytest.fixture(scope="module")
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    with amply_cluster(replica=True) as (primary, standby):
        assert standby is not None
        yield primary, standby


@pytest.fixture
async def client(
    settings: Settings, clusters: tuple[Cluster, Cluster]
) -> AsyncIterator[httpx.AsyncClient]:
    primary, standby = clusters
    app = create_app(
        settings, database_url=primary.urls().app, read_database_url=standby.urls().app
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://amply.test"
        ) as http:
            yield http
    finally:
        await app.state.database.dispose()
        await app.state.read_database.dispose()


def _replayed_lsn(standby: Cluster) -> str:
    [(lsn,)] = standby.execute("SELECT pg_last_wal_replay_lsn()::text")
    return str(lsn)


async def _caught_up(primary: Cluster, standby: Cluster) -> None:
    [(target,)] = primary.execute("SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [(done,)] = standby.execute(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")
        if done:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the replica never replayed up to {target}")


async def _paused(standby: Cluster) -> None:
    standby.execute("SELECT pg_wal_replay_pause()")
    deadline = time.monotonic() + 30
    while standby.execute("SELECT pg_get_wal_replay_pause_state()") != [("paused",)]:
        assert time.monotonic() < deadline, "the replica never paused"
        await asyncio.sleep(0.05)


async def _donations(client: httpx.AsyncClient, organisation_id: str, count: int) -> None:
    for _ in range(count):
        await sandbox_succeed(client, await donate(client, organisation_id))


async def _ledger_seqs(client: httpx.AsyncClient, organisation_id: str) -> list[int]:
    page = await client.get(f"/v1/public/organisations/{organisation_id}/ledger")
    assert page.status_code == 200, page.text
    return [entry["seq"] for entry in page.json()["data"]]


async def _export(client: httpx.AsyncClient, organisation_id: str) -> dict[str, object]:
    response = await client.get(f"/v1/public/organisations/{organisation_id}/ledger/export")
    assert response.status_code == 200, response.text
    document: dict[str, object] = response.json()
    return document


async def test_public_reads_come_from_the_replica_and_a_lagging_one_still_verifies(
    client: httpx.AsyncClient, clusters: tuple[Cluster, Cluster], signer: NoteSigner
) -> None:
    primary, standby = clusters
    _, organisation_id = await onboarded_organisation(client)
    await _donations(client, organisation_id, 2)
    first = await _export(client, organisation_id)  # the primary checkpoints the chain's head
    await _caught_up(primary, standby)
    before = await _ledger_seqs(client, organisation_id)
    assert before
    assert before == list(range(1, len(before) + 1))
    assert verify_export(first, keys=[signer.verifier_key]).head_seq == len(before)

    await _paused(standby)
    try:
        # Writes go to the primary while the replica stands still ...
        await _donations(client, organisation_id, 2)
        [(on_primary,)] = primary.execute(
            f"SELECT max(seq) FROM ledger_entries WHERE chain_id = '{organisation_id}'",
            database="amply",
        )
        assert on_primary > len(before)
        # ... and public reads show the replica's view: the chain as it was.
        assert await _ledger_seqs(client, organisation_id) == before
        organisation = await client.get(f"/v1/public/organisations/{organisation_id}")
        assert organisation.json()["head"]["seq"] == len(before)
        # The export asks the primary to checkpoint its head, but the replica has not replayed
        # that checkpoint yet: the export ends at the newest one the replica has, and verifies.
        lagging = await _export(client, organisation_id)
        result = verify_export(lagging, keys=[signer.verifier_key])
        assert (result.ok, result.head_seq) == (True, len(before)), result
        verified = await client.get(f"/v1/public/organisations/{organisation_id}/ledger/verify")
        assert verified.json()["ok"] is True, verified.text
        assert verified.json()["head_seq"] == len(before)
    finally:
        standby.execute("SELECT pg_wal_replay_resume()")

    await _caught_up(primary, standby)
    assert await _ledger_seqs(client, organisation_id) == list(range(1, on_primary + 1))
    current = await _export(client, organisation_id)
    result = verify_export(current, keys=[signer.verifier_key])
    assert (result.ok, result.head_seq) == (True, on_primary), result


async def test_a_chain_the_replica_has_no_checkpoint_of_is_exported_from_the_primary(
    client: httpx.AsyncClient, clusters: tuple[Cluster, Cluster], signer: NoteSigner
) -> None:
    primary, standby = clusters
    await _caught_up(primary, standby)
    await _paused(standby)
    try:
        _, organisation_id = await onboarded_organisation(client)
        await _donations(client, organisation_id, 2)
        # The replica has not even seen the organisation ...
        missing = await client.get(f"/v1/public/organisations/{organisation_id}")
        assert missing.status_code == 404, missing.text
        # ... so the export falls back to the primary rather than serve an empty chain.
        document = await _export(client, organisation_id)
        result = verify_export(document, keys=[signer.verifier_key])
        [(head,)] = primary.execute(
            f"SELECT max(seq) FROM ledger_entries WHERE chain_id = '{organisation_id}'",
            database="amply",
        )
        assert (result.ok, result.head_seq) == (True, head), result
    finally:
        standby.execute("SELECT pg_wal_replay_resume()")


async def test_without_a_read_url_public_reads_use_the_primary(
    settings: Settings, clusters: tuple[Cluster, Cluster]
) -> None:
    primary, _ = clusters
    app = create_app(settings, database_url=primary.urls().app)
    try:
        assert app.state.read_database is app.state.database
    finally:
        await app.state.database.dispose()


def test_the_read_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_READ_URL", "postgresql://amply_app@replica.example.org/amply")
    settings = Settings(environment="test")
    assert settings.database_read_url is not None
    app = create_app(settings, database_url="postgresql://amply_app@primary.example.org/amply")
    assert app.state.read_database is not app.state.database
    assert app.state.read_database.engine.url.host == "replica.example.org"
