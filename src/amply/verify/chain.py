"""The rules a chain obeys: ``docs/ledger-format.md`` §3.

:class:`ChainVerifier` takes a chain's entries in order and stops at the first that breaks a
rule, naming its seq; :class:`VerificationResult` is its verdict. The rules are written out
once, plainly, in :meth:`ChainVerifier._problem`, one after another in the order of §3.
:meth:`ChainVerifier.add_all` is the same rules unrolled for speed: it only ever *accepts*,
and hands any entry it is not sure of to the plain rules, whose verdict stands (the tests in
``tests/verify`` check that the two always agree). :func:`verify_entries` checks a whole chain,
a long one on two cores.

Standard library only, plus :mod:`amply.verify.crypto` (the entry hash, §2) and
:mod:`amply.verify.parse` (entries as a streamed export file delivers them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from operator import itemgetter
from typing import Any, Final, Protocol

from amply.verify.crypto import HASH_PREFIX, VERSION_NETSTRING, fast_preimage
from amply.verify.parse import _EXPORT_ORDER, ExportFormatError, _collector_paused, _plain

# A chain's kind is part of its id, so an export cannot relabel a wallet chain.
KIND_PREFIXES: Final = {"organisation": "org_", "wallet": "wal_", "platform": "plat_"}
# Rule 1 of docs/ledger-format.md §3: amounts within ±10^15, balances and seq in 64 bits.
MAX_AMOUNT: Final = 10**15
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class EntryFields(Protocol):
    """Anything with ``get(name)``: a parsed JSON object, or a database record."""

    def get(self, key: str, /) -> Any: ...


@dataclass(slots=True)
class VerificationResult:
    """Outcome of verifying one chain. ``broken_seq`` is the first entry that fails (``None``
    when what fails is the chain as a whole: its checkpoint, or its relation to another)."""

    chain_id: str
    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: str | None
    balances: dict[str, int] = field(default_factory=dict)
    broken_seq: int | None = None
    reason: str | None = None
    checkpoint: dict[str, Any] | None = None
    extends: dict[str, Any] | None = None

    def fail(self, reason: str, *, broken_seq: int | None = None) -> VerificationResult:
        self.ok, self.reason, self.broken_seq = False, reason, broken_seq
        return self

    def verdict(self) -> str:
        """A one-line, human-readable summary."""
        if not self.ok:
            where = f" at seq {self.broken_seq}" if self.broken_seq is not None else ""
            return f"BROKEN: chain {self.chain_id}{where}: {self.reason}"
        line = (
            f"OK: chain {self.chain_id} verifies, {self.entries_checked} entries, "
            f"head seq {self.head_seq} {self.head_hash or '(empty chain)'}"
        )
        if self.checkpoint is not None:
            pinned = "" if self.checkpoint["pinned"] else " (key not pinned: pass --key)"
            line += f"; checkpoint signed by {self.checkpoint['key']}{pinned}"
        if self.extends is not None:
            line += f"; extends the earlier export at seq {self.extends['seq']}"
        return line

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
            "checkpoint": self.checkpoint,
            "extends": self.extends,
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
        self.chain_id, self.kind = chain_id, kind
        self.non_negative = kind == "wallet"
        self.seq = 0
        self.head_hash: str | None = None
        self.balances: dict[str, int] = {}
        self.broken_seq: int | None = None
        self.reason: str | None = None
        # When checking the second half of a chain on its own: per currency, the balance
        # before the first entry of it that half holds, and that entry's seq. The first half
        # must end with those balances (see _StreamedExport).
        self.openings: dict[str, tuple[int, int, int]] | None = None  # (balance, seq, amount)

    def resume_after(self, *, seq: int, head_hash: str, balances: Mapping[str, int]) -> None:
        """Continue a chain whose first ``seq`` entries were verified before: the checkpoint
        signer checks only what was appended since the checkpoint it signed last."""
        self.seq, self.head_hash, self.balances = seq, head_hash, dict(balances)

    def add(self, entry: Any) -> bool:
        """Check the next entry; False (and remember why) if it breaks the chain."""
        if self.broken_seq is not None:
            return False
        if type(entry) is tuple:  # field values in export order, from a streamed export
            entry = dict(zip(_EXPORT_ORDER, map(_plain, entry), strict=True))
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
        if not callable(getattr(entry, "get", None)):
            return "entry is not an object"
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
        if not -MAX_AMOUNT <= amount <= MAX_AMOUNT:
            return f"amount {amount} is beyond ±10^15"
        if not INT64_MIN <= balance_after <= INT64_MAX or not 1 <= seq <= INT64_MAX:
            return "seq or balance_after is beyond a signed 64-bit integer"
        if chain_id != self.chain_id:
            return f"entry belongs to chain {chain_id!r}"
        if seq != expected_seq:
            return f"sequence number is {seq}, expected {expected_seq} (gap or reorder)"
        if prev_hash != self.head_hash:
            return "prev_entry_hash does not link to the previous entry's entry_hash"
        if self.openings is not None and currency not in self.balances:
            self.openings[currency] = (balance_after - amount, expected_seq, amount)
            self.balances[currency] = balance_after - amount
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
            if type(head_seq) is not int or head_seq != self.seq or head_hash != self.head_hash:
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

    def add_all(self, entries: Iterable[EntryFields]) -> bool:
        """:meth:`add` each entry in turn, until one breaks the chain; False if one did.

        The loop below is :meth:`_problem` unrolled for speed, with its state in local
        variables. It only ever *accepts*: an entry it is not sure of (any rule broken, a type
        it does not expect, text that is not ASCII) goes to :meth:`add`, whose verdict stands.
        """
        if self.broken_seq is not None:
            return False
        with _collector_paused():
            return self._add_all(entries)

    def _add_all(self, entries: Iterable[Any]) -> bool:
        chain_id, prefix, balances = self.chain_id, HASH_PREFIX, self.balances
        seq, head, non_negative = self.seq, self.head_hash, self.non_negative
        head_of_preimage = f"{VERSION_NETSTRING}{len(chain_id)}:{chain_id},"
        fields, digest, decimal = _FIELD_GETTER, sha256, _DECIMAL
        low, high, floor, ceiling = -MAX_AMOUNT, MAX_AMOUNT, INT64_MIN, INT64_MAX
        by_position = _row_type(entries)
        for entry in entries:
            seq += 1
            try:
                if type(entry) is tuple or type(entry) is by_position:
                    (c, n, i, t, a, cur, bal, meta, j, ts, prev, stored) = entry  # type: ignore[misc]
                else:
                    (c, n, i, t, a, cur, bal, meta, j, ts, prev, stored) = fields(entry)
                # A currency not seen yet goes to add(), by the KeyError.
                balance = balances[cur] + a
                if (
                    c == chain_id
                    and n == seq
                    and prev == head
                    and bal == balance
                    and type(n) is type(a) is type(bal) is int
                    and type(i) is type(t) is type(cur) is type(meta) is type(j) is type(ts) is str
                    and type(stored) is str
                    and low <= a <= high
                    and floor <= bal <= ceiling
                    and not (non_negative and balance < 0)
                ):
                    n_text, a_text, b_text, p_text = str(n), str(a), str(bal), prev or ""
                    size = len(meta) if meta.isascii() else len(meta.encode())
                    text = (
                        f"{head_of_preimage}{decimal[len(n_text)]}:{n_text},{decimal[len(i)]}:{i},"
                        f"{decimal[len(t)]}:{t},{decimal[len(a_text)]}:{a_text},"
                        f"{decimal[len(cur)]}:{cur},{decimal[len(b_text)]}:{b_text},{size}:{meta},"
                        f"{decimal[len(j)]}:{j},{decimal[len(ts)]}:{ts},{decimal[len(p_text)]}:{p_text},"
                    )
                    preimage = text.encode()
                    # Lengths above count characters, right only if all but the metadata is
                    # ASCII: then the encoding adds exactly the metadata's extra bytes.
                    if (
                        len(preimage) - len(text) == size - len(meta)
                        and prefix + digest(preimage).hexdigest() == stored
                    ):
                        balances[cur] = bal
                        head = stored
                        continue
            except (KeyError, TypeError, IndexError, ValueError, UnicodeEncodeError):
                pass
            self.seq, self.head_hash = seq - 1, head
            if not self.add(entry):
                return False
            seq, head = self.seq, self.head_hash
        self.seq, self.head_hash = seq, head
        return True


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


def _type_problem(entry: EntryFields) -> str:
    for name, kind in _ENTRY_FIELDS:
        if type(entry.get(name)) is not kind:
            return f"field {name!r} is missing or not a {kind.__name__}"
    return "field 'prev_entry_hash' is not a string or null"


# -- What the fast loop looks up -------------------------------------------------------------------


_FIELD_GETTER: Final = itemgetter(*_EXPORT_ORDER)
# Decimal text of the lengths in a preimage, looked up: formatting an int costs more than the
# rest of a netstring.
_DECIMAL: Final = tuple(str(n) for n in range(256))


def _row_type(entries: Iterable[EntryFields]) -> type | None:
    """The type of the entries if they are database rows (asyncpg records) that iterate over
    their values in export order: :meth:`ChainVerifier.add_all` then unpacks them by position,
    a third cheaper than twelve lookups by name. Judged on the first entry; a row of that type
    laid out otherwise still gets its verdict by name, from :meth:`ChainVerifier.add`: read by
    position its fields are a permutation of its own, and for such a reading to pass, the hash
    of the fields read would have to equal the hash read, so the reading is the right one.
    """
    if not isinstance(entries, Sequence) or not entries:
        return None
    first = entries[0]
    keys = getattr(first, "keys", None)
    if type(first) is dict or keys is None:
        return None
    try:
        layout, values = tuple(keys()), tuple(first)
    except TypeError:
        return None
    if layout != _EXPORT_ORDER or values != tuple(first.get(name) for name in layout):
        return None
    return type(first)


# -- A whole chain, on one core or two -------------------------------------------------------------


def verify_entries(
    chain_id: str, *, kind: str, entries: Sequence[EntryFields], workers: int = 1
) -> VerificationResult:
    """Verify a whole chain given as entries in order (seq 1 first)."""
    verifier = ChainVerifier(chain_id, kind=kind)
    _check(verifier, entries, progress=None, total=len(entries), workers=workers)
    return verifier.result()


Progress = Callable[[int, int], None]  # (entries checked, entries in all)


# Progress is reported every this many entries.
PROGRESS_STEP: Final = 1 << 16
# Chains at least this long are checked in two processes when more than one core is offered.
PARALLEL_MINIMUM: Final = 50_000


def _check(
    verifier: ChainVerifier,
    entries: Sequence[EntryFields],
    *,
    progress: Progress | None,
    total: int,
    workers: int,
) -> None:
    if workers > 1 and len(entries) >= PARALLEL_MINIMUM and hasattr(os, "fork"):
        _check_in_two(verifier, entries, progress=progress, total=total)
    else:
        _check_in_batches(verifier, entries, progress=progress, total=total)


def _check_in_batches(
    verifier: ChainVerifier,
    entries: Sequence[EntryFields],
    *,
    progress: Progress | None,
    total: int,
) -> None:
    for start in range(0, len(entries), PROGRESS_STEP):
        if not verifier.add_all(entries[start : start + PROGRESS_STEP]):
            return
        if progress is not None:
            progress(verifier.seq, total)


def _check_in_two(
    verifier: ChainVerifier,
    entries: Sequence[EntryFields],
    *,
    progress: Progress | None,
    total: int,
) -> None:
    """Check the first half here and the second half in a forked child, at the same time.

    The child starts where the first half ends, taking the first half's last hash and
    balances as given; if the first half then verifies here, those were right, and the
    child's verdict on the second half stands. The child only reads, and answers with its
    verifier's state as one JSON line on a pipe.
    """
    half = len(entries) // 2
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which coverage does not follow
        os.close(reader)
        state = None
        try:
            state = _check_second_half(verifier, entries, half)
        finally:  # whatever happens, the child never returns into the caller's code
            with os.fdopen(writer, "w") as pipe:
                pipe.write(json.dumps(state))
            os._exit(0)
    os.close(writer)
    try:
        _check_in_batches(verifier, entries[:half], progress=progress, total=total)
        with os.fdopen(reader) as pipe:
            answer = pipe.read()
    finally:
        os.waitpid(child, 0)
    state = json.loads(answer or "null")
    if verifier.broken_seq is not None:
        return
    if state is None:  # the child could not check (an odd entry): check it all here
        _check_in_batches(verifier, entries[half:], progress=progress, total=total)
        return
    seq, head_hash, balances, broken_seq, reason = state
    verifier.seq, verifier.head_hash, verifier.balances = seq, head_hash, balances
    verifier.broken_seq, verifier.reason = broken_seq, reason
    if progress is not None:
        progress(verifier.seq, total)


def _check_second_half(
    first: ChainVerifier, entries: Sequence[EntryFields], half: int
) -> list[Any]:  # pragma: no cover - runs in the child
    """The child's work: the second half, from the state the first half claims to end in."""
    second = ChainVerifier(first.chain_id, kind=first.kind)
    second.resume_after(
        seq=half,
        head_hash=entries[half - 1].get("entry_hash"),
        balances={e.get("currency"): e.get("balance_after") for e in entries[:half]},
    )
    second.add_all(entries[half:])
    return [second.seq, second.head_hash, second.balances, second.broken_seq, second.reason]
