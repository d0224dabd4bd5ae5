"""The canonical encoding and hash of a ledger entry.

This module is the reference implementation of ``docs/ledger-format.md`` §2 and uses only the
standard library, so an auditor can read it in one sitting. PostgreSQL computes the same bytes
in ``ledger_entry_hash()`` (migration ``0006_faster_appends``); committed test vectors check that
both agree.

Encoding: each field becomes a *netstring* ``<byte length>:<UTF-8 bytes>,`` and the preimage is
the concatenation, in a fixed order, of the netstrings of the version tag and the entry's fields.
``entry_hash`` is ``"sha256:"`` followed by the lowercase hex SHA-256 of the preimage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

HASH_VERSION: Final = "amply-ledger-entry/v1"
HASH_PREFIX: Final = "sha256:"
TIMESTAMP_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"

VERSION_NETSTRING: Final = f"{len(HASH_VERSION)}:{HASH_VERSION},"


def format_timestamp(moment: datetime) -> str:
    """The canonical form of a ledger timestamp: UTC, six fractional digits, ``Z``."""
    if moment.tzinfo is None:
        raise ValueError("ledger timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def netstring(text: str) -> str:
    # len() counts code points; the encoding counts UTF-8 bytes, which differ only off ASCII.
    length = len(text) if text.isascii() else len(text.encode("utf-8"))
    return f"{length}:{text},"


def fast_preimage(
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
    prev_entry_hash: str,
) -> bytes:
    """:func:`canonical_preimage` with positional arguments, for the verifier's hot loop."""
    # One f-string. Lengths are character counts except for the metadata, whose UTF-8 length
    # is taken; if every other field is ASCII (checked by comparing the bytes the encoding
    # added with those the metadata alone adds) the counts are exact, else the careful
    # per-field encoding runs.
    seq_text, amount_text, balance_text = str(seq), str(amount), str(balance_after)
    metadata_size = len(metadata) if metadata.isascii() else len(metadata.encode("utf-8"))
    preimage = (
        f"{VERSION_NETSTRING}{len(chain_id)}:{chain_id},{len(seq_text)}:{seq_text},"
        f"{len(entry_id)}:{entry_id},{len(entry_type)}:{entry_type},"
        f"{len(amount_text)}:{amount_text},{len(currency)}:{currency},"
        f"{len(balance_text)}:{balance_text},{metadata_size}:{metadata},"
        f"{len(journal_id)}:{journal_id},{len(created_at)}:{created_at},"
        f"{len(prev_entry_hash)}:{prev_entry_hash},"
    )
    encoded = preimage.encode("utf-8")
    if len(encoded) - len(preimage) == metadata_size - len(metadata):
        return encoded
    return _careful_preimage(
        chain_id,
        seq_text,
        entry_id,
        entry_type,
        amount_text,
        currency,
        balance_text,
        metadata,
        journal_id,
        created_at,
        prev_entry_hash,
    )


def _careful_preimage(*fields: str) -> bytes:
    return (VERSION_NETSTRING + "".join(netstring(field) for field in fields)).encode("utf-8")


def canonical_preimage(entry: Mapping[str, Any]) -> bytes:
    """The exact bytes hashed for an entry given in export shape (``docs/ledger-format.md``)."""
    return fast_preimage(
        entry["chain_id"],
        entry["seq"],
        entry["id"],
        entry["type"],
        entry["amount"],
        entry["currency"],
        entry["balance_after"],
        entry["metadata"],
        entry["journal_id"],
        entry["created_at"],
        entry["prev_entry_hash"] or "",
    )


def entry_hash(entry: Mapping[str, Any]) -> str:
    """``sha256:`` + lowercase hex SHA-256 of the entry's canonical preimage."""
    return HASH_PREFIX + hashlib.sha256(canonical_preimage(entry)).hexdigest()
