"""The ledger service: the only code that writes ledger entries.

Callers append *journals*: one or more legs, possibly on several chains, written atomically in
one statement. PostgreSQL assigns each leg's seq, prev_entry_hash, balance_after, created_at
and entry_hash (migrations ``0001_ledger_core`` and ``0006_faster_appends``); this module
validates what the caller gives, turns database refusals into domain errors, and reads chains
back for pages, balances and verification.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from operator import itemgetter
from typing import Any, Final

import asyncpg
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import constraint_name
from amply.kit.errors import AmplyError, Conflict, InsufficientFunds, NotFound
from amply.kit.ids import generate_id
from amply.kit.money import MoneyError, normalize_currency, validate_amount
from amply.kit.observability import count_ledger_appends
from amply.models.enums import ChainKind, EntryType
from amply.models.ledger import LedgerChain
from amply.verify import ChainVerifier, VerificationResult
from amply.verify.crypto import format_timestamp

# Mirrors ledger_entry_flow() in the migrations: internal legs of a journal must balance.
INTERNAL_TYPES: Final[frozenset[EntryType]] = frozenset(
    {
        EntryType.TRANSFER_OUT,
        EntryType.TRANSFER_IN,
        EntryType.WITHDRAWAL_FEE,
        EntryType.WITHDRAWAL_FEE_REFUNDED,
        EntryType.FEE_COLLECTED,
        EntryType.FEE_REFUNDED,
        EntryType.WELCOME_BONUS,
        EntryType.PROMOTION_GRANTED,
        EntryType.WALLET_DONATION_SENT,
        EntryType.WALLET_DONATION_RECEIVED,
    }
)
ENTRY_TYPES: Final[frozenset[EntryType]] = frozenset(EntryType)
PLATFORM_FEES_CHAIN: Final = "plat_fees"
PLATFORM_PROMOTIONS_CHAIN: Final = "plat_promotions"
MAX_LEGS: Final = 16
MAX_METADATA_BYTES: Final = 8192

# A leg as the append statement takes it: entry id, chain id, type, amount, currency and
# metadata (its JSON text).
LegRow = tuple[str, str, str, int, str, str]
_APPEND_COLUMNS: Final = "id, chain_id, type, amount, currency, metadata, journal_id"
_RETURNED_COLUMNS: Final = (
    "id, chain_id, seq, type, amount, currency, balance_after, metadata, journal_id,\n"
    "          created_at, prev_entry_hash, entry_hash"
)


@cache
def append_sql(legs: int) -> str:
    """The one statement that appends a journal of ``legs`` legs (see :func:`append_args`).

    A plain multi-row ``VALUES``: leg n is row n, parameters $6n+1 … $6n+6, and the last
    parameter is the journal id, shared by every row. Rows are inserted in the order given,
    which :func:`append_args` makes chain-id order, so that the per-chain locks taken by the
    ledger_entries_assign() trigger are always acquired in the same order (no deadlock
    between journals touching the same chains). One statement text per leg count: a
    ``VALUES`` row of scalars costs PostgreSQL and the driver about a quarter of an append
    less than selecting the legs out of six array parameters.
    """
    journal = f"${6 * legs + 1}"
    rows = ",\n       ".join(
        "(" + ", ".join(f"${6 * leg + column}" for column in range(1, 7)) + f", {journal})"
        for leg in range(legs)
    )
    return (
        f"INSERT INTO ledger_entries ({_APPEND_COLUMNS})\nVALUES {rows}\n"
        f"RETURNING {_RETURNED_COLUMNS}\n"
    )


def append_args(rows: Sequence[LegRow], journal_id: str) -> tuple[object, ...]:
    """The parameters of ``append_sql(len(rows))``: the legs in chain-id order (a stable
    sort, so legs on one chain keep their order), then the journal id."""
    ordered = sorted(rows, key=itemgetter(1))
    return (*(value for row in ordered for value in row), journal_id)


# A page of a chain by sequence number: $1 chain id, $2 after_seq, $3 limit, and optional
# filters (NULL: none): $4 entry types, $5 created at or after, $6 created before.
CHAIN_ROWS_SQL: Final = """
SELECT id, chain_id, seq, type, amount, currency, balance_after, metadata, journal_id,
       created_at, prev_entry_hash, entry_hash
  FROM ledger_entries
 WHERE chain_id = $1 AND seq > $2
   AND ($4::text[] IS NULL OR type = ANY($4::text[]))
   AND ($5::timestamptz IS NULL OR created_at >= $5)
   AND ($6::timestamptz IS NULL OR created_at < $6)
 ORDER BY seq
 LIMIT $3
"""

# A chain in export order and shape (docs/ledger-format.md §4), created_at already in its
# canonical text form: $1 chain id, $2 after_seq, $3 limit, $4 the last seq to read (a head
# the reader read before). Verification and export read this.
EXPORT_ROWS_SQL: Final = """
SELECT chain_id, seq, id, type, amount, currency, balance_after, metadata, journal_id,
       ledger_format_timestamp(created_at) AS created_at, prev_entry_hash, entry_hash
  FROM ledger_entries
 WHERE chain_id = $1 AND seq > $2 AND seq <= $4
 ORDER BY seq
 LIMIT $3
"""

JSONScalar = str | int | bool | None
JSONValue = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]


class LedgerError(AmplyError):
    """A journal that the ledger cannot accept as given (a programming error upstream)."""

    status_code = 500
    error_type = "api_error"
    default_code = "ledger_rejected"


@dataclass(frozen=True, slots=True)
class Leg:
    """One line of a journal: ``amount`` is signed (+ credit, - debit) in minor units."""

    chain_id: str
    entry_type: EntryType
    amount: int
    currency: str
    metadata: Mapping[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored ledger entry, as the database assigned it."""

    id: str
    chain_id: str
    seq: int
    type: str
    amount: int
    currency: str
    balance_after: int
    metadata: str
    journal_id: str
    created_at: datetime
    prev_entry_hash: str | None
    entry_hash: str

    def as_export(self) -> dict[str, Any]:
        """The entry as it appears in an export (``docs/ledger-format.md`` §4)."""
        return {
            "chain_id": self.chain_id,
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "amount": self.amount,
            "currency": self.currency,
            "balance_after": self.balance_after,
            "metadata": self.metadata,
            "journal_id": self.journal_id,
            "created_at": format_timestamp(self.created_at),
            "prev_entry_hash": self.prev_entry_hash,
            "entry_hash": self.entry_hash,
        }


@dataclass(frozen=True, slots=True)
class EntryPage:
    entries: list[Entry]
    has_more: bool


def encode_metadata(metadata: Mapping[str, JSONValue]) -> str:
    """Public metadata as compact JSON with sorted keys; the stored text is what is hashed."""
    _check_json(metadata, path="metadata")
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise LedgerError("metadata must be valid Unicode text", param="metadata") from error
    if size > MAX_METADATA_BYTES:
        raise LedgerError(f"metadata exceeds {MAX_METADATA_BYTES} bytes", param="metadata")
    return text


def _check_json(value: object, *, path: str) -> None:
    # Floats are refused so that no amount can sneak into the ledger as a float.
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, path=f"{path}[{index}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise LedgerError(f"{path} keys must be strings", param="metadata")
            _check_json(item, path=f"{path}.{key}")
        return
    raise LedgerError(
        f"{path} holds a {type(value).__name__}; metadata allows strings, integers, booleans, "
        "null, lists and objects",
        param="metadata",
    )


def _validated_legs(legs: Sequence[Leg]) -> list[LegRow]:
    if not 1 <= len(legs) <= MAX_LEGS:
        raise LedgerError(f"a journal has 1 to {MAX_LEGS} legs, not {len(legs)}")
    rows: list[LegRow] = []
    internal_totals: dict[str, int] = {}
    for leg in legs:
        if leg.entry_type not in ENTRY_TYPES:
            raise LedgerError(f"unknown entry type {leg.entry_type!r}")
        try:
            currency = normalize_currency(leg.currency)
            if isinstance(leg.amount, bool) or not isinstance(leg.amount, int):
                raise MoneyError("amount must be an integer number of minor units", param="amount")
            validate_amount(abs(leg.amount))
        except MoneyError as error:
            raise LedgerError(str(error), param=error.param) from error
        if leg.entry_type in INTERNAL_TYPES:
            internal_totals[currency] = internal_totals.get(currency, 0) + leg.amount
        rows.append(
            (
                generate_id("led"),
                leg.chain_id,
                leg.entry_type,
                leg.amount,
                currency,
                encode_metadata(leg.metadata),
            )
        )
    unbalanced = {currency: total for currency, total in internal_totals.items() if total}
    if unbalanced:
        raise LedgerError(f"internal legs of a journal must sum to zero, left over: {unbalanced}")
    return rows


_LOCKS_KEY: Final = "amply.ledger.locked_chains"


def _locked_chains(session: AsyncSession) -> set[str]:
    """Chains this session's current transaction holds locks on (reset with each transaction)."""
    transaction = session.get_transaction()
    record = session.info.get(_LOCKS_KEY)
    if record is None or record[0] is not transaction:
        record = (transaction, set())
        session.info[_LOCKS_KEY] = record
    locked: set[str] = record[1]
    return locked


def _check_lock_order(session: AsyncSession, chain_ids: set[str]) -> None:
    # Chain locks are held until commit. A transaction that appends several journals must take
    # them in ascending id order overall, or two such transactions can deadlock; take them all
    # up front with lock_chains() when a later journal needs a lower id.
    locked = _locked_chains(session)
    new = chain_ids - locked
    if locked and new and min(new) < max(locked):
        raise LedgerError(
            f"locking {sorted(new)} after {sorted(locked)} could deadlock: "
            "call ledger.lock_chains() with every chain first"
        )


async def lock_chains(session: AsyncSession, *, chain_ids: Sequence[str]) -> None:
    """Lock chains in id order, up front, for a transaction that appends several journals."""
    wanted = set(chain_ids)
    _check_lock_order(session, wanted)
    connection = await session.connection()
    result = await connection.exec_driver_sql(
        "SELECT ledger_lock_chains($1::text[])", (sorted(wanted),)
    )
    if result.scalar_one() != len(wanted):
        raise NotFound("a ledger chain does not exist", code="chain_missing")
    _locked_chains(session).update(wanted)


async def append_journal(session: AsyncSession, *, legs: Sequence[Leg]) -> list[Entry]:
    """Append the legs atomically as one journal and return the stored entries.

    Raises :class:`InsufficientFunds` if a wallet leg would take its balance below zero, and
    :class:`NotFound` for an unknown chain. Such a refusal comes from the database and aborts
    the caller's transaction: nothing of it is committed, and the session must be rolled back
    (the request's session dependency does this) before it is used again.
    """
    rows = _validated_legs(legs)
    chain_ids = {row[1] for row in rows}
    _check_lock_order(session, chain_ids)
    connection = await session.connection()
    try:
        result = await connection.exec_driver_sql(
            append_sql(len(rows)), append_args(rows, generate_id("jrn"))
        )
    except DBAPIError as error:
        constraint = constraint_name(error)
        if constraint == "ledger_wallet_balance_non_negative":
            raise InsufficientFunds("the wallet's balance is too low for this amount") from error
        if constraint == "ledger_entries_chain_id_fkey":
            raise NotFound("the ledger chain does not exist", code="chain_missing") from error
        raise
    _locked_chains(session).update(chain_ids)
    entries = [Entry(**row) for row in result.mappings()]
    count_ledger_appends([(entry.chain_id, entry.type) for entry in entries])
    entries.sort(key=lambda entry: (entry.chain_id, entry.seq))
    return entries


async def create_chain(session: AsyncSession, *, chain_id: str, kind: ChainKind) -> None:
    """Create an empty chain (an organisation's or a wallet's, created with its owner)."""
    connection = await session.connection()
    try:
        await connection.exec_driver_sql(
            "INSERT INTO ledger_chains (id, kind) VALUES ($1, $2)", (chain_id, kind)
        )
    except DBAPIError as error:
        if constraint_name(error) == "ledger_chains_pkey":
            raise Conflict(f"chain {chain_id} already exists", code="chain_exists") from error
        raise


async def get_chain(session: AsyncSession, *, chain_id: str) -> LedgerChain:
    chain = await session.get(LedgerChain, chain_id)
    if chain is None:
        raise NotFound(f"no ledger chain {chain_id}", code="chain_missing")
    return chain


# The balance of each currency is that of the chain's last entry in it. PostgreSQL 16 has no
# skip scan, so the currencies are walked one index probe at a time (a "loose index scan").
BALANCES_SQL: Final = """
WITH RECURSIVE currencies (currency) AS (
    (SELECT currency FROM ledger_entries WHERE chain_id = $1 ORDER BY currency LIMIT 1)
    UNION ALL
    SELECT (SELECT e.currency FROM ledger_entries e
             WHERE e.chain_id = $1 AND e.currency > c.currency
             ORDER BY e.currency LIMIT 1)
      FROM currencies c
     WHERE c.currency IS NOT NULL
)
SELECT * FROM (
    SELECT c.currency,
           (SELECT e.balance_after FROM ledger_entries e
             WHERE e.chain_id = $1 AND e.currency = c.currency AND e.seq <= $2
             ORDER BY e.seq DESC LIMIT 1) AS balance
      FROM currencies c
     WHERE c.currency IS NOT NULL
) AS balances
 WHERE balance IS NOT NULL
"""
_ANY_SEQ: Final = 2**62

HEAD_SQL: Final = """
SELECT seq, entry_hash FROM ledger_entries WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1
"""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last entry of a chain: seq 0 and no hash while the chain is empty."""

    seq: int
    entry_hash: str | None


async def get_balances(
    session: AsyncSession, *, chain_id: str, as_of_seq: int | None = None
) -> dict[str, int]:
    """Balance per currency after the chain's last entry in that currency (up to entry
    ``as_of_seq`` if given)."""
    await get_chain(session, chain_id=chain_id)
    connection = await session.connection()
    upto = _ANY_SEQ if as_of_seq is None else as_of_seq
    result = await connection.exec_driver_sql(BALANCES_SQL, (chain_id, upto))
    return {row["currency"]: row["balance"] for row in result.mappings()}


async def get_head(session: AsyncSession, *, chain_id: str) -> ChainHead:
    """The chain's head: its last seq and entry_hash."""
    await get_chain(session, chain_id=chain_id)
    connection = await session.connection()
    row = (await connection.exec_driver_sql(HEAD_SQL, (chain_id,))).mappings().first()
    if row is None:
        return ChainHead(seq=0, entry_hash=None)
    return ChainHead(seq=row["seq"], entry_hash=row["entry_hash"])


# The last entry of each chain (none for an empty one): $1 the chain ids.
HEADS_SQL: Final = """
SELECT c.chain_id, e.seq, e.entry_hash
  FROM unnest($1::text[]) AS c (chain_id)
  LEFT JOIN LATERAL (
      SELECT seq, entry_hash FROM ledger_entries
       WHERE chain_id = c.chain_id ORDER BY seq DESC LIMIT 1
  ) AS e ON true
"""


async def get_heads(session: AsyncSession, *, chain_ids: Sequence[str]) -> dict[str, ChainHead]:
    """Each chain's head, one index probe per chain."""
    connection = await session.connection()
    rows = await connection.exec_driver_sql(HEADS_SQL, (list(chain_ids),))
    return {
        row["chain_id"]: ChainHead(seq=row["seq"] or 0, entry_hash=row["entry_hash"])
        for row in rows.mappings()
    }


async def list_entries(
    session: AsyncSession,
    *,
    chain_id: str,
    after_seq: int = 0,
    limit: int = 100,
    types: Sequence[str] | None = None,
    created_gte: datetime | None = None,
    created_lt: datetime | None = None,
) -> EntryPage:
    """Entries with seq > ``after_seq``, in chain order, optionally of some ``types`` and
    times; ``has_more`` if more follow."""
    if limit < 1:
        raise ValueError("limit must be positive")
    connection = await session.connection()
    result = await connection.exec_driver_sql(
        CHAIN_ROWS_SQL,
        (chain_id, after_seq, limit + 1, list(types) if types else None, created_gte, created_lt),
    )
    entries = [Entry(**row) for row in result.mappings()]
    return EntryPage(entries=entries[:limit], has_more=len(entries) > limit)


ENTRIES_SQL: Final = """
SELECT id, chain_id, seq, type, amount, currency, balance_after, metadata, journal_id,
       created_at, prev_entry_hash, entry_hash
  FROM ledger_entries
 WHERE id = ANY($1::text[])
"""


async def get_entries(session: AsyncSession, *, entry_ids: Sequence[str]) -> dict[str, Entry]:
    """Entries by id (ids with no entry are left out)."""
    if not entry_ids:
        return {}
    connection = await session.connection()
    result = await connection.exec_driver_sql(ENTRIES_SQL, (list(entry_ids),))
    return {row["id"]: Entry(**row) for row in result.mappings()}


async def driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The session's own asyncpg connection (same transaction), for bulk reads that would
    otherwise spend most of their time building SQLAlchemy rows."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    return driver


async def iter_export_pages(
    driver: asyncpg.Connection,
    *,
    chain_id: str,
    up_to_seq: int,
    after_seq: int = 0,
    batch_size: int = 10_000,
) -> AsyncGenerator[list[asyncpg.Record], None]:
    """The chain's entries ``after_seq + 1 … up_to_seq`` in export shape, page by page.

    The bound is what keeps a reader honest under concurrent appends: it compares the head it
    read with the entries up to that head, never with entries appended since. Each page is
    asked for before the previous one is handed over, so PostgreSQL reads it (on its own core)
    while the caller works on the last."""

    def fetch(after: int) -> asyncio.Future[list[asyncpg.Record]]:
        return asyncio.ensure_future(
            driver.fetch(EXPORT_ROWS_SQL, chain_id, after, batch_size, up_to_seq)
        )

    pending = fetch(after_seq)
    try:
        while True:
            rows = await pending
            if len(rows) == batch_size:
                pending = fetch(rows[-1]["seq"])
            if rows:
                yield rows
            if len(rows) < batch_size:
                return
    finally:
        if not pending.done():
            pending.cancel()
            await asyncio.wait([pending])


async def verify_chain(
    session: AsyncSession, *, chain_id: str, batch_size: int = 10_000
) -> VerificationResult:
    """Recompute every hash, link, seq and balance of a chain up to the head it has when
    called, in pages of ``batch_size``; entries appended meanwhile are left for the next call."""
    chain = await get_chain(session, chain_id=chain_id)
    head = await get_head(session, chain_id=chain_id)
    verifier = ChainVerifier(chain_id, kind=chain.kind)
    driver = await driver_connection(session)
    pages = iter_export_pages(driver, chain_id=chain_id, up_to_seq=head.seq, batch_size=batch_size)
    async with aclosing(pages):  # stops the page under way if the chain breaks early
        async for page in pages:
            if not verifier.add_all(page):
                break
    return verifier.result()


async def select_chain_ids(session: AsyncSession, *, kind: ChainKind) -> list[str]:
    """Ids of all chains of one kind (small sets only: used for platform chains)."""
    result = await session.scalars(select(LedgerChain.id).where(LedgerChain.kind == kind))
    return list(result)


JOURNALS_SQL: Final = """
SELECT id, chain_id, seq, type, amount, currency, balance_after, metadata, journal_id,
       created_at, prev_entry_hash, entry_hash
  FROM ledger_entries
 WHERE journal_id = ANY($1::text[])
 ORDER BY journal_id, chain_id, seq
"""


async def get_journals(
    session: AsyncSession, *, journal_ids: Sequence[str]
) -> dict[str, list[Entry]]:
    """The entries of each journal, in chain-id order (journals with no entry are left out)."""
    if not journal_ids:
        return {}
    connection = await session.connection()
    result = await connection.exec_driver_sql(JOURNALS_SQL, (list(journal_ids),))
    journals: dict[str, list[Entry]] = {}
    for row in result.mappings():
        journals.setdefault(row["journal_id"], []).append(Entry(**row))
    return journals
