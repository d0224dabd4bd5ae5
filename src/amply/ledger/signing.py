"""The checkpoint signer's key: Ed25519, in the text forms of c2sp.org/signed-note.

A signer key is ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>``, the form
Go's ``golang.org/x/mod/sumdb/note`` reads; its public half is a
:class:`~amply.verify.VerifierKey`. Verifying needs only :mod:`amply.verify`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from amply.verify import ED25519, CheckpointError, VerifierKey, key_id, valid_key_name

_PREFIX: Final = "PRIVATE+KEY+"
_SIGNATURE_LINE: Final = "\u2014 "


@dataclass(frozen=True)
class NoteSigner:
    """A named Ed25519 key that signs notes."""

    name: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        if not valid_key_name(name):
            raise CheckpointError(f"a key name has no spaces and no '+': {name!r}")
        return cls(name=name, private_key=Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> NoteSigner:
        if not text.strip().startswith(_PREFIX):
            raise CheckpointError("a signer key reads PRIVATE+KEY+<name>+<key id>+<key>")
        name, _, rest = text.strip().removeprefix(_PREFIX).partition("+")
        hex_id, _, encoded = rest.partition("+")  # base64 may itself hold '+'
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as error:
            raise CheckpointError("the signer key is not base64") from error
        if len(raw) != 33 or raw[0] != ED25519 or not valid_key_name(name):
            raise CheckpointError("the signer key is not an Ed25519 key")
        signer = cls(name=name, private_key=Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.verifier_key.key_id.hex() != hex_id:
            raise CheckpointError("the signer key's id does not match its name and key")
        return signer

    @property
    def verifier_key(self) -> VerifierKey:
        public = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return VerifierKey(name=self.name, public_key=public)

    def encode(self) -> str:
        """The secret text form, for a key file or a setting."""
        seed = self.private_key.private_bytes_raw()
        key = base64.b64encode(bytes([ED25519]) + seed).decode()
        return f"{_PREFIX}{self.name}+{self.verifier_key.key_id.hex()}+{key}"

    def sign(self, text: str) -> str:
        """``text`` (lines ending in a newline) as a signed note with this key's signature."""
        if not text.endswith("\n") or "\n\n" in text:
            raise CheckpointError("a note's text is non-empty lines, each ending in a newline")
        public = self.verifier_key
        signature = self.private_key.sign(text.encode())
        encoded = base64.b64encode(key_id(public.name, public.public_key) + signature).decode()
        return f"{text}\n{_SIGNATURE_LINE}{self.name} {encoded}\n"
