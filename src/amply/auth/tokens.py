"""Bearer secrets: session tokens and API keys, their stored digests, and CSRF tokens.

A secret is 256 random bits in base 62 behind a prefix that says what it is (``sess_``,
``sk_test_``, ``sk_live_``). Only its SHA-256 digest is stored: the secrets are random, so a
slow password hash would add nothing but latency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from amply.kit.ids import base62

SESSION_TOKEN_PREFIX: Final = "sess_"  # noqa: S105 - a prefix, not a secret
API_KEY_PREFIXES: Final = ("sk_test_", "sk_live_")
_SECRET_LENGTH: Final = 43  # 43 base62 characters carry 256 bits
_CSRF_CONTEXT: Final = b"amply-csrf/v1"


def new_secret(prefix: str) -> str:
    """A fresh random secret such as ``sess_7Gf…``."""
    return prefix + base62(secrets.randbits(256), length=_SECRET_LENGTH)


def digest(secret: str) -> bytes:
    """What the database stores and looks a secret up by."""
    return hashlib.sha256(secret.encode()).digest()


def csrf_token(session_token: str) -> str:
    """The CSRF token bound to a session: an HMAC keyed by the session's own secret.

    Only someone who holds the session token (in an ``HttpOnly`` cookie, so not a script on
    another site) can compute it, and it changes whenever the session does.
    """
    mac = hmac.new(session_token.encode(), _CSRF_CONTEXT, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def csrf_token_matches(session_token: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(session_token).encode(), presented.encode())
