"""Verification of a ledger chain: every hash, link, sequence number and running balance.

Standard library only (plus :mod:`amply.lib.crypto`, also stdlib only): the server's
``verify`` endpoint, ``amply verify FILE`` and an auditor's own copy run this same code.
The rules are those of ``docs/ledger-format.md`` §3; the first rule an entry breaks is reported
with that entry's sequence number.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, Final, Protocol

from amply.lib.crypto import HASH_PREFIX, fast_preimage

EXPORT_FORMAT: Final = "amply-ledger-export/v1"
# A chain's kind is part of its id, so an export cannot relabel a wallet chain.
KIND_PREFIXES: Final = {"organisation": "org_", "wallet": "wal_", "platform": "plat_"}

_ENTRY_FIELDS: Final = (
    ("chain_id", str),
    ("seq", int),
    ("id", str),
    ("type", str),
    ("amount", int),
    ("currency", str),
    ("balance_after", int),
    ("metadata", str),
    ("journal_id", str),
    ("created_at", str),
    ("entry_hash", str),
)


class EntryFields(Protocol):
    """Anything with ``get(name)``: a parsed JSON object, or a database record."""

    def get(self, key: str, /) -> Any: ...


class ExportFormatError(ValueError):
    """The file is not an Amply ledger export at all (as opposed to a tampered one)."""


@dataclass(slots=True)
class VerificationResult:
    """Outcome of verifying one chain. ``broken_seq`` is the first entry that fails."""

    chain_id: str
    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: str | None
    balances: dict[str, int] = field(default_factory=dict)
    broken_seq: int | None = None
    reason: str | None = None

    def verdict(self) -> str:
        """A one-line, human-readable summary."""
        if self.ok:
            return (
                f"OK: chain {self.chain_id} verifies, {self.entries_checked} entries, "
                f"head seq {self.head_seq} {self.head_hash or '(empty chain)'}"
            )
        return f"BROKEN: chain {self.chain_id} at seq {self.broken_seq}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "balances": dict(self.balances),
            "broken_seq": self.broken_seq,
            "reason": self.reason,
        }


class ChainVerifier:
    """Feed entries in chain order with :meth:`add`; it stops at the first broken one."""

    def __init__(self, chain_id: str, *, kind: str) -> None:
        if kind not in KIND_PREFIXES:
            raise ExportFormatError(f"unknown chain kind {kind!r}")
        if not chain_id.startswith(KIND_PREFIXES[kind]):
            raise ExportFormatError(
                f"chain {chain_id!r} cannot be of kind {kind!r}: its id must start with "
                f"{KIND_PREFIXES[kind]!r}"
            )
        self.chain_id = chain_id
        self.non_negative = kind == "wallet"
        self.seq = 0
        self.head_hash: str | None = None
        self.balances: dict[str, int] = {}
        self.broken_seq: int | None = None
        self.reason: str | None = None

    def add(self, entry: EntryFields) -> bool:
        """Check the next entry; False (and remember why) if it breaks the chain."""
        if self.broken_seq is not None:
            return False
        expected_seq = self.seq + 1
        problem = self._problem(entry, expected_seq)
        if problem is not None:
            self.broken_seq, self.reason = expected_seq, problem
            return False
        self.seq = expected_seq
        self.head_hash = entry.get("entry_hash")
        self.balances[entry.get("currency")] = entry.get("balance_after")
        return True

    def _problem(self, entry: EntryFields, expected_seq: int) -> str | None:
        get: Callable[[str], Any] = entry.get
        chain_id, seq, entry_id, entry_type = get("chain_id"), get("seq"), get("id"), get("type")
        amount, currency, balance_after = get("amount"), get("currency"), get("balance_after")
        metadata, journal_id, created_at = get("metadata"), get("journal_id"), get("created_at")
        prev_hash, stored_hash = get("prev_entry_hash"), get("entry_hash")
        well_typed = (
            type(chain_id) is str
            and type(seq) is int
            and type(entry_id) is str
            and type(entry_type) is str
            and type(amount) is int
            and type(currency) is str
            and type(balance_after) is int
            and type(metadata) is str
            and type(journal_id) is str
            and type(created_at) is str
            and type(stored_hash) is str
            and (prev_hash is None or type(prev_hash) is str)
        )
        if not well_typed:
            return _type_problem(entry)
        if chain_id != self.chain_id:
            return f"entry belongs to chain {chain_id!r}"
        if seq != expected_seq:
            return f"sequence number is {seq}, expected {expected_seq} (gap or reorder)"
        if prev_hash != self.head_hash:
            return "prev_entry_hash does not link to the previous entry's entry_hash"
        balance = self.balances.get(currency, 0) + amount
        if balance_after != balance:
            return f"balance_after is {balance_after}, expected {balance} {currency}"
        if self.non_negative and balance < 0:
            return f"wallet balance goes negative ({balance} {currency})"
        try:
            preimage = fast_preimage(
                chain_id,
                seq,
                entry_id,
                entry_type,
                amount,
                currency,
                balance,
                metadata,
                journal_id,
                created_at,
                prev_hash or "",
            )
        except UnicodeEncodeError:
            return "entry holds text that is not valid Unicode (a lone surrogate)"
        if HASH_PREFIX + sha256(preimage).hexdigest() != stored_hash:
            return "entry_hash does not match the entry's contents"
        return None

    def result(self, *, expected_head: Mapping[str, Any] | None = None) -> VerificationResult:
        """The verdict; ``expected_head`` (an export's ``head``) must match the last entry."""
        if self.broken_seq is None and expected_head is not None:
            head_seq, head_hash = expected_head.get("seq"), expected_head.get("entry_hash")
            if head_seq != self.seq or head_hash != self.head_hash:
                self.broken_seq = self.seq + 1
                self.reason = (
                    f"declared head (seq {head_seq}) does not match the last entry "
                    f"(seq {self.seq}): entries are missing or extra"
                )
        return VerificationResult(
            chain_id=self.chain_id,
            ok=self.broken_seq is None,
            entries_checked=self.seq,
            head_seq=self.seq,
            head_hash=self.head_hash,
            balances=dict(self.balances),
            broken_seq=self.broken_seq,
            reason=self.reason,
        )


def _type_problem(entry: EntryFields) -> str:
    for name, kind in _ENTRY_FIELDS:
        if type(entry.get(name)) is not kind:
            return f"field {name!r} is missing or not a {kind.__name__}"
    return "field 'prev_entry_hash' is not a string or null"


def verify_entries(
    chain_id: str, *, kind: str, entries: Iterable[Mapping[str, Any]]
) -> VerificationResult:
    """Verify a whole chain given as entries in order (seq 1 first)."""
    verifier = ChainVerifier(chain_id, kind=kind)
    for entry in entries:
        if not verifier.add(entry):
            break
    return verifier.result()


def verify_export(document: Mapping[str, Any]) -> VerificationResult:
    """Verify a parsed export document (``docs/ledger-format.md`` §4)."""
    if document.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(f"not an Amply ledger export (format must be {EXPORT_FORMAT!r})")
    chain, head, entries = document.get("chain"), document.get("head"), document.get("entries")
    if not isinstance(chain, dict) or not isinstance(chain.get("id"), str):
        raise ExportFormatError("export has no chain object with an id")
    if not isinstance(head, dict) or not isinstance(entries, list):
        raise ExportFormatError("export must have a head object and an entries list")
    verifier = ChainVerifier(chain["id"], kind=str(chain.get("kind")))
    for entry in entries:
        if not isinstance(entry, dict):
            verifier.broken_seq, verifier.reason = verifier.seq + 1, "entry is not an object"
            break
        if not verifier.add(entry):
            break
    return verifier.result(expected_head=head)


def verify_export_file(path: Path) -> VerificationResult:
    """Read and verify an export file; :class:`ExportFormatError` if it is not one."""
    try:
        with path.open("rb") as handle:
            document = json.load(handle)
    except (OSError, ValueError, RecursionError) as error:
        # ValueError covers malformed JSON, bad UTF-8 and over-long integers.
        raise ExportFormatError(f"cannot read {path}: {error}") from error
    if not isinstance(document, dict):
        raise ExportFormatError("an export must be a JSON object")
    return verify_export(document)
