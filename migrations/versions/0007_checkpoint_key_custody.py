"""Checkpoint key custody: only the owner publishes a signing key, a key's status says which
checkpoints it may vouch for, and a checkpoint must be signed by the active key.

Revision ID: 0007_checkpoint_key_custody
Revises: 0006_faster_appends
Create Date: 2026-12-07

Before this, the service role could insert a key of its own into ``checkpoint_keys``: the
public key list would then vouch for exports forged offline with it. Now keys are installed by
the schema owner (``amply serve`` does it after migrating, or ``amply keys install``), and the
database refuses any checkpoint whose row or signature line names another key than the one
active. PostgreSQL has no Ed25519, so it cannot check the signature's 64 bytes; the service
signs the note itself, with the key whose id the database checks here. Each rule is headed by
what it guards.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0007_checkpoint_key_custody"
down_revision: str | None = "0006_faster_appends"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


STATUS = r"""
-- A key's status tells verifiers which checkpoints it vouches for (docs/ledger-format.md §6):
-- 'active' (the one key that signs now), 'retired' (checkpoints issued before retired_at),
-- 'revoked' (none: it may be in someone else's hands). Keys listed before this migration
-- signed checkpoints until now: the one that signed the newest checkpoint (or, with none, the
-- newest key) stays active; the others retire now.
ALTER TABLE checkpoint_keys
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'retired', 'revoked')),
    ADD COLUMN activated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN retired_at timestamptz,
    ADD COLUMN revoked_at timestamptz,
    ADD CONSTRAINT checkpoint_keys_status_times CHECK (
        (status = 'active' AND retired_at IS NULL AND revoked_at IS NULL)
        OR (status = 'retired' AND retired_at IS NOT NULL AND revoked_at IS NULL)
        OR (status = 'revoked' AND revoked_at IS NOT NULL)
    );
UPDATE checkpoint_keys SET activated_at = created_at;
UPDATE checkpoint_keys SET status = 'retired', retired_at = now()
 WHERE verifier_key IS DISTINCT FROM coalesce(
     (SELECT verifier_key FROM ledger_checkpoints ORDER BY issued_at DESC LIMIT 1),
     (SELECT verifier_key FROM checkpoint_keys ORDER BY created_at DESC LIMIT 1));

-- One key signs at a time.
CREATE UNIQUE INDEX checkpoint_keys_one_active ON checkpoint_keys ((true))
    WHERE status = 'active';
"""

PRIVILEGES = """
-- The service reads keys and stores checkpoints; only the owner installs, retires or revokes.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON checkpoint_keys FROM amply_app;
GRANT SELECT ON checkpoint_keys TO amply_app;
REVOKE ALL ON FUNCTION checkpoint_keys_guard_update(), ledger_checkpoints_signed_by_active_key()
    FROM PUBLIC;
"""


def upgrade() -> None:
    for block in (
        load("triggers/checkpoint_keys_no_update_delete/0007"),
        STATUS,
        load("checkpoint_keys_guard_update/0007"),
        load("triggers/checkpoint_keys_no_delete/0007"),
        load("triggers/checkpoint_keys_guard_update/0007"),
        load("ledger_checkpoints_signed_by_active_key/0007"),
        load("triggers/ledger_checkpoints_signed_by_active_key/0007"),
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    op.execute("""
        DROP TRIGGER ledger_checkpoints_signed_by_active_key ON ledger_checkpoints;
        DROP FUNCTION ledger_checkpoints_signed_by_active_key();
        DROP TRIGGER checkpoint_keys_guard_update ON checkpoint_keys;
        DROP TRIGGER checkpoint_keys_no_delete ON checkpoint_keys;
        DROP FUNCTION checkpoint_keys_guard_update();
    """)
    # The trigger this migration replaced, as 0004 installed it.
    op.execute(load("triggers/checkpoint_keys_no_update_delete/0004"))
    op.execute("""
        DROP INDEX checkpoint_keys_one_active;
        ALTER TABLE checkpoint_keys DROP CONSTRAINT checkpoint_keys_status_times,
            DROP COLUMN status, DROP COLUMN activated_at, DROP COLUMN retired_at,
            DROP COLUMN revoked_at;
        GRANT INSERT ON checkpoint_keys TO amply_app;
    """)
