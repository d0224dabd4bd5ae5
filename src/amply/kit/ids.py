"""Prefixed random identifiers, Stripe style (``org_…``, ``led_…``).

Every id in Amply is made here, so the set of prefixes is the list of resource kinds.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final, Literal

IdPrefix = Literal[
    "org",
    "fund",
    "don",
    "led",
    "jrn",
    "usr",
    "wal",
    "txn",
    "req",
    "card",
    "key",
    "plat",
    "ses",
    "sev",
    "rfd",
]

PREFIXES: Final[frozenset[str]] = frozenset(IdPrefix.__args__)  # type: ignore[attr-defined]

_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TOKEN_LENGTH: Final = 24  # 24 base62 characters carry ~142 bits of randomness
_TOKEN_SPACE: Final = 62**_TOKEN_LENGTH
_ID_PATTERN: Final = re.compile(r"^([a-z]+)_([0-9A-Za-z]{1,64})$")


def generate_id(prefix: IdPrefix) -> str:
    """Return a new random id such as ``led_4fG7…`` for the given resource prefix."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    # One uniform draw from all 62^24 tokens, written in base 62 (zero-padded to 24 places).
    return f"{prefix}_{base62(secrets.randbelow(_TOKEN_SPACE), length=_TOKEN_LENGTH)}"


def base62(number: int, *, length: int) -> str:
    """``number`` in base 62, zero-padded to ``length`` digits (the low ``length`` digits)."""
    digits = []
    for _ in range(length):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "".join(digits)


def has_prefix(value: str, prefix: IdPrefix) -> bool:
    """True when ``value`` is a well-formed id of the given kind."""
    match = _ID_PATTERN.match(value)
    return match is not None and match.group(1) == prefix


SandboxKind = Literal["acct", "pi", "ch", "re", "evt", "po", "txn"]


def sandbox_id(kind: SandboxKind) -> str:
    """An id of a sandbox stand-in for a Stripe object, such as ``pi_sandbox_4fG7…``.

    Stripe's own prefix keeps the sandbox's events shaped like Stripe's; ``sandbox`` in
    the id keeps them from ever being mistaken for real ones.
    """
    return f"{kind}_sandbox_{base62(secrets.randbelow(_TOKEN_SPACE), length=_TOKEN_LENGTH)}"


def derived_id(prefix: IdPrefix, *, seed: bytes) -> str:
    """An id computed from ``seed`` (an idempotency key and its scope): retries that carry
    the same key name the same resource, also at Stripe, even if a first attempt was lost.
    """
    number = int.from_bytes(hashlib.sha256(b"amply/derived-id\0" + seed).digest()[:18], "big")
    return f"{prefix}_{base62(number, length=_TOKEN_LENGTH)}"
