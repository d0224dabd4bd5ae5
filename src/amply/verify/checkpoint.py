"""Signed checkpoints: ``docs/ledger-format.md`` §6.

A checkpoint is Amply's signature on a chain's head: a signed note (c2sp.org/signed-note)
whose text is a checkpoint (c2sp.org/tlog-checkpoint) of four lines: origin, size, root hash
and time (§6.1, :func:`checkpoint_body`, :func:`parse_checkpoint`). Its signature lines are
Ed25519 signatures by keys published as verifier keys (§6.2, :class:`VerifierKey`,
:meth:`Checkpoint.signer`); a key that a key list says retired vouches only for checkpoints
dated before it retired (§6.3).

Standard library, plus the ``cryptography`` package for Ed25519: the one dependency of
:mod:`amply.verify` outside the standard library.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from amply.verify.chain import INT64_MAX
from amply.verify.crypto import HASH_PREFIX
from amply.verify.parse import is_text


class CheckpointError(ValueError):
    """A checkpoint or key that is malformed, or whose signature does not hold."""


ED25519: Final = 0x01  # the signed-note signature type of Ed25519
_SIGNATURE_LINE: Final = "\u2014 "  # an em dash and a space open each signature line
CHECKPOINT_TIME: Final = "time "  # the extension line that dates a checkpoint
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_KEY_SHAPE: Final = re.compile(r"[^+/\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+={0,2}")


# The checkpoint's time line and key lists' times: the canonical form of §2.3.
_TIMESTAMP: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


# -- The text (§6.1) -------------------------------------------------------------------------------


def checkpoint_body(*, origin: str, size: int, root_hash: str, time: str) -> str:
    """The text a checkpoint signs: origin, size, base64 root hash, then ``time …``."""
    root = base64.b64encode(bytes.fromhex(root_hash.removeprefix(HASH_PREFIX))).decode()
    return f"{origin}\n{size}\n{root}\n{CHECKPOINT_TIME}{time}\n"


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


def _b64(text: str) -> bytes:
    """Standard base64 with padding (RFC 4648 §4), nothing else."""
    if _BASE64.fullmatch(text) is None or len(text) % 4:
        raise CheckpointError("not standard padded base64")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise CheckpointError(f"not base64: {error}") from error


# -- Keys (§6.2) and when they vouch (§6.3) --------------------------------------------------------


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


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte id of an Ed25519 note key: SHA-256(name, newline, 0x01, public key)[:4]."""
    return sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def looks_like_key(text: str) -> bool:
    """Whether a ``--key`` value is a verifier key rather than a file name (§4.2): a name with
    no ``/``, ``+`` or space, ``+``, 8 lowercase hex digits, ``+``, base64."""
    return _KEY_SHAPE.fullmatch(text) is not None


def _before(time: str | None, limit: str) -> bool:
    """Whether a checkpoint's time line is earlier than ``limit`` (both RFC 3339)."""
    if time is None:
        return False
    try:
        return _instant(time) < _instant(limit)
    except ValueError as error:
        raise CheckpointError(f"unreadable time {time!r} or {limit!r}") from error


def _instant(text: str) -> datetime:
    """An RFC 3339 time with its offset (``Z`` or ``±hh:mm``)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment
