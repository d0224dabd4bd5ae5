"""Installing and revoking checkpoint signing keys, as the schema owner.

The service role may only read ``checkpoint_keys`` (migration 0007): a key Amply vouches for
is published by whoever holds ``DATABASE_MIGRATION_URL``. ``amply serve`` installs the
configured key after migrating; ``amply keys install`` and ``amply keys revoke`` do it alone.
"""

from __future__ import annotations

import psycopg

from amply.models.ledger import KeyStatus
from amply.verify import VerifierKey


class KeyCustodyError(Exception):
    """The key cannot be installed or revoked as asked; the message says why."""


def _status(connection: psycopg.Connection[tuple[object, ...]], key: str) -> str | None:
    row = connection.execute(
        "SELECT status FROM checkpoint_keys WHERE verifier_key = %s", (key,)
    ).fetchone()
    return None if row is None else str(row[0])


def install_key(owner_url: str, key: VerifierKey) -> bool:
    """Make ``key`` the active signing key, retiring the one before. Returns False if it was
    active already. A retired or revoked key never signs again."""
    encoded = key.encode()
    with psycopg.connect(owner_url) as connection:
        connection.execute("LOCK TABLE checkpoint_keys IN SHARE ROW EXCLUSIVE MODE")
        status = _status(connection, encoded)
        if status == KeyStatus.ACTIVE:
            return False
        if status is not None:
            raise KeyCustodyError(
                f"the checkpoint key {encoded} is {status}: a key that stopped signing never "
                "signs again; make a new one with `amply keygen`"
            )
        connection.execute(
            "UPDATE checkpoint_keys SET status = 'retired', retired_at = now() "
            "WHERE status = 'active'"
        )
        connection.execute(
            "INSERT INTO checkpoint_keys (verifier_key, status) VALUES (%s, 'active')",
            (encoded,),
        )
    return True


def revoke_key(owner_url: str, key: VerifierKey) -> None:
    """Mark ``key`` revoked: verifiers trust none of its checkpoints from now on."""
    encoded = key.encode()
    with psycopg.connect(owner_url) as connection:
        status = _status(connection, encoded)
        if status is None:
            raise KeyCustodyError(f"no checkpoint key {encoded} is listed")
        if status != KeyStatus.REVOKED:
            connection.execute(
                "UPDATE checkpoint_keys SET status = 'revoked', revoked_at = now() "
                "WHERE verifier_key = %s",
                (encoded,),
            )
