"""Streamed exports of a whole chain, in the format of ``docs/ledger-format.md`` §4.

An export is the chain up to a signed checkpoint, which it embeds. It first makes sure the
chain's head is checkpointed on the primary (signing it if need be, in a short transaction
committed at once: a checkpoint is never shown before it is stored), then reads one snapshot,
on the read replica if there is one: a read-only REPEATABLE READ transaction held until the
export's last byte. Entries appended meanwhile are not in it; its head is the newest
checkpoint the snapshot shows. Entries are fetched
in pages by seq and written out as they come: memory stays flat whatever the chain's length.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from amply.kit.db import Database
from amply.kit.errors import NotFound
from amply.ledger import checkpoints
from amply.ledger.service import ChainHead
from amply.ledger.signing import NoteSigner
from amply.models import LedgerChain, LedgerCheckpoint
from amply.models.enums import ChainKind
from amply.verify import EXPORT_FORMAT

BATCH_SIZE: Final = 10_000
# What a missing chain of each kind is called in the 404 (and the parameter that named it).
_MISSING: Final[dict[str, tuple[str, str | None]]] = {
    "organisation": ("No such organisation.", "organisation_id"),
    "platform": ("No such platform chain.", "chain_id"),
    "wallet": ("You have no wallet.", None),
}
# A page of the chain, as the JSON text of its entries joined by commas, made by PostgreSQL
# (on its own core, in C) rather than by this process: $1 chain id, $2 after_seq, $3 limit,
# $4 the last seq exported, $5 the chain id as a JSON string. Fields come in the order of
# docs/ledger-format.md §1. Only metadata can hold characters JSON must escape (to_json
# escapes them); ids, types, currencies and hashes are plain ASCII letters, digits, `_` and
# `:` (the ledger's insert trigger checks their shapes), so they go between quotes as they are.
_PAGE_SQL: Final = """
SELECT max(seq) AS last,
       string_agg(
           '{"chain_id":' || $5 || ',"seq":' || seq || ',"id":"' || id
           || '","type":"' || type || '","amount":' || amount
           || ',"currency":"' || currency || '","balance_after":' || balance_after
           || ',"metadata":' || to_json(metadata)::text || ',"journal_id":"' || journal_id
           || '","created_at":"' || ledger_format_timestamp(created_at)
           || '","prev_entry_hash":' || coalesce('"' || prev_entry_hash || '"', 'null')
           || ',"entry_hash":"' || entry_hash || '"}',
           ',' ORDER BY seq) AS body
  FROM (SELECT * FROM ledger_entries
         WHERE chain_id = $1 AND seq > $2 AND seq <= $4
         ORDER BY seq
         LIMIT $3) AS page
"""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class ChainExport:
    """An open snapshot of one chain; :meth:`body` streams it and then closes it."""

    chain_id: str
    kind: str
    head: ChainHead
    checkpoint: LedgerCheckpoint | None
    _connection: AsyncConnection
    _driver: asyncpg.Connection

    @property
    def etag(self) -> str:
        """Names the content: a chain only grows, so its head names all that precedes it."""
        return f'"{self.chain_id}.{self.head.seq}.{(self.head.entry_hash or "empty")[7:23]}"'

    def preamble(self) -> str:
        header = {
            "format": EXPORT_FORMAT,
            "chain": {"id": self.chain_id, "kind": self.kind},
            "head": {"seq": self.head.seq, "entry_hash": self.head.entry_hash},
        }
        if self.checkpoint is not None:
            header["checkpoint"] = {
                "note": self.checkpoint.note,
                "key": self.checkpoint.verifier_key,
            }
        return _json(header)[:-1] + ',"entries":['

    async def body(self) -> AsyncIterator[bytes]:
        pending: asyncio.Task[asyncpg.Record | None] | None = None
        try:
            yield self.preamble().encode()
            # The next page is asked for before this one is sent, so that PostgreSQL makes it
            # (on its own core) while this process sends.
            pending = self._page(after_seq=0) if self.head.seq else None
            separator = ""
            while pending is not None:
                page = await pending
                last = page["last"] if page and page["last"] is not None else self.head.seq
                pending = self._page(after_seq=last) if last < self.head.seq else None
                if page and page["body"]:
                    yield (separator + page["body"]).encode()
                    separator = ","
            yield b"]}"
        finally:
            if pending is not None:
                # The client went away mid-export: stop the page under way, then close.
                pending.cancel()
                await asyncio.wait([pending])
                if not pending.cancelled():
                    pending.exception()
            await self.close()

    def _page(self, *, after_seq: int) -> asyncio.Task[asyncpg.Record | None]:
        return asyncio.ensure_future(
            self._driver.fetchrow(
                _PAGE_SQL, self.chain_id, after_seq, BATCH_SIZE, self.head.seq, _json(self.chain_id)
            )
        )

    async def close(self) -> None:
        await self._connection.close()


async def open_export(
    database: Database,
    *,
    chain_id: str,
    kind: ChainKind,
    signer: NoteSigner,
    snapshot_database: Database | None = None,
) -> ChainExport:
    """Checkpoint ``chain_id`` on the primary (``database``; 404 if there is no such chain
    of this ``kind``: a route that exports one kind never exports another), then open a
    snapshot up to the newest checkpoint it shows, on ``snapshot_database`` (a read replica)
    if given.

    A replica that lags shows an older checkpoint, never a torn one: a checkpoint is committed
    after the entries it covers, and a standby replays commits in order. An export from it
    ends at that older checkpoint and verifies. Only when the replica shows no checkpoint of a
    chain the primary has signed does the export come from the primary.
    """
    signed = await _checkpoint(database, chain_id=chain_id, kind=kind, signer=signer)
    if snapshot_database is None or snapshot_database is database:
        return await _snapshot(database, chain_id=chain_id, kind=kind)
    export = await _snapshot(snapshot_database, chain_id=chain_id, kind=kind)
    if export.checkpoint is None and signed is not None:
        await export.close()
        export = await _snapshot(database, chain_id=chain_id, kind=kind)
    return export


async def _checkpoint(
    database: Database, *, chain_id: str, kind: ChainKind, signer: NoteSigner
) -> LedgerCheckpoint | None:
    """The checkpoint of the chain's head, signed and committed if need be."""
    async with database.session() as session:
        chain = await session.get(LedgerChain, chain_id)
        if chain is None or chain.kind != kind:
            message, param = _MISSING[kind]
            raise NotFound(message, param=param)
        checkpoint = await checkpoints.checkpoint_head(session, chain_id=chain_id, signer=signer)
        await session.commit()
        return checkpoint


async def _snapshot(database: Database, *, chain_id: str, kind: str) -> ChainExport:
    """A read-only REPEATABLE READ snapshot up to the newest checkpoint it shows."""
    connection = await database.engine.connect()
    try:
        await connection.execution_options(isolation_level="REPEATABLE READ")
        await connection.begin()
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        await driver.execute("SET TRANSACTION READ ONLY")
        async with AsyncSession(bind=connection, expire_on_commit=False) as session:
            checkpoint = await checkpoints.latest(session, chain_id=chain_id)
    except BaseException:
        await connection.close()
        raise
    return ChainExport(
        chain_id=chain_id,
        kind=kind,
        head=ChainHead(seq=checkpoint.size, entry_hash=checkpoint.root_hash)
        if checkpoint
        else ChainHead(seq=0, entry_hash=None),
        checkpoint=checkpoint,
        _connection=connection,
        _driver=driver,
    )
