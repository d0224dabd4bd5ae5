"""The canonical encoding and hash of a ledger entry.

This module is the reference implementation of ``docs/ledger-format.md`` §2 and uses only the
standard library, so an auditor can read it in one sitting. PostgreSQL computes the same bytes
in ``ledger_entry_hash()`` (see the first migration); committed test vectors check that both agree.

Encoding: each field becomes a *netstring* ``<byte length>:<UTF-8 bytes>,`` and the preimage is
the concatenation, in a fixed order, of the netstrings of the version tag and the entry's fields.
``entry_hash`` is ``"sha256:"`` followed by the lowercase hex SHA-256 of the preimage.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final

HASH_VERSION: Final = "amply-ledger-entry/v1"
HASH_PREFIX: Final = "sha256:"
TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"

_VERSION_NETSTRING: Final = f"{len(HASH_VERSION)}:{HASH_VERSION},"


def format_timestamp(moment: datetime) -> str:
    """The canonical form of a ledger timestamp: UTC, six fractional digits, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("ledger timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def _netstring(text: str) -> str:
    # len() counts code points; the encoding counts UTF-8 bytes, which differ only off ASCII.
    length = len(text) if text.isascii() else len(text.encode("utf-8"))
    return f"{length}:{text},"


def canonical_preimage(
    *,
    chain_id: str,
    seq: int,
    entry_id: str,
    entry_type: str,
    amount: int,
    currency: str,
    balance_after: int,
    metadata: str,
    journal_id: str,
    created_at: str,
    prev_entry_hash: str | None,
) -> bytes:
    """The exact bytes that are hashed for one entry (``docs/ledger-format.md`` §2)."""
    parts = (
        _VERSION_NETSTRING,
        _netstring(chain_id),
        _netstring(str(seq)),
        _netstring(entry_id),
        _netstring(entry_type),
        _netstring(str(amount)),
        _netstring(currency),
        _netstring(str(balance_after)),
        _netstring(metadata),
        _netstring(journal_id),
        _netstring(created_at),
        _netstring(prev_entry_hash or ""),
    )
    return "".join(parts).encode("utf-8")


def entry_hash(
    *,
    chain_id: str,
    seq: int,
    entry_id: str,
    entry_type: str,
    amount: int,
    currency: str,
    balance_after: int,
    metadata: str,
    journal_id: str,
    created_at: str,
    prev_entry_hash: str | None,
) -> str:
    """``sha256:`` + lowercase hex SHA-256 of the entry's canonical preimage."""
    preimage = canonical_preimage(
        chain_id=chain_id,
        seq=seq,
        entry_id=entry_id,
        entry_type=entry_type,
        amount=amount,
        currency=currency,
        balance_after=balance_after,
        metadata=metadata,
        journal_id=journal_id,
        created_at=created_at,
        prev_entry_hash=prev_entry_hash,
    )
    return HASH_PREFIX + hashlib.sha256(preimage).hexdigest()
