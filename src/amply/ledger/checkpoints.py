"""Signed checkpoints of chain heads (docs/ledger-format.md §6), and the key that signs them.

When: on demand, whenever a checkpoint, an export or a receipt needs one and the latest
checkpoint of the chain does not cover its head; and periodically, by the background signer,
for public chains that grew (``checkpoint_interval_seconds``). Never twice for one head.
Wallet chains are signed only on demand, when their owner exports one or asks for its
checkpoint: they are private (their checkpoints are shown to their owner alone) and many.

Safety: signing is serialised per chain (an advisory lock). Before it signs, Amply verifies
every entry appended since its last checkpoint, resuming from that checkpoint's hash and
balances, so it signs a head only if the chain still extends everything it signed before —
otherwise it raises :class:`LedgerIntegrityError` and signs nothing. The database checks the
rest (migration 0004): the signed entry exists with that hash, and checkpoints only move
forward.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import Database
from amply.kit.errors import LedgerIntegrityError, SigningKeyNotInstalled
from amply.kit.settings import Settings
from amply.ledger import chain_totals
from amply.ledger import service as ledger
from amply.ledger.signing import NoteSigner
from amply.models import CheckpointKey, LedgerCheckpoint
from amply.models.ledger import KeyStatus
from amply.verify import ChainVerifier, checkpoint_body
from amply.verify.crypto import format_timestamp

logger = logging.getLogger(__name__)

KEY_FILE_NAME: Final = "checkpoint-signing.key"
_LOCK_SQL: Final = "SELECT pg_advisory_xact_lock(hashtext('amply.checkpoints'), hashtext(:chain))"
# Public chains whose head is past their latest checkpoint, for the background signer.
_BEHIND_SQL: Final = """
SELECT c.id
  FROM ledger_chains AS c
 CROSS JOIN LATERAL (
     SELECT seq FROM ledger_entries WHERE chain_id = c.id ORDER BY seq DESC LIMIT 1
 ) AS head
  LEFT JOIN LATERAL (
     SELECT size FROM ledger_checkpoints WHERE chain_id = c.id ORDER BY size DESC LIMIT 1
 ) AS signed ON true
 WHERE c.kind IN ('organisation', 'platform') AND head.seq > coalesce(signed.size, 0)
 ORDER BY c.id
 LIMIT :limit
"""


# What a pass of the background signer may meet while the database restarts or is
# unreachable: through SQLAlchemy, or from the raw asyncpg reads of the verification.
_DATABASE_AWAY: Final = (OSError, SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError)


def load_signer(settings: Settings) -> NoteSigner:
    """The configured signing key; outside production, one kept in (or first generated in)
    the data directory."""
    if settings.checkpoint_signing_key is not None:
        return NoteSigner.parse(settings.checkpoint_signing_key.get_secret_value())
    if settings.checkpoint_signing_key_file is not None:
        return NoteSigner.parse(settings.checkpoint_signing_key_file.read_text())
    if settings.environment == "production":
        raise SystemExit(
            "AMPLY_ENVIRONMENT=production needs AMPLY_CHECKPOINT_SIGNING_KEY or "
            "AMPLY_CHECKPOINT_SIGNING_KEY_FILE: see docs/operations.md."
        )
    return _data_dir_key(settings.data_dir / KEY_FILE_NAME, name=settings.checkpoint_key_name)


def _data_dir_key(path: Path, *, name: str) -> NoteSigner:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        signer = NoteSigner.generate(name)
        try:
            # O_EXCL: when several workers start at once, one key wins and all read it.
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(handle, "w") as file:
                file.write(signer.encode() + "\n")
            logger.info("generated the checkpoint signing key %s", path)
    return NoteSigner.parse(path.read_text())


def origin(signer: NoteSigner, chain_id: str) -> str:
    """The checkpoint origin of a chain: ``<key name>/ledger/<chain id>``."""
    return f"{signer.name}/ledger/{chain_id}"


async def latest(session: AsyncSession, *, chain_id: str) -> LedgerCheckpoint | None:
    """The chain's newest checkpoint, if it has one."""
    query = (
        select(LedgerCheckpoint)
        .where(LedgerCheckpoint.chain_id == chain_id)
        .order_by(LedgerCheckpoint.size.desc())
        .limit(1)
    )
    return (await session.scalars(query)).first()


async def checkpoint_head(
    session: AsyncSession, *, chain_id: str, signer: NoteSigner
) -> LedgerCheckpoint | None:
    """The checkpoint of the chain's current head, signed now if none covers it yet (``None``
    while the chain is empty). The caller commits; it must not show the checkpoint before."""
    current = await latest(session, chain_id=chain_id)
    head = await ledger.get_head(session, chain_id=chain_id)
    if current is not None and current.size == head.seq:
        return current
    await session.execute(text(_LOCK_SQL), {"chain": chain_id})
    # Read again under the lock: another signer may have signed this head while we waited.
    current = await latest(session, chain_id=chain_id)
    head = await ledger.get_head(session, chain_id=chain_id)
    if head.entry_hash is None or (current is not None and current.size >= head.seq):
        return current
    await _verify_since(session, chain_id=chain_id, previous=current, head_seq=head.seq)
    return await _sign(session, chain_id=chain_id, head=head, signer=signer)


async def _verify_since(
    session: AsyncSession, *, chain_id: str, previous: LedgerCheckpoint | None, head_seq: int
) -> None:
    """Refuse to sign unless entries ``previous.size + 1 … head_seq`` extend ``previous``."""
    chain = await ledger.get_chain(session, chain_id=chain_id)
    verifier = ChainVerifier(chain_id, kind=chain.kind)
    if previous is not None:
        balances = await ledger.get_balances(session, chain_id=chain_id, as_of_seq=previous.size)
        verifier.resume_after(seq=previous.size, head_hash=previous.root_hash, balances=balances)
    driver = await ledger.driver_connection(session)
    pages = ledger.iter_export_pages(
        driver, chain_id=chain_id, after_seq=verifier.seq, up_to_seq=head_seq
    )
    async with aclosing(pages):
        async for page in pages:
            if not verifier.add_all(page):
                break
    result = verifier.result()
    if not result.ok or result.head_seq != head_seq:
        logger.error("refusing to checkpoint %s: %s", chain_id, result.verdict())
        raise LedgerIntegrityError(
            f"Chain {chain_id} does not extend its last signed checkpoint "
            f"(seq {result.broken_seq}: {result.reason}). Nothing was signed.",
        )


async def _sign(
    session: AsyncSession, *, chain_id: str, head: ledger.ChainHead, signer: NoteSigner
) -> LedgerCheckpoint:
    assert head.entry_hash is not None
    verifier_key = signer.verifier_key.encode()
    active = await active_key(session)
    if active != verifier_key:
        # The database would refuse the checkpoint (migration 0007); say why instead.
        logger.error("checkpoint key %s is not the active key %s", verifier_key, active)
        raise SigningKeyNotInstalled(
            "Amply's checkpoint signing key is not installed; nothing was signed. The "
            "operator installs it with `amply keys install` (docs/operations.md)."
        )
    issued_at = datetime.now(UTC)
    body = checkpoint_body(
        origin=origin(signer, chain_id),
        size=head.seq,
        root_hash=head.entry_hash,
        time=format_timestamp(issued_at),
    )
    checkpoint = LedgerCheckpoint(
        chain_id=chain_id,
        size=head.seq,
        root_hash=head.entry_hash,
        issued_at=issued_at,
        verifier_key=verifier_key,
        note=signer.sign(body),
    )
    session.add(checkpoint)
    await session.flush()
    return checkpoint


async def active_key(session: AsyncSession) -> str | None:
    """The verifier key the database accepts checkpoints from, if one is installed."""
    query = select(CheckpointKey.verifier_key).where(CheckpointKey.status == KeyStatus.ACTIVE)
    return (await session.scalars(query)).first()


async def checkpoint_covering(
    session: AsyncSession, *, chain_id: str, seq: int, signer: NoteSigner
) -> LedgerCheckpoint:
    """A checkpoint that covers entry ``seq`` of the chain (the newest, signed if need be)."""
    checkpoint = await checkpoint_head(session, chain_id=chain_id, signer=signer)
    if checkpoint is None or checkpoint.size < seq:
        raise LedgerIntegrityError(f"Chain {chain_id} has no entry {seq} to checkpoint.")
    return checkpoint


async def list_keys(session: AsyncSession) -> Sequence[CheckpointKey]:
    """Every key that signs or signed checkpoints, oldest first, with its status."""
    query = select(CheckpointKey).order_by(CheckpointKey.activated_at, CheckpointKey.verifier_key)
    return (await session.scalars(query)).all()


async def chains_behind(session: AsyncSession, *, limit: int = 1000) -> Sequence[str]:
    """Public chains that grew since their last checkpoint."""
    return (await session.scalars(text(_BEHIND_SQL), {"limit": limit})).all()


async def sign_chains_behind(database: Database, *, signer: NoteSigner) -> int:
    """One pass of the background signer; each chain in its own transaction. Returns how
    many chains it signed."""
    async with database.session() as session:
        chain_ids = await chains_behind(session)
    signed = 0
    for chain_id in chain_ids:
        async with database.session() as session:
            try:
                await checkpoint_head(session, chain_id=chain_id, signer=signer)
            except LedgerIntegrityError:
                continue  # logged; the other chains are still signed
            except SigningKeyNotInstalled:
                break  # logged; no chain can be signed until the owner installs the key
            await session.commit()
            signed += 1
    return signed


async def run_signer(database: Database, *, signer: NoteSigner, interval: float) -> None:
    """The background signer: a pass every ``interval`` seconds, until cancelled. Each pass
    also brings the public chains' running totals up to their heads (outside any append:
    :func:`amply.ledger.chain_totals.advance_all`)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await sign_chains_behind(database, signer=signer)
        except _DATABASE_AWAY as error:  # try again next time
            logger.warning("checkpoint signer pass failed: %s", error)
        try:
            await chain_totals.advance_all(database)
        except _DATABASE_AWAY as error:  # try again next time
            logger.warning("chain totals pass failed: %s", error)
