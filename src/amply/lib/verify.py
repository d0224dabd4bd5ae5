"""Verification of a ledger chain: every hash, link, sequence number and running balance,
the signed checkpoint that covers it, and that a later download extends an earlier one.

Standard library only, plus :mod:`amply.lib.crypto` (the entry hash, also stdlib only) and the
``cryptography`` package for Ed25519 signatures: the server's ``verify`` endpoint, its
checkpoint signer, ``amply verify`` and an auditor's own copy run this same code. The rules
are those of ``docs/ledger-format.md`` §3 and §6; the first rule an entry breaks is reported
with that entry's sequence number.
"""

from __future__ import annotations

import base64
import binascii
import gc
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from amply.lib.crypto import HASH_PREFIX, VERSION_NETSTRING, fast_preimage, netstring

EXPORT_FORMAT: Final = "amply-ledger-export/v1"
RECEIPT_FORMAT: Final = "amply-donation-receipt/v1"
COMMITMENT_VERSION: Final = "amply-receipt-commitment/v1"
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
# Progress is reported every this many entries.
PROGRESS_STEP: Final = 1 << 16
# Chains at least this long are checked in two processes when more than one core is offered.
PARALLEL_MINIMUM: Final = 50_000
# The fields of an entry in export order (docs/ledger-format.md §4), as the export query and
# the export's JSON objects have them.
_EXPORT_ORDER: Final = (
    "chain_id",
    "seq",
    "id",
    "type",
    "amount",
    "currency",
    "balance_after",
    "metadata",
    "journal_id",
    "created_at",
    "prev_entry_hash",
    "entry_hash",
)
_FIELD_GETTER: Final = itemgetter(*_EXPORT_ORDER)
# Decimal text of the lengths in a preimage, looked up: formatting an int costs more than the
# rest of a netstring.
_DECIMAL: Final = tuple(str(n) for n in range(256))


class EntryFields(Protocol):
    """Anything with ``get(name)``: a parsed JSON object, or a database record."""

    def get(self, key: str, /) -> Any: ...


class ExportFormatError(ValueError):
    """The file is not an Amply ledger export at all (as opposed to a tampered one)."""


class CheckpointError(ValueError):
    """A checkpoint or key that is malformed, or whose signature does not hold."""


# -- Signed notes (c2sp.org/signed-note) and checkpoints (c2sp.org/tlog-checkpoint) ----------

ED25519: Final = 0x01  # the signed-note signature type of Ed25519
_SIGNATURE_LINE: Final = "\u2014 "  # an em dash and a space open each signature line
CHECKPOINT_TIME: Final = "time "  # the extension line that dates a checkpoint


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte id of an Ed25519 note key: SHA-256(name, newline, 0x01, public key)[:4]."""
    return sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A public key as notes name it: ``<name>+<hex key id>+<base64(0x01 || key)>``.

    ``retired_at`` (RFC 3339), from a key list that says the key retired: it vouches only for
    checkpoints whose time line is earlier (docs/ledger-format.md §6)."""

    name: str
    public_key: bytes
    retired_at: str | None = field(default=None, compare=False)

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        key = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{key}"

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        name, _, rest = text.strip().partition("+")
        hex_id, _, encoded = rest.partition("+")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as error:
            raise CheckpointError(f"malformed verifier key: {error}") from error
        if not valid_key_name(name) or len(raw) != 33 or raw[0] != ED25519:
            raise CheckpointError("malformed verifier key: expected name+keyid+base64 Ed25519")
        key = cls(name=name, public_key=raw[1:])
        if key.key_id.hex() != hex_id:
            raise CheckpointError("verifier key id does not match its name and public key")
        return key

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A parsed checkpoint: the signed text (``body``) and what it says."""

    origin: str
    size: int
    root_hash: str  # as an entry_hash: "sha256:" + hex
    time: str | None
    body: str
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (key name, key id, signature)

    @property
    def chain_id(self) -> str:
        """The chain the origin names: its last path segment."""
        return self.origin.rpartition("/")[2]

    def signer(self, keys: Sequence[VerifierKey]) -> VerifierKey:
        """The first of ``keys`` that signed this checkpoint; :class:`CheckpointError` if none
        did, or if a signature claiming to be by one of them does not verify."""
        for key in keys:
            for name, signer_id, signature in self.signatures:
                if (name, signer_id) != (key.name, key.key_id):
                    continue
                if not key.verifies(signature, self.body.encode()):
                    raise CheckpointError(f"the signature by {key.encode()} does not verify")
                if key.retired_at is not None and not _before(self.time, key.retired_at):
                    raise CheckpointError(
                        f"the checkpoint (time {self.time}) is signed by {key.encode()}, "
                        f"which retired at {key.retired_at}: it vouches only for earlier ones"
                    )
                return key
        signed_by = ", ".join(f"{name}+{kid.hex()}" for name, kid, _ in self.signatures)
        raise CheckpointError(f"checkpoint is not signed by a trusted key (signed by {signed_by})")


def _before(time: str | None, limit: str) -> bool:
    """Whether a checkpoint's time line is earlier than ``limit`` (both RFC 3339)."""
    if time is None:
        return False
    try:
        return datetime.fromisoformat(time) < datetime.fromisoformat(limit)
    except ValueError as error:
        raise CheckpointError(f"unreadable time {time!r} or {limit!r}") from error


def checkpoint_body(*, origin: str, size: int, root_hash: str, time: str) -> str:
    """The text a checkpoint signs: origin, size, base64 root hash, then ``time …``."""
    root = base64.b64encode(bytes.fromhex(root_hash.removeprefix(HASH_PREFIX))).decode()
    return f"{origin}\n{size}\n{root}\n{CHECKPOINT_TIME}{time}\n"


def parse_checkpoint(note: str) -> Checkpoint:
    """Read a signed checkpoint note (signatures are checked by :meth:`Checkpoint.signer`)."""
    body, separator, signature_block = note.rpartition("\n\n")
    if not separator or not signature_block.endswith("\n"):
        raise CheckpointError("a signed note is text, a blank line, then signature lines")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise CheckpointError("a signed note holds no control characters but newlines")
    lines = body.split("\n")
    if len(lines) < 3 or not all(lines):
        raise CheckpointError("a checkpoint has an origin, a size and a root hash, each a line")
    origin, size_text, root_text, *extensions = lines
    if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
        raise CheckpointError("checkpoint size is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error as error:
        raise CheckpointError("checkpoint root hash is not base64") from error
    if len(root) != 32:
        raise CheckpointError("checkpoint root hash is not 32 bytes")
    times = [
        line[len(CHECKPOINT_TIME) :] for line in extensions if line.startswith(CHECKPOINT_TIME)
    ]
    return Checkpoint(
        origin=origin,
        size=int(size_text),
        root_hash=HASH_PREFIX + root.hex(),
        time=times[0] if times else None,
        body=body + "\n",
        signatures=tuple(_signature(line) for line in signature_block[:-1].split("\n")),
    )


def _signature(line: str) -> tuple[str, bytes, bytes]:
    name, _, encoded = line.removeprefix(_SIGNATURE_LINE).partition(" ")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise CheckpointError("a note signature is not base64") from error
    if not line.startswith(_SIGNATURE_LINE) or not valid_key_name(name) or len(raw) < 5:
        raise CheckpointError(f"malformed note signature line {line!r}")
    return name, raw[:4], raw[4:]


# -- One chain ---------------------------------------------------------------------------------


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


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector during bulk work. Reading or checking a long chain
    makes millions of short-lived objects, and each of the collector's full passes walks
    every entry already read: with it paused, the work is a third faster. Nothing here makes
    reference cycles, so nothing is left for it to collect afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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

    def resume_after(self, *, seq: int, head_hash: str, balances: Mapping[str, int]) -> None:
        """Continue a chain whose first ``seq`` entries were verified before: the checkpoint
        signer checks only what was appended since the checkpoint it signed last."""
        self.seq, self.head_hash, self.balances = seq, head_hash, dict(balances)

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

    def _add_all(self, entries: Iterable[EntryFields]) -> bool:
        chain_id, prefix, balances = self.chain_id, HASH_PREFIX, self.balances
        seq, head, non_negative = self.seq, self.head_hash, self.non_negative
        head_of_preimage = f"{VERSION_NETSTRING}{len(chain_id)}:{chain_id},"
        fields, digest, decimal = _FIELD_GETTER, sha256, _DECIMAL
        by_position = _row_type(entries)
        for entry in entries:
            seq += 1
            try:
                if type(entry) is by_position:
                    (c, n, i, t, a, cur, bal, meta, j, ts, prev, stored) = entry  # type: ignore[misc]
                else:
                    (c, n, i, t, a, cur, bal, meta, j, ts, prev, stored) = fields(entry)  # type: ignore[arg-type]
                balance = balances.get(cur, 0) + a
                if (
                    c == chain_id
                    and n == seq
                    and prev == head
                    and bal == balance
                    and type(n) is type(a) is type(bal) is int
                    and type(i) is type(t) is type(cur) is type(meta) is type(j) is type(ts) is str
                    and type(stored) is str
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


def _type_problem(entry: EntryFields) -> str:
    for name, kind in _ENTRY_FIELDS:
        if type(entry.get(name)) is not kind:
            return f"field {name!r} is missing or not a {kind.__name__}"
    return "field 'prev_entry_hash' is not a string or null"


def verify_entries(
    chain_id: str, *, kind: str, entries: Sequence[EntryFields], workers: int = 1
) -> VerificationResult:
    """Verify a whole chain given as entries in order (seq 1 first)."""
    verifier = ChainVerifier(chain_id, kind=kind)
    _check(verifier, entries, progress=None, total=len(entries), workers=workers)
    return verifier.result()


Progress = Callable[[int, int], None]  # (entries checked, entries in all)


def verify_export(
    document: Mapping[str, Any],
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """Verify a parsed export document (``docs/ledger-format.md`` §3, §4 and §6).

    With ``keys`` (pinned keys, such as Amply's published one) the export must carry a
    checkpoint signed by one of them; without, an embedded checkpoint is checked against the
    key the export names, and the result says that key was not pinned. With ``workers`` > 1
    (the command line passes the number of cores) a long chain is checked in two processes.
    """
    if document.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(f"not an Amply ledger export (format must be {EXPORT_FORMAT!r})")
    chain, head, entries = document.get("chain"), document.get("head"), document.get("entries")
    if not isinstance(chain, dict) or not isinstance(chain.get("id"), str):
        raise ExportFormatError("export has no chain object with an id")
    if not isinstance(head, dict) or not isinstance(entries, list):
        raise ExportFormatError("export must have a head object and an entries list")
    verifier = ChainVerifier(chain["id"], kind=str(chain.get("kind")))
    total = len(entries)
    objects = list(itertools.takewhile(lambda entry: isinstance(entry, dict), entries))
    _check(verifier, objects, progress=progress, total=total, workers=workers)
    if verifier.broken_seq is None and verifier.seq < total:
        verifier.broken_seq, verifier.reason = verifier.seq + 1, "entry is not an object"
    result = verifier.result(expected_head=head)
    if progress is not None:
        progress(result.entries_checked, total)
    if result.ok:
        _check_checkpoint(result, document.get("checkpoint"), keys=keys)
    return result


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


def _check_checkpoint(
    result: VerificationResult, embedded: Any, *, keys: Sequence[VerifierKey]
) -> None:
    """The export's checkpoint must be Amply's signature on exactly this head."""
    if embedded is None:
        if keys and result.head_seq > 0:
            result.fail("the export carries no signed checkpoint")
        return
    try:
        if not isinstance(embedded, dict) or not isinstance(embedded.get("note"), str):
            raise CheckpointError("the export's checkpoint must be an object with a note")
        checkpoint = parse_checkpoint(embedded["note"])
        if checkpoint.chain_id != result.chain_id:
            raise CheckpointError(f"the checkpoint is for another chain ({checkpoint.origin})")
        if (checkpoint.size, checkpoint.root_hash) != (result.head_seq, result.head_hash):
            raise CheckpointError(
                f"the signed checkpoint (seq {checkpoint.size}, {checkpoint.root_hash}) does "
                f"not match the export's head: its entries are not the ones that were signed"
            )
        trusted = list(keys) or [VerifierKey.parse(str(embedded.get("key", "")))]
        signer = checkpoint.signer(trusted)
    except CheckpointError as error:
        result.fail(str(error))
        return
    result.checkpoint = {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "time": checkpoint.time,
        "key": signer.encode(),
        "pinned": bool(keys),
    }


def verify_extension(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """Verify both exports, then that ``new`` extends ``old``: the same chain, and the same
    entry at old's head (each hash covers all before it, so the whole prefix is the same)."""
    earlier = verify_export(old, keys=keys, workers=workers)
    if not earlier.ok:
        return earlier.fail(f"the earlier export does not verify: {earlier.reason}")
    later = verify_export(new, keys=keys, progress=progress, workers=workers)
    if not later.ok:
        return later
    if later.chain_id != earlier.chain_id:
        return later.fail(f"the exports are of different chains ({earlier.chain_id})")
    if later.head_seq < earlier.head_seq:
        return later.fail(
            f"the later export has fewer entries ({later.head_seq}) than the earlier one "
            f"({earlier.head_seq}): history was truncated"
        )
    old_entries, new_entries = old["entries"], new["entries"]
    if earlier.head_seq and new_entries[earlier.head_seq - 1]["entry_hash"] != earlier.head_hash:
        differs = next(
            n
            for n, (a, b) in enumerate(zip(old_entries, new_entries, strict=False), start=1)
            if a["entry_hash"] != b["entry_hash"]
        )  # there is one: the hashes at old's head differ
        signed = earlier.checkpoint is not None and later.checkpoint is not None
        proof = " Both exports carry valid signed checkpoints: together they prove it." * signed
        return later.fail(
            f"history was rewritten: entry {differs} differs from the earlier export.{proof}",
            broken_seq=differs,
        )
    later.extends = {"seq": earlier.head_seq, "entry_hash": earlier.head_hash}
    return later


def read_export(path: Path) -> dict[str, Any]:
    """Read an export file; :class:`ExportFormatError` if it is not JSON object."""
    try:
        with path.open("rb") as handle, _collector_paused():
            document = json.load(handle)
    except (OSError, ValueError, RecursionError) as error:
        # ValueError covers malformed JSON, bad UTF-8 and over-long integers.
        raise ExportFormatError(f"cannot read {path}: {error}") from error
    if not isinstance(document, dict):
        raise ExportFormatError("an export must be a JSON object")
    return document


def verify_export_file(path: Path, *, keys: Sequence[VerifierKey] = ()) -> VerificationResult:
    """Read and verify an export file; :class:`ExportFormatError` if it is not one."""
    return verify_export(read_export(path), keys=keys)


# -- Donor receipts ----------------------------------------------------------------------------


def receipt_commitment(*, donation_id: str, salt: str, secret: str) -> str:
    """The salted commitment a donation's public entry carries (``receipt_commitment``):
    SHA-256 over the netstrings of the version tag, the donation id, the salt and the
    receipt secret. Without the salt and secret it reveals nothing; with them, anyone can
    check that the entry is the receipt holder's donation."""
    fields = (COMMITMENT_VERSION, donation_id, salt, secret)
    return HASH_PREFIX + sha256("".join(netstring(f) for f in fields).encode()).hexdigest()


@dataclass(slots=True)
class ReceiptResult:
    """Outcome of checking a donor's receipt against an export of the organisation's chain."""

    ok: bool
    donation_id: str | None
    chain_id: str | None
    seq: int | None
    reason: str | None = None
    checkpoint: dict[str, Any] | None = None

    def verdict(self) -> str:
        if not self.ok:
            return f"BROKEN: receipt for donation {self.donation_id}: {self.reason}"
        size = self.checkpoint["size"] if self.checkpoint else None
        return (
            f"OK: donation {self.donation_id} is entry {self.seq} of chain {self.chain_id}, "
            f"the receipt opens its commitment, and checkpoint {size} covers it"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "donation_id": self.donation_id,
            "chain_id": self.chain_id,
            "seq": self.seq,
            "reason": self.reason,
            "checkpoint": self.checkpoint,
        }


def verify_receipt(
    receipt: Mapping[str, Any], export: Mapping[str, Any], *, keys: Sequence[VerifierKey] = ()
) -> ReceiptResult:
    """Check that the receipt's donation is an entry of the (verified) export, that the
    receipt opens the entry's commitment, and that the receipt's checkpoint is consistent
    with the export and signed."""
    if receipt.get("format") != RECEIPT_FORMAT:
        raise ExportFormatError(f"not an Amply receipt (format must be {RECEIPT_FORMAT!r})")
    try:
        donation, entry, opening = receipt["donation"], receipt["entry"], receipt["commitment"]
        donation_id, seq = str(donation["id"]), int(entry["seq"])
        result = ReceiptResult(
            ok=True, donation_id=donation_id, chain_id=str(entry["chain_id"]), seq=seq
        )
        chain = verify_export(export, keys=keys)
        if not chain.ok:
            return _receipt_fails(result, f"the export does not verify: {chain.verdict()}")
        if chain.chain_id != result.chain_id:
            return _receipt_fails(result, f"the export is of another chain ({chain.chain_id})")
        if not 1 <= seq <= chain.head_seq:
            return _receipt_fails(result, f"the export has no entry {seq}")
        public = export["entries"][seq - 1]
        problem = _entry_problem(public, donation=donation, entry=entry, opening=opening)
        if problem is None:
            result.checkpoint = _receipt_checkpoint(receipt, export, keys=keys, seq=seq)
    except CheckpointError as error:  # a ValueError too: caught first
        return _receipt_fails(result, f"the receipt's checkpoint: {error}")
    except (KeyError, TypeError, ValueError) as error:
        raise ExportFormatError(f"the receipt is incomplete or malformed: {error!r}") from error
    return result if problem is None else _receipt_fails(result, problem)


def _receipt_fails(result: ReceiptResult, reason: str) -> ReceiptResult:
    result.ok, result.reason = False, reason
    return result


def _entry_problem(
    public: Mapping[str, Any],
    *,
    donation: Mapping[str, Any],
    entry: Mapping[str, Any],
    opening: Mapping[str, Any],
) -> str | None:
    metadata = json.loads(public["metadata"])
    if not isinstance(metadata, dict):
        return f"entry {public['seq']} has metadata that is not a JSON object"
    commitment = receipt_commitment(
        donation_id=str(donation["id"]), salt=str(opening["salt"]), secret=str(opening["secret"])
    )
    if (public["id"], public["entry_hash"]) != (entry["id"], entry["entry_hash"]):
        return f"entry {public['seq']} of the export is not the receipt's entry"
    if public["type"] != "donation_received" or metadata.get("donation_id") != donation["id"]:
        return f"entry {public['seq']} does not record this donation"
    if (public["amount"], public["currency"]) != (donation["amount"], donation["currency"]):
        return "the entry's amount is not the receipt's"
    if metadata.get("receipt_commitment") != commitment:
        return "the receipt does not open the entry's commitment: it is not this donor's receipt"
    return None


def _receipt_checkpoint(
    receipt: Mapping[str, Any],
    export: Mapping[str, Any],
    *,
    keys: Sequence[VerifierKey],
    seq: int,
) -> dict[str, Any]:
    """The receipt's checkpoint must cover the entry, agree with the export, and be signed."""
    embedded = receipt["checkpoint"]
    checkpoint = parse_checkpoint(embedded["note"])
    entries = export["entries"]
    if checkpoint.size < seq:
        raise CheckpointError(f"it covers {checkpoint.size} entries, not entry {seq}")
    if checkpoint.chain_id != entries[seq - 1]["chain_id"]:
        raise CheckpointError(f"it is for another chain ({checkpoint.origin})")
    if checkpoint.size > len(entries):
        raise CheckpointError("it is newer than the export: download a newer export")
    if entries[checkpoint.size - 1]["entry_hash"] != checkpoint.root_hash:
        raise CheckpointError(
            f"the export's entry {checkpoint.size} is not the one Amply signed: "
            "the history was rewritten"
        )
    signer = checkpoint.signer(list(keys) or [VerifierKey.parse(str(embedded.get("key", "")))])
    return {"size": checkpoint.size, "key": signer.encode(), "pinned": bool(keys)}
