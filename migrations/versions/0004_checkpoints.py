"""Signed checkpoints of chain heads, the keys that signed them, and donor receipt salts.

Revision ID: 0004_checkpoints
Revises: 0003_donations
Create Date: 2026-11-21

A checkpoint is Amply's Ed25519 signature on a chain's head (docs/ledger-format.md §6). The
database cannot check a signature, but it checks everything else a checkpoint says: that the
chain holds exactly that entry at that position, and that the signed text says so. Each rule
is headed by what it guards.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0004_checkpoints"
down_revision: str | None = "0003_donations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


TABLES = r"""
-- Every key that ever signed a checkpoint stays listed, for good: after a rotation, auditors
-- holding old checkpoints can still check them against GET /v1/public/keys.
CREATE TABLE checkpoint_keys (
    -- The verifier key of c2sp.org/signed-note: <name>+<hex key id>+<base64(0x01 || key)>.
    verifier_key text PRIMARY KEY
        CHECK (verifier_key ~ '^[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE checkpoint_keys IS
    'Public keys that signed checkpoints. Insert-only: a retired key is still listed.';

CREATE TABLE ledger_checkpoints (
    chain_id text NOT NULL REFERENCES ledger_chains (id),
    size bigint NOT NULL CHECK (size >= 1),
    root_hash text NOT NULL,
    issued_at timestamptz NOT NULL,
    verifier_key text NOT NULL REFERENCES checkpoint_keys (verifier_key),
    -- The signed note, byte for byte as it was published.
    note text NOT NULL,
    PRIMARY KEY (chain_id, size)
);

COMMENT ON TABLE ledger_checkpoints IS
    'Signed checkpoints of chain heads (c2sp.org/tlog-checkpoint). Insert-only.';
"""

RECEIPTS = r"""
-- A donor's receipt opens the salted commitment on the donation's public entry
-- (docs/ledger-format.md §7). The salt is fixed when the donation is created: changing it
-- would take from the donor the means to prove the entry is theirs. (NULL for donations
-- created before receipts carried commitments.)
ALTER TABLE donations ADD COLUMN receipt_salt text CHECK (receipt_salt ~ '^[0-9a-f]{64}$');
"""

PRIVILEGES = """
-- The service signs and stores checkpoints; it can never alter or withdraw one.
REVOKE ALL ON checkpoint_keys, ledger_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON checkpoint_keys, ledger_checkpoints TO amply_app;
REVOKE ALL ON FUNCTION ledger_checkpoints_guard(), donations_keep_receipt_salt() FROM PUBLIC;
"""


def upgrade() -> None:
    for block in (
        TABLES,
        load("ledger_checkpoints_guard/0004"),
        load("triggers/ledger_checkpoints_guard/0004"),
        load("triggers/ledger_checkpoints_no_update_delete/0004"),
        load("triggers/ledger_checkpoints_no_truncate/0004"),
        load("triggers/checkpoint_keys_no_update_delete/0004"),
        load("triggers/checkpoint_keys_no_truncate/0004"),
        RECEIPTS,
        load("donations_keep_receipt_salt/0004"),
        load("triggers/donations_keep_receipt_salt/0004"),
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("forward-only: restore a backup to go back")
