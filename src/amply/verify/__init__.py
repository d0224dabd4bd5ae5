"""Verification of a ledger chain: every hash, link, sequence number and running balance,
the signed checkpoint that covers it, and that a later download extends an earlier one.

Standard library only, plus :mod:`amply.verify.crypto` (the entry hash, also stdlib only) and the
``cryptography`` package for Ed25519 signatures: the server's ``verify`` endpoint, its
checkpoint signer, ``amply verify`` and an auditor's own copy run this same code. The rules
are those of ``docs/ledger-format.md`` §3, §4, §6 and §7; the first rule an entry breaks is
reported with that entry's sequence number.

Export files are read as a stream (:func:`verify_export_file`): memory stays flat whatever
the chain's length, and a long file is checked on two cores.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import gc
import itertools
import json
import os
import re
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from amply.verify.crypto import HASH_PREFIX, VERSION_NETSTRING, fast_preimage, netstring

EXPORT_FORMAT: Final = "amply-ledger-export/v1"
RECEIPT_FORMAT: Final = "amply-donation-receipt/v1"
COMMITMENT_VERSION: Final = "amply-receipt-commitment/v1"
# A chain's kind is part of its id, so an export cannot relabel a wallet chain.
KIND_PREFIXES: Final = {"organisation": "org_", "wallet": "wal_", "platform": "plat_"}
# Rule 1 of docs/ledger-format.md §3: amounts within ±10^15, balances and seq in 64 bits.
MAX_AMOUNT: Final = 10**15
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

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
# Export files at least this large are read in two processes when there are two cores.
PARALLEL_FILE_MINIMUM: Final = 16 << 20
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
# The checkpoint's time line and key lists' times: the canonical form of §2.3.
_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class EntryFields(Protocol):
    """Anything with ``get(name)``: a parsed JSON object, or a database record."""

    def get(self, key: str, /) -> Any: ...


class ExportFormatError(ValueError):
    """The file is not an Amply ledger export at all (as opposed to a tampered one)."""


class CheckpointError(ValueError):
    """A checkpoint or key that is malformed, or whose signature does not hold."""


def is_text(value: str) -> bool:
    """Whether a string is Unicode text (no lone surrogate, which JSON escapes can make)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _all_text(value: Any) -> bool:
    """Whether every string in a parsed JSON value is Unicode text."""
    if isinstance(value, str):
        return is_text(value)
    if isinstance(value, dict):
        return all(is_text(k) and _all_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_all_text(v) for v in value)
    return True


# -- Strict JSON (docs/ledger-format.md §4.1) ---------------------------------------------------


class _Unreadable(ValueError):
    """JSON that the format refuses: duplicate member names, NaN or Infinity."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _Unreadable("duplicate member name in a JSON object")
    return document


def _constant(name: str) -> Any:
    raise _Unreadable(f"{name} is not JSON")


# Objects as dicts, refusing duplicate names and NaN/Infinity.
_STRICT: Final = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)
# Objects as tuples of (name, value) pairs: the C scanner builds them without a Python call,
# and an entry whose names are exactly those of §1 in export order has no duplicate.
_PAIRS: Final = json.JSONDecoder(object_pairs_hook=tuple, parse_constant=_constant)


def _as_dict(pairs: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return _pairs([(name, _plain(value)) for name, value in pairs])


def _nested(value: Any) -> Any:
    if type(value) is tuple:
        return _as_dict(value)
    if type(value) is list:
        return [_nested(item) for item in value]
    return value


def _plain(value: Any) -> Any:
    """A value parsed by ``_PAIRS`` as :data:`_STRICT` would have parsed it: objects as
    dicts, refusing duplicate names (:class:`_Unreadable`, also for too deep a nesting)."""
    try:
        return _nested(value)
    except RecursionError as error:
        raise _Unreadable("JSON nested too deeply") from error


def loads_strict(data: bytes, *, what: str = "the file") -> Any:
    """Parse a whole (small) JSON document as the format demands: UTF-8 without a byte order
    mark, RFC 8259 only, no duplicate member names. :class:`ExportFormatError` otherwise."""
    if data.startswith(codecs.BOM_UTF8):
        raise ExportFormatError(f"{what} starts with a byte order mark: not the format's JSON")
    try:
        text = data.decode("utf-8")
        value, end = _STRICT.raw_decode(text, _ws(text, 0))
    except (ValueError, RecursionError) as error:
        # ValueError covers malformed JSON, bad UTF-8, duplicates and over-long integers.
        raise ExportFormatError(f"{what} is not strict UTF-8 JSON: {_short(error)}") from error
    if _ws(text, end) != len(text):
        raise ExportFormatError(f"{what} has text after its JSON value")
    return value


_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")


def _ws(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    assert match is not None
    return match.end()


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.encode("ascii", "backslashreplace").decode()[:200]


# -- Signed notes (c2sp.org/signed-note) and checkpoints (c2sp.org/tlog-checkpoint) ----------

ED25519: Final = 0x01  # the signed-note signature type of Ed25519
_SIGNATURE_LINE: Final = "\u2014 "  # an em dash and a space open each signature line
CHECKPOINT_TIME: Final = "time "  # the extension line that dates a checkpoint
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_KEY_SHAPE: Final = re.compile(r"[^+/\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+={0,2}")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte id of an Ed25519 note key: SHA-256(name, newline, 0x01, public key)[:4]."""
    return sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def looks_like_key(text: str) -> bool:
    """Whether a ``--key`` value is a verifier key rather than a file name (§4.2): a name with
    no ``/``, ``+`` or space, ``+``, 8 lowercase hex digits, ``+``, base64."""
    return _KEY_SHAPE.fullmatch(text) is not None


def _b64(text: str) -> bytes:
    """Standard base64 with padding (RFC 4648 §4), nothing else."""
    if _BASE64.fullmatch(text) is None or len(text) % 4:
        raise CheckpointError("not standard padded base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise CheckpointError(f"not base64: {error}") from error


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
        if not isinstance(text, str) or not is_text(text):
            raise CheckpointError("malformed verifier key: not text")
        name, _, rest = text.strip().partition("+")
        hex_id, _, encoded = rest.partition("+")
        try:
            raw = _b64(encoded)
        except CheckpointError as error:
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
        """The first of ``keys`` whose signature on this checkpoint holds and vouches for its
        time. :class:`CheckpointError` if there is none, and if *any* signature claiming to be
        by one of ``keys`` does not verify, or is by a retired key on a checkpoint dated after
        it retired (someone else holds that key). Signatures by other keys are ignored."""
        vouching: VerifierKey | None = None
        for name, signer_id, signature in self.signatures:
            for key in keys:
                if (name, signer_id) != (key.name, key.key_id):
                    continue
                if not key.verifies(signature, self.body.encode()):
                    raise CheckpointError(f"the signature by {key.encode()} does not verify")
                if key.retired_at is not None and not _before(self.time, key.retired_at):
                    raise CheckpointError(
                        f"the checkpoint (time {self.time}) is signed by {key.encode()}, "
                        f"which retired at {key.retired_at}: it vouches only for earlier ones"
                    )
                vouching = vouching or key
        if vouching is None:
            signed_by = ", ".join(f"{name}+{kid.hex()}" for name, kid, _ in self.signatures)
            raise CheckpointError(
                f"checkpoint is not signed by a trusted key (signed by {signed_by})"
            )
        return vouching


def _instant(text: str) -> datetime:
    """An RFC 3339 time with its offset (``Z`` or ``±hh:mm``)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def _before(time: str | None, limit: str) -> bool:
    """Whether a checkpoint's time line is earlier than ``limit`` (both RFC 3339)."""
    if time is None:
        return False
    try:
        return _instant(time) < _instant(limit)
    except ValueError as error:
        raise CheckpointError(f"unreadable time {time!r} or {limit!r}") from error


def checkpoint_body(*, origin: str, size: int, root_hash: str, time: str) -> str:
    """The text a checkpoint signs: origin, size, base64 root hash, then ``time …``."""
    root = base64.b64encode(bytes.fromhex(root_hash.removeprefix(HASH_PREFIX))).decode()
    return f"{origin}\n{size}\n{root}\n{CHECKPOINT_TIME}{time}\n"


def parse_checkpoint(note: str) -> Checkpoint:
    """Read a signed checkpoint note (signatures are checked by :meth:`Checkpoint.signer`):
    exactly four lines of text (§6.1), a blank line, one or more signature lines (§6.2)."""
    if not isinstance(note, str) or not is_text(note):
        raise CheckpointError("a signed note is Unicode text (it holds a lone surrogate)")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise CheckpointError("a signed note holds no control characters but newlines")
    body, separator, signature_block = note.partition("\n\n")
    if not separator or not signature_block.endswith("\n"):
        raise CheckpointError("a signed note is text, a blank line, then signature lines")
    lines = body.split("\n")
    if len(lines) != 4 or not all(lines):
        raise CheckpointError(
            "a checkpoint is four lines: origin, size, root hash and time, each non-empty"
        )
    origin, size_text, root_text, time_line = lines
    if not size_text.isascii() or not size_text.isdigit() or size_text != str(int(size_text)):
        raise CheckpointError("checkpoint size is not a decimal number")
    if int(size_text) > INT64_MAX:
        raise CheckpointError("checkpoint size is out of range")
    try:
        root = _b64(root_text)
    except CheckpointError as error:
        raise CheckpointError("checkpoint root hash is not base64") from error
    if len(root) != 32:
        raise CheckpointError("checkpoint root hash is not 32 bytes")
    time = time_line.removeprefix(CHECKPOINT_TIME)
    if not time_line.startswith(CHECKPOINT_TIME) or _TIMESTAMP.fullmatch(time) is None:
        raise CheckpointError(
            "the fourth line of a checkpoint is 'time YYYY-MM-DDTHH:MM:SS.ffffffZ'"
        )
    try:
        _instant(time)
    except ValueError as error:
        raise CheckpointError(f"checkpoint time {time!r} is not a real time") from error
    return Checkpoint(
        origin=origin,
        size=int(size_text),
        root_hash=HASH_PREFIX + root.hex(),
        time=time,
        body=body + "\n",
        signatures=tuple(_signature(line) for line in signature_block[:-1].split("\n")),
    )


def _signature(line: str) -> tuple[str, bytes, bytes]:
    name, _, encoded = line.removeprefix(_SIGNATURE_LINE).partition(" ")
    try:
        raw = _b64(encoded)
    except CheckpointError as error:
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


_ABSENT: Final = object()


def _check_format(members: Mapping[str, Any]) -> tuple[str, str]:
    """The members that say what the document is (§4): ``format`` and ``chain``."""
    if members.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(f"not an Amply ledger export (format must be {EXPORT_FORMAT!r})")
    chain = members.get("chain")
    if not isinstance(chain, dict) or type(chain.get("id")) is not str:
        raise ExportFormatError("export has no chain object with a string id")
    chain_id, kind = chain["id"], chain.get("kind")
    if not is_text(chain_id):
        raise ExportFormatError("the chain id is not Unicode text")
    if type(kind) is not str or kind not in KIND_PREFIXES:
        raise ExportFormatError(f"unknown chain kind {kind!r}")
    if not chain_id.startswith(KIND_PREFIXES[kind]):
        raise ExportFormatError(
            f"chain {chain_id!r} cannot be of kind {kind!r}: its id must start with "
            f"{KIND_PREFIXES[kind]!r}"
        )
    return chain_id, kind


def _check_shapes(members: Mapping[str, Any]) -> None:
    """``head`` and ``checkpoint`` have the JSON types of §4, or the export is unreadable."""
    head = members.get("head")
    if not isinstance(head, dict):
        raise ExportFormatError("export must have a head object")
    seq, head_hash = head.get("seq"), head.get("entry_hash")
    if type(seq) is not int or not 0 <= seq <= INT64_MAX:
        raise ExportFormatError("the head's seq must be an integer from 0")
    if head_hash is not None and (type(head_hash) is not str or not is_text(head_hash)):
        raise ExportFormatError("the head's entry_hash must be a string or null")
    checkpoint = members.get("checkpoint", _ABSENT)
    if checkpoint is not _ABSENT and not (
        isinstance(checkpoint, dict)
        and type(checkpoint.get("note")) is str
        and type(checkpoint.get("key")) is str
    ):
        raise ExportFormatError("the export's checkpoint must be an object with a note and a key")


def _expected_total(members: Mapping[str, Any]) -> int:
    head = members.get("head")
    seq = head.get("seq") if isinstance(head, dict) else None
    return seq if type(seq) is int and seq >= 0 else 0


def _finish(
    verifier: ChainVerifier, members: Mapping[str, Any], *, keys: Sequence[VerifierKey]
) -> VerificationResult:
    """The head (§3) and the checkpoint (§4) of an export whose entries were all given."""
    _check_shapes(members)
    result = verifier.result(expected_head=members["head"])
    if result.ok:
        _check_checkpoint(result, members.get("checkpoint", _ABSENT), keys=keys)
    return result


def verify_export(
    document: Mapping[str, Any],
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """Verify a parsed export document (``docs/ledger-format.md`` §3, §4 and §6).

    With ``keys`` (pinned keys, such as Amply's published one) the checkpoint must be signed
    by one of them; without, it is checked against the key the export names, and the result
    says that key was not pinned. A non-empty export without a checkpoint never verifies.
    With ``workers`` > 1 a long chain is checked in two processes. A file is better read
    with :func:`verify_export_file`, which streams it.
    """
    if not isinstance(document, Mapping):
        raise ExportFormatError("an export must be a JSON object")
    chain_id, kind = _check_format(document)
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ExportFormatError("export must have an entries array")
    _check_shapes(document)
    verifier = ChainVerifier(chain_id, kind=kind)
    total = len(entries)
    _check(verifier, entries, progress=progress, total=total, workers=workers)
    if progress is not None:
        progress(verifier.seq, total)
    return _finish(verifier, document, keys=keys)


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
    """The export's checkpoint must be Amply's signature on exactly this head (§4): a
    non-empty export carries one, an empty one none. A failure names no seq."""
    if embedded is _ABSENT:
        if result.head_seq > 0:
            result.fail(
                "the export carries no signed checkpoint: nothing shows that Amply published "
                "these entries"
            )
        return
    if result.head_seq == 0:
        result.fail("an empty export carries no checkpoint, and this one does")
        return
    try:
        checkpoint = parse_checkpoint(embedded["note"])
        if checkpoint.chain_id != result.chain_id:
            raise CheckpointError(f"the checkpoint is for another chain ({checkpoint.origin})")
        if (checkpoint.size, checkpoint.root_hash) != (result.head_seq, result.head_hash):
            raise CheckpointError(
                f"the signed checkpoint (seq {checkpoint.size}, {checkpoint.root_hash}) does "
                f"not match the export's head: its entries are not the ones that were signed"
            )
        trusted = list(keys) or [VerifierKey.parse(embedded["key"])]
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


# -- Streamed export files ----------------------------------------------------------------------

# A single JSON value of an export (an entry, the head, a checkpoint…) is at most this long.
MAX_VALUE_CHARS: Final = 8 << 20
_CHUNK: Final = 1 << 20
_BATCH: Final = 4096
_WS_CHARS: Final = frozenset(" \t\n\r")
_ENTRY_START: Final = b'{"chain_id":'


@dataclass(frozen=True, slots=True)
class _Capture:
    """Entries to keep while streaming, by position: some seqs, and every ``stride``-th."""

    seqs: frozenset[int] = frozenset()
    stride: int = 0

    def within(self, first: int, last: int) -> list[int]:
        picked = [seq for seq in self.seqs if first <= seq <= last]
        if self.stride:
            picked.extend(range(-(-first // self.stride) * self.stride, last + 1, self.stride))
        return picked


def _entry_dict(entry: Any) -> Any:
    return dict(zip(_EXPORT_ORDER, entry, strict=True)) if type(entry) is tuple else entry


class _Stream:
    """A strict JSON reader over a file read in chunks (§4.1). The export's top level and its
    ``entries`` array are walked here; each value in them (an entry, the head…) is parsed
    whole by the json module's C scanner. Memory holds one chunk and one batch of entries."""

    def __init__(self, handle: IO[bytes], *, start: int = 0) -> None:
        self.handle = handle
        self.text = ""
        self.pos = 0
        self.eof = False
        self.carry = b""
        self.offset = start  # file offset of the next byte read
        self.count = 0  # entries read
        self.split: int | None = None  # byte offset where a second process starts reading
        self.split_at: int | None = None  # that offset as an index into ``text``
        self.handed_over = False

    def more(self) -> bool:
        """Read the next chunk; False at the end of the file."""
        if self.eof:
            return False
        raw = self.handle.read(_CHUNK)
        if self.offset == 0 and raw.startswith(codecs.BOM_UTF8):
            raise ExportFormatError("the file starts with a byte order mark: not UTF-8 JSON")
        base = self.offset - len(self.carry)
        self.offset += len(raw)
        data = self.carry + raw
        if not raw:
            self.eof = True
            if data:
                self._append(data, base)
            return bool(data)
        cut, back = len(data), 0
        # Keep an incomplete UTF-8 sequence at the end for the next read.
        while back < 3 and back < cut and data[cut - back - 1] & 0xC0 == 0x80:
            back += 1
        if back < cut and data[cut - back - 1] >= 0xC0:
            cut -= back + 1
        self.carry = data[cut:]
        self._append(data[:cut], base)
        return True

    def _append(self, data: bytes, base: int) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ExportFormatError(f"the file is not UTF-8 ({_short(error)})") from error
        kept = self.text[self.pos :]
        if self.split_at is not None:
            self.split_at -= self.pos
        if (
            self.split is not None
            and self.split_at is None
            and base <= self.split < base + len(data)
        ):
            self.split_at = len(kept) + len(data[: self.split - base].decode("utf-8"))
        self.text, self.pos = kept + text, 0

    def _grow(self) -> bool:
        if len(self.text) - self.pos > MAX_VALUE_CHARS:
            raise ExportFormatError(f"a JSON value longer than {MAX_VALUE_CHARS:,} characters")
        return self.more()

    def char(self) -> str:
        """The next character that is not white space ("" at the end), not consumed."""
        while True:
            self.pos = _ws(self.text, self.pos)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str, where: str) -> None:
        if self.char() != char:
            raise ExportFormatError(f"malformed JSON: expected {char!r} {where}")
        self.pos += 1

    def value(self, decoder: json.JSONDecoder = _STRICT) -> Any:
        self.char()
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                if self._grow():
                    continue
                raise ExportFormatError(f"malformed JSON: {_short(error)}") from error
            except (ValueError, RecursionError) as error:  # duplicates, NaN, huge integers
                raise ExportFormatError(f"refused JSON: {_short(error)}") from error
            if end == len(self.text) and self._grow():
                continue
            self.pos = end
            return value

    def members(
        self, on_entries: Callable[[dict[str, Any]], dict[str, Any] | None], *, resume: bool
    ) -> dict[str, Any]:
        """Walk the top-level object; ``on_entries`` reads the entries array, and may return
        the members after it (read by another process), which ends the walk. With ``resume``,
        start just after a member's value (a second process, after the entries array)."""
        members: dict[str, Any] = {}
        if not resume:
            self.expect("{", "at the start of the export")
            if self.char() == "}":
                self.pos += 1
                return self._end(members)
        while True:
            if resume:
                resume = False
            else:
                if self.char() != '"':
                    raise ExportFormatError("malformed JSON: expected a member name")
                name = self.value()
                if name in members:
                    raise ExportFormatError(f"duplicate member name {name!r}")
                self.expect(":", f"after the member name {name!r}")
                if name == "entries":
                    members[name] = None
                    rest = on_entries(members)
                    if rest is not None:
                        for later, value in rest.items():
                            if later in members:
                                raise ExportFormatError(f"duplicate member name {later!r}")
                            members[later] = value
                        return members
                else:
                    members[name] = self.value()
            separator = self.char()
            self.pos += 1
            if separator == "}":
                return self._end(members)
            if separator != ",":
                raise ExportFormatError("malformed JSON: expected ',' or '}' between members")

    def _end(self, members: dict[str, Any]) -> dict[str, Any]:
        if self.char() != "":
            raise ExportFormatError("the file has text after its JSON object")
        return members

    def entries(self, *, opened: bool = False) -> Iterator[list[Any]]:
        """The entries array, in batches: an entry whose names are those of §1 in export
        order as the tuple of its values, any other value as a plain one. Stops early (with
        ``handed_over``) at the byte where a second process reads on."""
        if not opened:
            self.expect("[", "to open the entries array")
            if self.char() == "]":
                self.pos += 1
                return
        scan, order, ws = _PAIRS.scan_once, _EXPORT_ORDER, _WS_CHARS  # type: ignore[attr-defined]
        batch: list[Any] = []
        append, limit = batch.append, _BATCH
        text, pos, split_at = self.text, self.pos, self.split_at
        size = len(text)
        while True:
            if split_at is not None and pos >= split_at:
                if pos == split_at:
                    self.pos, self.handed_over = pos, True
                    if batch:
                        yield batch
                    return
                self.split = self.split_at = split_at = None  # the other process guessed wrong
            try:
                value, end = scan(text, pos)
            except (json.JSONDecodeError, StopIteration) as error:
                self.pos = pos
                if self._grow():
                    text, pos, split_at = self.text, self.pos, self.split_at
                    size = len(text)
                    continue
                message = _short(error) if isinstance(error, ValueError) else "expected a value"
                raise ExportFormatError(
                    f"malformed JSON in entry {self.count + 1}: {message}"
                ) from error
            except (ValueError, RecursionError) as error:
                raise ExportFormatError(
                    f"refused JSON in entry {self.count + 1}: {_short(error)}"
                ) from error
            if end == size:
                self.pos = pos
                if self._grow():
                    text, pos, split_at = self.text, self.pos, self.split_at
                    size = len(text)
                    continue
            if type(value) is tuple and len(value) == 12:
                names, values = zip(*value, strict=False)
                append(values if names == order else self._plain(value))
            else:
                append(self._plain(value))
            self.count += 1
            if end < size and text[end] not in ws:
                separator, pos = text[end], end + 1
            else:
                self.pos = end
                separator = self.char()
                text, pos, split_at = self.text, self.pos + 1, self.split_at
                size = len(text)
            if separator == ",":
                if pos >= size or text[pos] in ws:
                    self.pos = pos
                    self.char()
                    text, pos, split_at = self.text, self.pos, self.split_at
                    size = len(text)
                if len(batch) >= limit:
                    self.pos = pos
                    yield batch
                    batch = []
                    append = batch.append
                    text, pos, split_at = self.text, self.pos, self.split_at
                    size = len(text)
                continue
            self.pos = pos
            if separator == "]":
                if batch:
                    yield batch
                return
            raise ExportFormatError(f"malformed JSON: expected ',' or ']' after entry {self.count}")

    def _plain(self, value: Any) -> Any:
        try:
            return _plain(value)
        except _Unreadable as error:
            raise ExportFormatError(f"refused JSON in entry {self.count + 1}: {error}") from error


class _StreamedExport:
    """Verifies an export file as it reads it, the second half in another process when the
    file is long and there are two cores (docs/ledger-format.md §4.3)."""

    def __init__(
        self,
        path: Path,
        *,
        progress: Progress | None,
        workers: int,
        capture: _Capture,
    ) -> None:
        self.path, self.progress, self.workers, self.capture = path, progress, workers, capture
        self.verifier: ChainVerifier | None = None
        self.captured: dict[int, Any] = {}
        self.total = self.size = 0
        self.stream: _Stream | None = None

    def run(self, *, keys: Sequence[VerifierKey]) -> VerificationResult:
        try:
            handle = self.path.open("rb")
        except OSError as error:
            raise ExportFormatError(f"cannot read {self.path}: {error.strerror}") from error
        with handle, _collector_paused():
            try:
                self.size = os.fstat(handle.fileno()).st_size
                self.stream = _Stream(handle)
                members = self.stream.members(self._entries, resume=False)
            except OSError as error:
                raise ExportFormatError(f"cannot read {self.path}: {error.strerror}") from error
        if self.verifier is None:
            _check_format(members)
            raise ExportFormatError("export must have an entries array")
        if self.progress is not None:
            self.progress(self.verifier.seq, max(self.total, self.verifier.seq))
        return _finish(self.verifier, members, keys=keys)

    def _entries(self, members: dict[str, Any]) -> dict[str, Any] | None:
        chain_id, kind = _check_format(members)  # format and chain come first (§4.1)
        self.verifier = verifier = ChainVerifier(chain_id, kind=kind)
        self.total = _expected_total(members)
        stream = self.stream
        assert stream is not None
        child = None
        if self.workers > 1 and self.size >= PARALLEL_FILE_MINIMUM and hasattr(os, "fork"):
            child = self._fork(chain_id, kind, after=stream.offset)
        step = 1 if child is None else 2
        try:
            for batch in stream.entries():
                self._take(verifier, batch, first=stream.count - len(batch) + 1)
                if self.progress is not None:
                    self.progress(min(stream.count * step, self.total), self.total)
        finally:
            if child is not None and not stream.handed_over:
                _stop(*child)
        if child is None or not stream.handed_over:
            return None
        pid, reader = child
        with os.fdopen(reader) as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
        state = json.loads(answer or "null")
        if state is not None and "unreadable" in state:
            raise ExportFormatError(state["unreadable"])
        if state is not None and self._merge(verifier, state, first=stream.count + 1):
            return dict(state["trailing"])
        # The other process could not start there, or started from a state this half does
        # not end in (the chain breaks about there): read on here, for the exact verdict.
        stream.handed_over = False
        stream.split = stream.split_at = None
        for batch in stream.entries(opened=True):
            self._take(verifier, batch, first=stream.count - len(batch) + 1)
        return None

    def _take(self, verifier: ChainVerifier, batch: list[Any], *, first: int) -> None:
        for seq in self.capture.within(first, first + len(batch) - 1):
            self.captured[seq] = _entry_dict(batch[seq - first])
        try:
            if verifier.add_all(batch):
                return
            for entry in batch:  # the rest is only read: it must still be readable
                if type(entry) is tuple:
                    _plain(list(entry))
        except _Unreadable as error:
            raise ExportFormatError(f"refused JSON in an entry: {error}") from error

    def _fork(self, chain_id: str, kind: str, *, after: int) -> tuple[int, int] | None:
        split = _split_point(self.path, self.size)
        if split is None or split < after:
            return None
        assert self.stream is not None
        self.stream.split = split
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which coverage does not follow
            os.close(reader)
            state: dict[str, Any] | None = None
            try:
                state = _second_half(self.path, split, chain_id, kind, self.capture)
            finally:  # whatever happens, the child never returns into the caller's code
                with os.fdopen(writer, "w") as pipe:
                    pipe.write(json.dumps(state))
                os._exit(0)
        os.close(writer)
        return pid, reader

    def _merge(self, verifier: ChainVerifier, state: dict[str, Any], *, first: int) -> bool:
        """Join the second half's verdict to the first's, if the second half started from
        the state the first ends in: the next seq, its last hash, and per currency the
        balance it ends with. False if not (the chain breaks at the seam)."""
        if verifier.broken_seq is None and (
            state["first_seq"] != first
            or state["first_prev"] != verifier.head_hash
            or any(
                verifier.balances.get(currency, 0) != opening
                for currency, (opening, _, _) in state["openings"].items()
            )
        ):
            return False
        self.captured.update({int(seq): entry for seq, entry in state["captured"].items()})
        if verifier.broken_seq is None:
            verifier.seq, verifier.head_hash = state["seq"], state["head"]
            verifier.balances.update(state["balances"])
            verifier.broken_seq, verifier.reason = state["broken_seq"], state["reason"]
        return True


def _stop(pid: int, reader: int) -> None:
    """End the second process this one started (its guess at an entry's start was wrong)."""
    os.close(reader)
    with suppress(ProcessLookupError):  # it may have finished already
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _split_point(path: Path, size: int) -> int | None:
    """A byte near the middle of the file where an entry seems to start, in the layout Amply
    writes (``,{"chain_id":``). Only a guess: the first process confirms it by arriving at
    exactly that byte at the start of an entry, or ignores the second process."""
    with path.open("rb") as handle:
        handle.seek(size // 2)
        data = handle.read(_CHUNK)
    found = data.find(_ENTRY_START)
    while found != -1:
        before = data[:found].rstrip(b" \t\r\n")
        if before.endswith(b","):
            return size // 2 + found
        found = data.find(_ENTRY_START, found + 1)
    return None


def _second_half(
    path: Path, split: int, chain_id: str, kind: str, capture: _Capture
) -> dict[str, Any] | None:  # pragma: no cover - runs in the child
    """The second process's work: the entries from byte ``split`` on, from the state the
    first entry there claims (its seq and link; per currency, the balance before it), and the
    rest of the file. The first process checks those claims against where it ends."""
    with path.open("rb") as handle, _collector_paused():
        handle.seek(split)
        stream = _Stream(handle, start=split)
        verifier = ChainVerifier(chain_id, kind=kind)
        captured: dict[str, Any] = {}
        try:
            batches = stream.entries(opened=True)
            opening = next(batches, None)
            if opening is None:
                return None
            first = opening[0]
            if type(first) is not tuple or type(first[1]) is not int or type(first[10]) is not str:
                return None
            first_seq, first_prev = first[1], first[10]
            verifier.resume_after(seq=first_seq - 1, head_hash=first_prev, balances={})
            verifier.openings = {}
            for batch in itertools.chain([opening], batches):
                start = first_seq + stream.count - len(batch)
                for seq in capture.within(start, start + len(batch) - 1):
                    captured[str(seq)] = _entry_dict(batch[seq - start])
                if not verifier.add_all(batch):
                    for entry in batch:
                        if type(entry) is tuple:
                            _plain(list(entry))
            trailing = stream.members(lambda _: None, resume=True)
        except (ExportFormatError, _Unreadable) as error:
            return {"unreadable": str(error)}
    return {
        "first_seq": first_seq,
        "first_prev": first_prev,
        "count": stream.count,
        "seq": verifier.seq,
        "head": verifier.head_hash,
        "balances": verifier.balances,
        "openings": verifier.openings,
        "broken_seq": verifier.broken_seq,
        "reason": verifier.reason,
        "trailing": trailing,
        "captured": captured,
    }


def verify_export_file(
    path: Path,
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """Read and verify an export file as a stream (memory stays flat whatever its length);
    :class:`ExportFormatError` if it is not a readable export (§3, §4.1)."""
    return _StreamedExport(path, progress=progress, workers=workers, capture=_Capture()).run(
        keys=keys
    )


# -- Two downloads of one chain -------------------------------------------------------------------

# Every this many entries, OLD's and NEW's hashes are kept to find where they part.
_SAMPLE_STRIDE: Final = 1024


def _earlier_fails(earlier: VerificationResult) -> VerificationResult:
    return earlier.fail(
        f"the earlier export does not verify (OLD, at seq {earlier.broken_seq}): {earlier.reason}",
        broken_seq=earlier.broken_seq,
    )


def _extends(
    earlier: VerificationResult,
    later: VerificationResult,
    *,
    new_hash_at: Callable[[int], Any],
    first_difference: Callable[[], int],
) -> VerificationResult:
    """NEW (``later``, verified) extends OLD (``earlier``, verified): §4.4."""
    if later.chain_id != earlier.chain_id:
        return later.fail(f"the exports are of different chains ({earlier.chain_id})")
    if later.head_seq < earlier.head_seq:
        return later.fail(
            f"the later export has fewer entries ({later.head_seq}) than the earlier one "
            f"({earlier.head_seq}): history was truncated",
            broken_seq=later.head_seq + 1,
        )
    if earlier.head_seq and new_hash_at(earlier.head_seq) != earlier.head_hash:
        differs = first_difference()
        signed = earlier.checkpoint is not None and later.checkpoint is not None
        proof = " Both exports carry valid signed checkpoints: together they prove it." * signed
        return later.fail(
            f"history was rewritten: entry {differs} differs from the earlier export.{proof}",
            broken_seq=differs,
        )
    later.extends = {"seq": earlier.head_seq, "entry_hash": earlier.head_hash}
    return later


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
        return _earlier_fails(earlier)
    later = verify_export(new, keys=keys, progress=progress, workers=workers)
    if not later.ok:
        return later
    old_entries, new_entries = old["entries"], new["entries"]

    def first_difference() -> int:
        pairs = zip(old_entries, new_entries, strict=False)
        return next(
            n for n, (a, b) in enumerate(pairs, start=1) if a["entry_hash"] != b["entry_hash"]
        )

    return _extends(
        earlier,
        later,
        new_hash_at=lambda seq: new_entries[seq - 1]["entry_hash"],
        first_difference=first_difference,
    )


def verify_extension_files(
    old: Path,
    new: Path,
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """:func:`verify_extension` of two export files, each read as a stream."""
    sampled = _Capture(stride=_SAMPLE_STRIDE)
    first = _StreamedExport(old, progress=None, workers=workers, capture=sampled)
    earlier = first.run(keys=keys)
    if not earlier.ok:
        return _earlier_fails(earlier)
    wanted = _Capture(seqs=frozenset({earlier.head_seq}), stride=_SAMPLE_STRIDE)
    second = _StreamedExport(new, progress=progress, workers=workers, capture=wanted)
    later = second.run(keys=keys)
    if not later.ok:
        return later

    def first_difference() -> int:
        # Hashes agree up to some entry and differ from the next on (each covers all before
        # it): the samples bracket it, a second reading of that stretch finds it.
        low, high = 0, earlier.head_seq
        for seq in sorted(s for s in first.captured if s in second.captured):
            if first.captured[seq]["entry_hash"] != second.captured[seq]["entry_hash"]:
                high = seq
                break
            low = seq
        stretch = _Capture(seqs=frozenset(range(low + 1, high + 1)))
        a = _StreamedExport(old, progress=None, workers=workers, capture=stretch)
        b = _StreamedExport(new, progress=None, workers=workers, capture=stretch)
        a.run(keys=keys)
        b.run(keys=keys)
        return next(
            n
            for n in range(low + 1, high + 1)
            if a.captured[n]["entry_hash"] != b.captured[n]["entry_hash"]
        )

    return _extends(
        earlier,
        later,
        new_hash_at=lambda seq: second.captured[seq]["entry_hash"],
        first_difference=first_difference,
    )


def read_export(path: Path) -> dict[str, Any]:
    """Read a small JSON document (a receipt, a keys list, or an export to hold in memory)
    strictly (§4.1); :class:`ExportFormatError` if it is not a JSON object."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ExportFormatError(f"cannot read {path}: {error.strerror}") from error
    with _collector_paused():
        document = loads_strict(data, what=str(path))
    if not isinstance(document, dict):
        raise ExportFormatError(f"{path} must hold a JSON object")
    return document


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
    """Outcome of checking a donor's receipt against an export of the organisation's chain.
    ``broken_seq``: the export's first broken entry, or the receipt's entry when that entry
    is not the receipt's donation (§7); ``None`` when the checkpoint fails, or all holds."""

    ok: bool
    donation_id: str | None
    chain_id: str | None
    seq: int | None
    reason: str | None = None
    checkpoint: dict[str, Any] | None = None
    broken_seq: int | None = None

    def verdict(self) -> str:
        if not self.ok:
            where = f" at seq {self.broken_seq}" if self.broken_seq is not None else ""
            return f"BROKEN: receipt for donation {self.donation_id}{where}: {self.reason}"
        size = self.checkpoint["size"] if self.checkpoint else None
        pinned = (
            "" if self.checkpoint and self.checkpoint["pinned"] else " (key not pinned: pass --key)"
        )
        return (
            f"OK: donation {self.donation_id} is entry {self.seq} of chain {self.chain_id}, "
            f"the receipt opens its commitment, and checkpoint {size} covers it{pinned}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "donation_id": self.donation_id,
            "chain_id": self.chain_id,
            "seq": self.seq,
            "broken_seq": self.broken_seq,
            "reason": self.reason,
            "checkpoint": self.checkpoint,
        }


_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_RECEIPT_SHAPE: Final[dict[str, dict[str, tuple[type, ...]]]] = {
    "donation": {
        "id": (str,),
        "organisation_id": (str,),
        "fund_id": (str, type(None)),
        "amount": (int,),
        "currency": (str,),
        "status": (str,),
        "completed_at": (str, type(None)),
    },
    "entry": {"chain_id": (str,), "seq": (int,), "id": (str,), "entry_hash": (str,)},
    "commitment": {
        "scheme": (str,),
        "salt": (str, type(None)),
        "secret": (str,),
        "value": (str, type(None)),
    },
    "checkpoint": {"note": (str,), "key": (str,)},
}


def _check_receipt_shape(receipt: Any) -> None:
    """A receipt has the members and JSON types of §7, or it is unreadable (exit 2)."""
    if not isinstance(receipt, Mapping) or receipt.get("format") != RECEIPT_FORMAT:
        raise ExportFormatError(f"not an Amply receipt (format must be {RECEIPT_FORMAT!r})")
    for part, members in _RECEIPT_SHAPE.items():
        value = receipt.get(part)
        if not isinstance(value, Mapping):
            raise ExportFormatError(f"the receipt has no {part!r} object")
        for name, kinds in members.items():
            if name not in value or type(value[name]) not in kinds:
                names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                raise ExportFormatError(f"the receipt's {part}.{name} must be {names}")
            if type(value[name]) is str and part != "checkpoint" and not is_text(value[name]):
                raise ExportFormatError(f"the receipt's {part}.{name} is not Unicode text")
    opening = receipt["commitment"]
    if opening["scheme"] != COMMITMENT_VERSION:
        raise ExportFormatError(f"unknown commitment scheme (expected {COMMITMENT_VERSION!r})")
    if (opening["salt"] is None) != (opening["value"] is None):
        raise ExportFormatError("the receipt's salt and value are both null or both strings")
    if _HEX64.fullmatch(opening["secret"]) is None or (
        opening["salt"] is not None and _HEX64.fullmatch(opening["salt"]) is None
    ):
        raise ExportFormatError("the receipt's salt and secret are 64 lowercase hex digits")
    if (
        receipt["entry"]["seq"] < 1
        or not -MAX_AMOUNT <= receipt["donation"]["amount"] <= MAX_AMOUNT
    ):
        raise ExportFormatError("the receipt's seq or amount is out of range")


Chain = Callable[[frozenset[int]], tuple[VerificationResult, Mapping[int, Any]]]


def _receipt(
    receipt: Mapping[str, Any], chain: Chain, *, keys: Sequence[VerifierKey]
) -> ReceiptResult:
    _check_receipt_shape(receipt)
    donation, entry, opening = receipt["donation"], receipt["entry"], receipt["commitment"]
    seq = entry["seq"]
    result = ReceiptResult(ok=True, donation_id=donation["id"], chain_id=entry["chain_id"], seq=seq)
    checkpoint: Checkpoint | CheckpointError
    try:
        checkpoint = parse_checkpoint(receipt["checkpoint"]["note"])
        wanted = frozenset({seq, checkpoint.size})
    except CheckpointError as error:
        checkpoint, wanted = error, frozenset({seq})
    export, entries = chain(wanted)
    if not export.ok:
        return _receipt_fails(
            result, f"the export does not verify: {export.verdict()}", seq=export.broken_seq
        )
    if export.chain_id != entry["chain_id"] or donation["organisation_id"] != export.chain_id:
        return _receipt_fails(
            result, f"the receipt is not for this export's chain ({export.chain_id})", seq=seq
        )
    if seq > export.head_seq:
        return _receipt_fails(result, f"the export has no entry {seq}", seq=seq)
    problem = _entry_problem(entries[seq], donation=donation, entry=entry, opening=opening)
    if problem is not None:
        return _receipt_fails(result, problem, seq=seq)
    try:
        if isinstance(checkpoint, CheckpointError):
            raise checkpoint
        result.checkpoint = _receipt_checkpoint(
            checkpoint,
            receipt["checkpoint"]["key"],
            export=export,
            entries=entries,
            seq=seq,
            keys=keys,
        )
    except CheckpointError as error:
        return _receipt_fails(result, f"the receipt's checkpoint: {error}", seq=None)
    return result


def verify_receipt(
    receipt: Mapping[str, Any], export: Mapping[str, Any], *, keys: Sequence[VerifierKey] = ()
) -> ReceiptResult:
    """Check that the receipt's donation is an entry of the (verified) export, that the
    receipt opens the entry's commitment, and that the receipt's checkpoint is consistent
    with the export and signed (§7). :class:`ExportFormatError` if either is unreadable."""

    def chain(wanted: frozenset[int]) -> tuple[VerificationResult, Mapping[int, Any]]:
        result = verify_export(export, keys=keys)
        entries = export["entries"]
        return result, {seq: entries[seq - 1] for seq in wanted if 1 <= seq <= len(entries)}

    return _receipt(receipt, chain, keys=keys)


def verify_receipt_file(
    receipt: Mapping[str, Any],
    export: Path,
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> ReceiptResult:
    """:func:`verify_receipt` against an export file, read as a stream."""

    def chain(wanted: frozenset[int]) -> tuple[VerificationResult, Mapping[int, Any]]:
        run = _StreamedExport(export, progress=progress, workers=workers, capture=_Capture(wanted))
        return run.run(keys=keys), run.captured

    _check_receipt_shape(receipt)  # before reading a long export
    return _receipt(receipt, chain, keys=keys)


def _receipt_fails(result: ReceiptResult, reason: str, *, seq: int | None) -> ReceiptResult:
    result.ok, result.reason, result.broken_seq = False, reason, seq
    return result


def _entry_problem(
    public: Mapping[str, Any],
    *,
    donation: Mapping[str, Any],
    entry: Mapping[str, Any],
    opening: Mapping[str, Any],
) -> str | None:
    """Rules 2 and 3 of §7, on the export's entry at the receipt's seq."""
    if (public["id"], public["entry_hash"]) != (entry["id"], entry["entry_hash"]):
        return f"entry {public['seq']} of the export is not the receipt's entry"
    try:
        metadata = loads_strict(public["metadata"].encode(), what="the entry's metadata")
    except (ExportFormatError, UnicodeEncodeError):
        metadata = None
    if not isinstance(metadata, dict):
        return f"entry {public['seq']} has metadata that is not a JSON object"
    if public["type"] != "donation_received" or metadata.get("donation_id") != donation["id"]:
        return f"entry {public['seq']} does not record this donation"
    if (public["amount"], public["currency"]) != (donation["amount"], donation["currency"]):
        return "the entry's amount or currency is not the receipt's"
    committed = metadata.get("receipt_commitment")
    if opening["salt"] is None:
        if committed is not None:
            return (
                "the receipt has no salt, but the entry carries a commitment: only a receipt "
                "that opens it proves this donation"
            )
        return None
    commitment = receipt_commitment(
        donation_id=donation["id"], salt=opening["salt"], secret=opening["secret"]
    )
    if committed != commitment:
        return "the receipt does not open the entry's commitment: it is not this donor's receipt"
    if opening["value"] != commitment:
        return "the receipt's commitment value is not the commitment of its salt and secret"
    return None


def _receipt_checkpoint(
    checkpoint: Checkpoint,
    key: str,
    *,
    export: VerificationResult,
    entries: Mapping[int, Any],
    seq: int,
    keys: Sequence[VerifierKey],
) -> dict[str, Any]:
    """Rule 4 of §7: the receipt's checkpoint covers the entry, agrees with the export, and
    is signed by a trusted key (the export's own pinned keys, or the receipt's key)."""
    if checkpoint.chain_id != export.chain_id:
        raise CheckpointError(f"it is for another chain ({checkpoint.origin})")
    if checkpoint.size < seq:
        raise CheckpointError(f"it covers {checkpoint.size} entries, not entry {seq}")
    if checkpoint.size > export.head_seq:
        raise CheckpointError("it is newer than the export: download a newer export")
    if entries[checkpoint.size]["entry_hash"] != checkpoint.root_hash:
        raise CheckpointError(
            f"the export's entry {checkpoint.size} is not the one Amply signed: "
            "the history was rewritten"
        )
    signer = checkpoint.signer(list(keys) or [VerifierKey.parse(key)])
    return {"size": checkpoint.size, "key": signer.encode(), "pinned": bool(keys)}
