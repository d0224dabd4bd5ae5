"""Streamed exports of a whole chain, in the format of ``docs/ledger-format.md`` §4.

An export is the chain up to a signed checkpoint, which it embeds. On a connection of its
own it first makes sure the chain's head is checkpointed (signing it if need be, in a short
transaction committed at once: a checkpoint is never shown before it is stored), then reads
one snapshot: a read-only REPEATABLE READ transaction held until the export's last byte.
Entries appended meanwhile are not in it; its head is the checkpoint's. Entries are fetched
in pages by seq and written out as they come: memory stays flat whatever the chain's length.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, Final

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from amply.db import Database
from amply.errors import NotFound
from amply.lib.signing import NoteSigner
from amply.lib.verify import EXPORT_FORMAT
from amply.models import LedgerChain, LedgerCheckpoint
from amply.services import checkpoints
from amply.services.ledger import ChainHead

BATCH_SIZE: Final = 10_000
# A page of the chain: $1 chain id, $2 after_seq, $3 limit, $4 the last seq exported.
# created_at comes as PostgreSQL's own ISO text in UTC (the snapshot sets TimeZone and
# DateStyle), which Python turns into the canonical form far faster than it formats a datetime.
_PAGE_SQL: Final = """
SELECT seq, id, type, amount, currency, balance_after, metadata, journal_id,
       created_at::text, prev_entry_hash, entry_hash
  FROM ledger_entries
 WHERE chain_id = $1 AND seq > $2 AND seq <= $4
 ORDER BY seq
 LIMIT $3
"""


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _canonical_time(text: str) -> str:
    """``2026-01-01 09:30:00.25+00`` (PostgreSQL, UTC, ISO) as ``2026-01-01T09:30:00.250000Z``
    (docs/ledger-format.md §2.3)."""
    moment, _, fraction = text.removesuffix("+00").partition(".")
    return f"{moment.replace(' ', 'T', 1)}.{fraction:0<6}Z"


def _entry(chain: str, row: asyncpg.Record) -> str:
    """One entry as JSON, fields in the order of docs/ledger-format.md §1.

    Only ``metadata`` can hold characters that JSON must escape: ids, types, currencies and
    hashes are plain ASCII letters, digits, ``_`` and ``:`` (the ledger's insert trigger
    checks their shapes), so they are written between quotes as they are.
    """
    (
        seq,
        entry_id,
        entry_type,
        amount,
        currency,
        balance,
        metadata,
        journal,
        created,
        prev,
        hashed,
    ) = row
    previous = f'"{prev}"' if prev is not None else "null"
    return (
        f'{{"chain_id":{chain},"seq":{seq},"id":"{entry_id}","type":"{entry_type}",'
        f'"amount":{amount},"currency":"{currency}","balance_after":{balance},'
        f'"metadata":{encode_basestring(metadata)},"journal_id":"{journal}",'
        f'"created_at":"{_canonical_time(created)}","prev_entry_hash":{previous},'
        f'"entry_hash":"{hashed}"}}'
    )


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
        pending: asyncio.Task[list[asyncpg.Record]] | None = None
        try:
            yield self.preamble().encode()
            chain, separator = _json(self.chain_id), ""
            # The next page is asked for before this one is written out, so that PostgreSQL
            # reads it (on its own core) while this process formats and sends.
            pending = self._page(after_seq=0) if self.head.seq else None
            while pending is not None:
                rows = await pending
                last = rows[-1]["seq"] if rows else self.head.seq
                pending = self._page(after_seq=last) if last < self.head.seq else None
                if rows:
                    yield (separator + ",".join(_entry(chain, row) for row in rows)).encode()
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

    def _page(self, *, after_seq: int) -> asyncio.Task[list[asyncpg.Record]]:
        return asyncio.ensure_future(
            self._driver.fetch(_PAGE_SQL, self.chain_id, after_seq, BATCH_SIZE, self.head.seq)
        )

    async def close(self) -> None:
        await self._connection.close()


async def open_export(database: Database, *, chain_id: str, signer: NoteSigner) -> ChainExport:
    """Checkpoint ``chain_id`` and open a snapshot up to that checkpoint (404 if there is no
    such chain)."""
    connection = await database.engine.connect()
    try:
        async with AsyncSession(bind=connection, expire_on_commit=False) as session:
            chain = await session.get(LedgerChain, chain_id)
            if chain is None:
                raise NotFound("No such organisation.", param="organisation_id")
            checkpoint = await checkpoints.checkpoint_head(
                session, chain_id=chain_id, signer=signer
            )
            await session.commit()
        await connection.execution_options(isolation_level="REPEATABLE READ")
        await connection.begin()
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        await driver.execute(
            "SET TRANSACTION READ ONLY; SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO'"
        )
    except BaseException:
        await connection.close()
        raise
    return ChainExport(
        chain_id=chain_id,
        kind=chain.kind,
        head=ChainHead(seq=checkpoint.size, entry_hash=checkpoint.root_hash)
        if checkpoint
        else ChainHead(seq=0, entry_hash=None),
        checkpoint=checkpoint,
        _connection=connection,
        _driver=driver,
    )
