"""Only Amply's owner publishes a checkpoint signing key (migration 0007): the service role
cannot add, change or remove one, the database refuses a checkpoint not signed by the active
key, a key's status only moves forward, and verifiers trust each key as its status says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from amply.cli import _listed_keys, main
from amply.kit.db import Database
from amply.kit.errors import SigningKeyNotInstalled
from amply.ledger import checkpoints
from amply.ledger.key_custody import KeyCustodyError, install_key, revoke_key
from amply.ledger.signing import NoteSigner
from amply.verify import CheckpointError, checkpoint_body, parse_checkpoint
from amply.verify.crypto import format_timestamp
from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import append, donate, make_chain, onboarded_organisation, sandbox_succeed
from tests.ledger.test_checkpoints import _checkpoint


def _listed(superuser_sql: SuperuserSql) -> list[tuple[str, str]]:
    rows = superuser_sql("SELECT verifier_key, status FROM checkpoint_keys ORDER BY activated_at")
    return [(key, status) for key, status in rows]


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO checkpoint_keys (verifier_key) VALUES ('{forged}')",
        "UPDATE checkpoint_keys SET status = 'retired', retired_at = now()",
        "DELETE FROM checkpoint_keys",
    ],
)
def test_the_service_role_cannot_publish_or_change_a_signing_key(
    test_database: IsolatedDatabase, superuser_sql: SuperuserSql, statement: str
) -> None:
    before = _listed(superuser_sql)
    forged = NoteSigner.generate("amply.test").verifier_key.encode()

    with psycopg.connect(test_database.urls.app) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement.format(forged=forged))  # type: ignore[arg-type]

    assert _listed(superuser_sql) == before


def _insert_checkpoint_as_app(
    test_database: IsolatedDatabase,
    *,
    chain_id: str,
    size: int,
    root_hash: str,
    note: str,
    key: str,
    issued_at: datetime,
) -> None:
    with psycopg.connect(test_database.urls.app) as connection:
        connection.execute(
            "INSERT INTO ledger_checkpoints (chain_id, size, root_hash, issued_at, "
            "verifier_key, note) VALUES (%s, %s, %s, %s, %s, %s)",
            (chain_id, size, root_hash, issued_at, key, note),
        )


@pytest.mark.parametrize("forgery", ["signed by another key", "issued long ago", "two signers"])
async def test_the_database_refuses_a_checkpoint_not_signed_by_the_active_key(
    database: Database, signer: NoteSigner, test_database: IsolatedDatabase, forgery: str
) -> None:
    chain = await make_chain(database)
    entry = await append(database, chain, 100, entry_type="donation_received")
    impostor = NoteSigner.generate(signer.name)  # Amply's name, someone else's key
    issued_at = datetime.now(UTC) - (
        timedelta(days=3) if forgery == "issued long ago" else timedelta()
    )
    body = checkpoint_body(
        origin=checkpoints.origin(signer, chain),
        size=1,
        root_hash=entry.entry_hash,
        time=format_timestamp(issued_at),
    )
    note = {
        "signed by another key": impostor.sign(body),
        "issued long ago": signer.sign(body),
        "two signers": signer.sign(body) + impostor.sign(body).partition("\n\n")[2],
    }[forgery]

    with pytest.raises(psycopg.errors.CheckViolation, match="ledger_checkpoints"):
        _insert_checkpoint_as_app(
            test_database,
            chain_id=chain,
            size=1,
            root_hash=entry.entry_hash,
            note=note,
            key=signer.verifier_key.encode(),
            issued_at=issued_at,
        )


async def test_a_retired_key_signs_nothing_more(
    database: Database, signer: NoteSigner, test_database: IsolatedDatabase
) -> None:
    chain = await make_chain(database)
    await append(database, chain, 100, entry_type="donation_received")
    successor = NoteSigner.generate("amply.test")
    install_key(test_database.urls.migration, successor.verifier_key)

    with pytest.raises(SigningKeyNotInstalled):
        await _checkpoint(database, chain, signer)
    signed = await _checkpoint(database, chain, successor)

    assert signed is not None
    assert parse_checkpoint(signed.note).signer([successor.verifier_key])
    with pytest.raises(KeyCustodyError, match="retired"):
        install_key(test_database.urls.migration, signer.verifier_key)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE checkpoint_keys SET status = 'active', retired_at = NULL WHERE status = 'retired'",
        "UPDATE checkpoint_keys SET status = 'active', revoked_at = NULL WHERE status = 'revoked'",
        "UPDATE checkpoint_keys SET retired_at = now() - interval '1 day' WHERE status = 'retired'",
    ],
)
def test_a_keys_status_only_moves_forward_even_for_the_owner(
    test_database: IsolatedDatabase, statement: str
) -> None:
    first, second = NoteSigner.generate("amply.test"), NoteSigner.generate("amply.test")
    install_key(test_database.urls.migration, first.verifier_key)
    install_key(test_database.urls.migration, second.verifier_key)
    revoke_key(test_database.urls.migration, second.verifier_key)

    with psycopg.connect(test_database.urls.migration) as connection:
        with pytest.raises(psycopg.errors.CheckViolation, match="checkpoint_keys"):
            connection.execute(statement)  # type: ignore[arg-type]


async def test_verifiers_trust_each_published_key_as_its_status_says(
    client: httpx.AsyncClient,
    signer: NoteSigner,
    test_database: IsolatedDatabase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    await sandbox_succeed(client, await donate(client, organisation_id))
    export_url = f"/v1/public/organisations/{organisation_id}/ledger/export"
    signed_before = (await client.get(export_url)).content
    (tmp_path / "before.json").write_bytes(signed_before)

    install_key(test_database.urls.migration, NoteSigner.generate("amply.test").verifier_key)
    (tmp_path / "retired.json").write_bytes((await client.get("/v1/public/keys")).content)
    revoke_key(test_database.urls.migration, signer.verifier_key)
    (tmp_path / "revoked.json").write_bytes((await client.get("/v1/public/keys")).content)
    listed = json.loads((tmp_path / "revoked.json").read_text())["data"]
    # The old key signing a checkpoint after it retired (as a thief of it could).
    late = parse_checkpoint(
        signer.sign(
            checkpoint_body(
                origin=checkpoints.origin(signer, organisation_id),
                size=1,
                root_hash="sha256:" + "0" * 64,
                time=format_timestamp(datetime.now(UTC) + timedelta(minutes=1)),
            )
        )
    )

    assert [item["status"] for item in listed] == ["revoked", "active"]
    assert listed[0]["revoked_at"] is not None
    export = str(tmp_path / "before.json")
    assert main(["verify", "--key", str(tmp_path / "retired.json"), export]) == 0
    assert main(["verify", "--key", str(tmp_path / "revoked.json"), export]) == 1
    assert "not signed by a trusted key" in capsys.readouterr().out
    retired = json.loads((tmp_path / "retired.json").read_text())["data"][0]
    assert retired["status"] == "retired"
    [old_key, _] = _listed_keys([retired, listed[1]])
    with pytest.raises(CheckpointError, match="retired at"):
        late.signer([old_key])
