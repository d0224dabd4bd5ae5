"""Signed checkpoints: one per head, never for a chain that does not extend the last one,
and guarded by the database against everything but the signature itself."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import asyncpg
import psycopg
import pytest
from pydantic import SecretStr

from amply.kit.db import Database
from amply.kit.errors import LedgerIntegrityError
from amply.kit.settings import Settings
from amply.ledger import checkpoints
from amply.ledger import service as ledger
from amply.ledger.signing import NoteSigner
from amply.main import create_app
from amply.models import LedgerCheckpoint
from amply.verify import checkpoint_body, parse_checkpoint
from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import append, make_chain
from tests.ledger.test_ledger import connect


async def _checkpoint(
    database: Database, chain_id: str, signer: NoteSigner
) -> LedgerCheckpoint | None:
    async with database.session() as session:
        checkpoint = await checkpoints.checkpoint_head(session, chain_id=chain_id, signer=signer)
        await session.commit()
    return checkpoint


def _stored(superuser_sql: SuperuserSql, chain_id: str) -> list[int]:
    rows = superuser_sql(
        "SELECT size FROM ledger_checkpoints WHERE chain_id = %s ORDER BY size", chain_id
    )
    return [size for (size,) in rows]


async def test_an_empty_chain_has_no_checkpoint(database: Database, signer: NoteSigner) -> None:
    chain = await make_chain(database)

    assert await _checkpoint(database, chain, signer) is None


async def test_the_head_is_signed_once_and_the_note_says_what_the_chain_holds(
    database: Database, signer: NoteSigner, superuser_sql: SuperuserSql
) -> None:
    chain = await make_chain(database)
    await append(database, chain, 2_500, entry_type="donation_received")
    head = await append(database, chain, -103, entry_type="payment_processing_fee")

    first = await _checkpoint(database, chain, signer)
    again = await _checkpoint(database, chain, signer)

    assert first is not None
    assert again is not None
    assert (again.size, again.note) == (first.size, first.note)
    assert _stored(superuser_sql, chain) == [2]
    parsed = parse_checkpoint(first.note)
    assert (parsed.origin, parsed.size, parsed.root_hash) == (
        f"amply.test/ledger/{chain}",
        2,
        head.entry_hash,
    )
    assert parsed.signer([signer.verifier_key]) == signer.verifier_key
    assert first.verifier_key == signer.verifier_key.encode()


async def test_a_grown_chain_gets_a_new_checkpoint_that_extends_the_old_one(
    database: Database, signer: NoteSigner, superuser_sql: SuperuserSql
) -> None:
    chain = await make_chain(database)
    await append(database, chain, 100, entry_type="donation_received")
    await _checkpoint(database, chain, signer)
    await append(database, chain, 200, entry_type="donation_received", currency="USD")
    await append(database, chain, 300, entry_type="donation_received")

    latest = await _checkpoint(database, chain, signer)

    assert latest is not None
    assert latest.size == 3
    assert _stored(superuser_sql, chain) == [1, 3]


async def test_concurrent_requests_for_one_head_sign_it_once(
    database: Database, signer: NoteSigner, superuser_sql: SuperuserSql
) -> None:
    chain = await make_chain(database)
    for amount in (100, 200, 300):
        await append(database, chain, amount, entry_type="donation_received")

    signed = await asyncio.gather(*(_checkpoint(database, chain, signer) for _ in range(8)))

    assert len({checkpoint.note for checkpoint in signed if checkpoint is not None}) == 1
    assert None not in signed
    assert _stored(superuser_sql, chain) == [3]


def _tamper(superuser_url: str, chain_id: str, seq: int, *, recompute_from: int | None) -> None:
    """Rewrite an entry as a superuser with the ledger's triggers off; optionally recompute
    every hash from it onwards, as a careful forger would."""
    with connect(superuser_url) as connection:
        connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ALL")
        try:
            connection.execute(
                "UPDATE ledger_entries SET metadata = '{\"forged\":true}' "
                "WHERE chain_id = %s AND seq = %s",
                (chain_id, seq),
            )
            if recompute_from is not None:
                rows = connection.execute(
                    "SELECT seq FROM ledger_entries WHERE chain_id = %s AND seq >= %s ORDER BY seq",
                    (chain_id, recompute_from),
                ).fetchall()
                for (position,) in rows:
                    connection.execute(
                        """
                        UPDATE ledger_entries AS e
                           SET prev_entry_hash = (SELECT entry_hash FROM ledger_entries
                                                   WHERE chain_id = e.chain_id
                                                     AND seq = e.seq - 1),
                               entry_hash = ledger_entry_hash(
                                   e.chain_id, e.seq, e.id, e.type, e.amount, e.currency,
                                   e.balance_after, e.metadata, e.journal_id, e.created_at,
                                   (SELECT entry_hash FROM ledger_entries
                                     WHERE chain_id = e.chain_id AND seq = e.seq - 1))
                         WHERE chain_id = %s AND seq = %s
                        """,
                        (chain_id, position),
                    )
        finally:
            connection.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ALL")


@pytest.mark.parametrize(
    ("tampered_seq", "recompute"),
    [(2, True), (3, True), (4, False)],
    ids=["signed history rewritten", "signed head rewritten", "new entry altered"],
)
async def test_nothing_is_signed_for_a_chain_that_does_not_extend_the_last_checkpoint(
    database: Database,
    signer: NoteSigner,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
    tampered_seq: int,
    recompute: bool,
) -> None:
    chain = await make_chain(database)
    for amount in (100, 200, 300):
        await append(database, chain, amount, entry_type="donation_received")
    await _checkpoint(database, chain, signer)
    for amount in (400, 500):
        await append(database, chain, amount, entry_type="donation_received")
    _tamper(
        test_database.superuser_url,
        chain,
        tampered_seq,
        recompute_from=tampered_seq if recompute else None,
    )

    with pytest.raises(LedgerIntegrityError) as raised:
        await _checkpoint(database, chain, signer)

    assert raised.value.status_code == 503
    assert _stored(superuser_sql, chain) == [3]


async def test_an_entry_altered_behind_its_hash_is_left_to_verification(
    database: Database,
    signer: NoteSigner,
    test_database: IsolatedDatabase,
) -> None:
    # The stored hashes still chain up to what was signed, so a new checkpoint extends the
    # old one (signing checks only what was appended since); the altered row no longer
    # matches its own hash, which every verification of the chain reports.
    chain = await make_chain(database)
    for amount in (100, 200, 300):
        await append(database, chain, amount, entry_type="donation_received")
    await _checkpoint(database, chain, signer)
    await append(database, chain, 400, entry_type="donation_received")
    _tamper(test_database.superuser_url, chain, 2, recompute_from=None)

    latest = await _checkpoint(database, chain, signer)
    async with database.session() as session:
        result = await ledger.verify_chain(session, chain_id=chain)

    assert latest is not None
    assert latest.size == 4
    assert (result.ok, result.broken_seq) == (False, 2)


async def test_the_background_signer_signs_public_chains_that_grew(
    database: Database, signer: NoteSigner, superuser_sql: SuperuserSql
) -> None:
    organisation = await make_chain(database)
    wallet = await make_chain(database, kind="wallet")
    quiet = await make_chain(database)
    await append(database, organisation, 100, entry_type="donation_received")
    await append(database, wallet, 100)

    await checkpoints.sign_chains_behind(database, signer=signer)
    first = _stored(superuser_sql, organisation)
    again = await checkpoints.sign_chains_behind(database, signer=signer)

    assert first == [1]
    assert again == 0
    assert _stored(superuser_sql, wallet) == []
    assert _stored(superuser_sql, quiet) == []


async def test_the_background_signer_skips_a_tampered_chain_and_signs_the_rest(
    database: Database,
    signer: NoteSigner,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
) -> None:
    broken, healthy = await make_chain(database), await make_chain(database)
    for chain in (broken, healthy):
        await append(database, chain, 100, entry_type="donation_received")
        await append(database, chain, 100, entry_type="donation_received")
    _tamper(test_database.superuser_url, broken, 1, recompute_from=None)

    signed = await checkpoints.sign_chains_behind(database, signer=signer)

    assert signed == 1
    assert _stored(superuser_sql, broken) == []
    assert _stored(superuser_sql, healthy) == [2]


# -- What the database refuses -----------------------------------------------------------------


def _insert_checkpoint(
    url: str, *, chain_id: str, size: int, root_hash: str, note: str, key: str
) -> None:
    with connect(url) as connection:
        connection.execute(
            "INSERT INTO ledger_checkpoints (chain_id, size, root_hash, issued_at, "
            "verifier_key, note) VALUES (%s, %s, %s, now(), %s, %s)",
            (chain_id, size, root_hash, key, note),
        )


@pytest.mark.parametrize("forgery", ["wrong hash", "wrong size", "note for another head"])
async def test_the_database_refuses_a_checkpoint_that_does_not_match_the_chain(
    database: Database,
    signer: NoteSigner,
    test_database: IsolatedDatabase,
    forgery: str,
) -> None:
    chain = await make_chain(database)
    first = await append(database, chain, 100, entry_type="donation_received")
    second = await append(database, chain, 200, entry_type="donation_received")
    signed = await _checkpoint(database, chain, signer)
    assert signed is not None
    note = signed.note
    key = signer.verifier_key.encode()
    size, root = {
        "wrong hash": (2, first.entry_hash),
        "wrong size": (1, second.entry_hash),
        # A genuine signed note of seq 2, filed as the checkpoint of seq 1.
        "note for another head": (1, first.entry_hash),
    }[forgery]

    with pytest.raises(psycopg.errors.CheckViolation, match="ledger_checkpoints"):
        _insert_checkpoint(
            test_database.urls.app, chain_id=chain, size=size, root_hash=root, note=note, key=key
        )


async def test_checkpoints_only_move_forward(
    database: Database, signer: NoteSigner, test_database: IsolatedDatabase
) -> None:
    chain = await make_chain(database)
    first = await append(database, chain, 100, entry_type="donation_received")
    await append(database, chain, 200, entry_type="donation_received")
    await _checkpoint(database, chain, signer)
    # A correctly signed note of the older head: true, but behind what was published.
    older = signer.sign(
        checkpoint_body(
            origin=checkpoints.origin(signer, chain),
            size=1,
            root_hash=first.entry_hash,
            time="2026-11-21T09:30:00.000000Z",
        )
    )

    with pytest.raises(psycopg.errors.CheckViolation, match="at or past"):
        _insert_checkpoint(
            test_database.urls.app,
            chain_id=chain,
            size=1,
            root_hash=first.entry_hash,
            note=older,
            key=signer.verifier_key.encode(),
        )


MUTATIONS = [
    "UPDATE ledger_checkpoints SET note = note || 'x'",
    "DELETE FROM ledger_checkpoints",
    "TRUNCATE ledger_checkpoints",
    "UPDATE checkpoint_keys SET created_at = now()",
    "DELETE FROM checkpoint_keys",
    "TRUNCATE checkpoint_keys CASCADE",
]


@pytest.mark.parametrize("role", ["app", "owner", "superuser in replica mode"])
@pytest.mark.parametrize("statement", MUTATIONS)
async def test_nobody_alters_or_withdraws_a_published_checkpoint(
    database: Database,
    signer: NoteSigner,
    test_database: IsolatedDatabase,
    superuser_sql: SuperuserSql,
    statement: str,
    role: str,
) -> None:
    chain = await make_chain(database)
    await append(database, chain, 100, entry_type="donation_received")
    await _checkpoint(database, chain, signer)
    url = {
        "app": test_database.urls.app,
        "owner": test_database.urls.migration,
        "superuser in replica mode": test_database.superuser_url,
    }[role]

    with connect(url) as connection:
        if role.startswith("superuser"):
            connection.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement)
    assert _stored(superuser_sql, chain) == [1]


# -- The key -----------------------------------------------------------------------------------


def test_the_configured_key_is_used(signer: NoteSigner, tmp_path: Path) -> None:
    from_setting = checkpoints.load_signer(
        Settings(checkpoint_signing_key=SecretStr(signer.encode()), data_dir=tmp_path)
    )
    key_file = tmp_path / "key"
    key_file.write_text(signer.encode() + "\n")
    from_file = checkpoints.load_signer(
        Settings(checkpoint_signing_key_file=key_file, data_dir=tmp_path)
    )

    assert from_setting.verifier_key == from_file.verifier_key == signer.verifier_key
    assert not (tmp_path / checkpoints.KEY_FILE_NAME).exists()


def test_without_a_key_one_is_generated_in_the_data_dir_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMPLY_CHECKPOINT_SIGNING_KEY")
    settings = Settings(data_dir=tmp_path / "data", checkpoint_key_name="amply.example")

    first = checkpoints.load_signer(settings)
    second = checkpoints.load_signer(settings)

    key_file = tmp_path / "data" / checkpoints.KEY_FILE_NAME
    assert first.verifier_key == second.verifier_key
    assert first.name == "amply.example"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_production_refuses_to_start_without_a_configured_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMPLY_CHECKPOINT_SIGNING_KEY")

    with pytest.raises(SystemExit, match="CHECKPOINT_SIGNING_KEY"):
        checkpoints.load_signer(Settings(environment="production", data_dir=tmp_path))


async def test_the_app_runs_the_background_signer_while_it_lives(
    database: Database,
    test_database: IsolatedDatabase,
    settings: Settings,
    superuser_sql: SuperuserSql,
) -> None:
    chain = await make_chain(database)
    await append(database, chain, 100, entry_type="donation_received")
    app = create_app(
        settings.model_copy(update={"checkpoint_interval_seconds": 1}),
        database_url=test_database.urls.app,
    )

    async with app.router.lifespan_context(app):
        for _ in range(100):
            if _stored(superuser_sql, chain):
                break
            await asyncio.sleep(0.05)

    assert _stored(superuser_sql, chain) == [1]


async def test_the_background_signer_outlives_a_database_outage(
    database: Database, signer: NoteSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[str] = []

    async def flaky(database: Database, *, signer: NoteSigner) -> int:
        passes.append("pass")
        if len(passes) == 1:
            raise ConnectionRefusedError("the database is restarting")
        if len(passes) == 2:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        return 0

    monkeypatch.setattr(checkpoints, "sign_chains_behind", flaky)
    task = asyncio.create_task(checkpoints.run_signer(database, signer=signer, interval=0.01))
    for _ in range(200):
        if len(passes) >= 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait([task])

    assert len(passes) >= 3
    assert task.cancelled()
