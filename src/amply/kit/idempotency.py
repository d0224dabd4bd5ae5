"""Idempotency keys: a retried request gets the first response, and moves nothing twice.

A key belongs to a caller's scope (an organisation's API keys, a user, or the public). The
first request with a key takes an advisory lock on it for its transaction, runs, and stores
its response in the same transaction; a concurrent retry waits on the lock and then finds
the stored response. A failed request stores nothing, so its retry runs afresh. The same key
with a different request is refused with 409.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.errors import AmplyError, Conflict

HEADER: Final = "Idempotency-Key"
_KEY_PATTERN: Final = re.compile(r"^[\x21-\x7e]{16,255}$")

_LOCK_SQL = text("SELECT pg_advisory_xact_lock(hashtext(:scope), hashtext(:key))")
_FIND_SQL = text("""
    SELECT request_hash, status_code, response_body FROM idempotency_keys
    WHERE scope = :scope AND key = :key AND expires_at > now()
""")
_PURGE_SQL = text("DELETE FROM idempotency_keys WHERE scope = :scope AND key = :key")
# Expired records are swept a batch at a time by the requests that store new ones.
_SWEEP_SQL = text("""
    DELETE FROM idempotency_keys WHERE ctid IN (
        SELECT ctid FROM idempotency_keys WHERE expires_at <= now() LIMIT 100
    )
""")
_STORE_SQL = text("""
    INSERT INTO idempotency_keys (scope, key, request_hash, status_code, response_body,
                                  expires_at)
    VALUES (:scope, :key, :request_hash, :status_code, CAST(:body AS jsonb),
            now() + make_interval(secs => :lifetime))
""")


class InvalidIdempotencyKey(AmplyError):
    status_code = 400
    default_code = "idempotency_key_invalid"


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """One request's key, in its caller's scope, and the fingerprint of what it asked."""

    scope: str
    key: str
    fingerprint: bytes

    @property
    def seed(self) -> bytes:
        """Bytes naming this key in its scope, for ids derived from it."""
        return f"{self.scope}\0{self.key}".encode()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


def check_key(key: str) -> str:
    if not _KEY_PATTERN.match(key):
        raise InvalidIdempotencyKey(
            f"The {HEADER} header must be 16 to 255 visible ASCII characters (a UUID is ideal).",
            param=HEADER,
        )
    return key


def fingerprint(*, method: str, path: str, body: object) -> bytes:
    """A digest of what a request asks for: its route and its parsed body."""
    canonical = json.dumps(
        {"method": method, "path": path, "body": body}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).digest()


async def begin(session: AsyncSession, *, request: IdempotentRequest) -> StoredResponse | None:
    """Lock the key for this transaction; return the first response if there was one."""
    params = {"scope": request.scope, "key": request.key}
    await session.execute(_LOCK_SQL, params)
    row = (await session.execute(_FIND_SQL, params)).first()
    if row is None:
        # An expired record may still occupy the key: it is forgotten, as Stripe does.
        await session.execute(_PURGE_SQL, params)
        return None
    if bytes(row.request_hash) != request.fingerprint:
        raise Conflict(
            f"This {HEADER} was already used with a different request; use a new key.",
            code="idempotency_key_reused",
            param=HEADER,
        )
    return StoredResponse(status_code=row.status_code, body=row.response_body)


async def remember(
    session: AsyncSession,
    *,
    request: IdempotentRequest,
    status_code: int,
    body: dict[str, Any],
    lifetime_seconds: int,
) -> None:
    """Store the response to replay to retries of ``request``, until the key expires."""
    await session.execute(_SWEEP_SQL)
    await session.execute(
        _STORE_SQL,
        {
            "scope": request.scope,
            "key": request.key,
            "request_hash": request.fingerprint,
            "status_code": status_code,
            "body": json.dumps(body),
            "lifetime": lifetime_seconds,
        },
    )
