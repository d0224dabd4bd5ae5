"""Faster appends: the same ledger rules, checked with less work per entry.

Revision ID: 0006_faster_appends
Revises: 0005_wallets
Create Date: 2026-11-21

Every rule of 0001_ledger_core still holds, enforced by the same trigger (it keeps its name,
``ledger_entries_assign``) and backstopped by the same constraints; only the work per append
shrinks. PostgreSQL builds every expression of a PL/pgSQL function afresh in each transaction
(checking the caller's right to run each function it calls) and parses every CHECK constraint
afresh in each statement, and an append is usually a transaction of one statement of one row,
so an append costs roughly what its expressions and constraints count:

- The hash builds the preimage with one ``format()`` instead of 48 concatenations, in
  ``ledger_entry_hash_of()``, which takes created_at as canonical text, so that the trigger
  formats the timestamp once; ``ledger_entry_hash()`` keeps its signature and calls it. The
  bytes are the same (docs/ledger-format.md §2, checked against the committed test vectors).
- The insert trigger tests everything the caller supplies in one expression, which then
  takes the chain's lock; only when that test fails does it test the rules one by one, to
  name the first one broken, with the same errors as before.
- It reads the chain's last entry with one index probe. A chain is looked up in
  ``ledger_chains`` only while it has no entry yet: an entry exists only for a chain that
  existed, and chains are never deleted.
- ``amount <> 0`` moves from a CHECK constraint into that trigger, beside the other format
  rules of caller-supplied fields (the error still names ``ledger_entries_amount_check``).
- The trigger runs with its caller's rights instead of its owner's, which spares a
  search_path switch per append (the comment on the function says why that is safe).

Downgrading restores the definitions of 0001_ledger_core.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0006_faster_appends"
down_revision: str | None = "0005_wallets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's definition, one file per version: migrations/sql/<function>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


NO_SHADOWS = """
-- Honest hashes, with ledger_entries_assign() running as its caller: the service's role must not be
-- able to create a function or operator that a search_path of its choosing would put in place
-- of a built-in one. PostgreSQL 15 and later grant no such right by default; refuse to
-- migrate a database where it was granted.
DO $$
DECLARE
    schema_name text;
BEGIN
    IF has_database_privilege('amply_app', current_database(), 'CREATE') THEN
        RAISE EXCEPTION 'amply_app may create schemas in this database: '
            'REVOKE CREATE ON DATABASE % FROM amply_app, PUBLIC', current_database();
    END IF;
    SELECT nspname INTO schema_name FROM pg_namespace
     WHERE has_schema_privilege('amply_app', oid, 'CREATE')
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'amply_app may create objects in schema %: '
            'REVOKE CREATE ON SCHEMA % FROM amply_app, PUBLIC', schema_name, schema_name;
    END IF;
END $$;
"""

AMOUNT_CHECK = """
-- A non-zero amount is now checked by ledger_entries_assign(), with the other formats.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_amount_check;
"""

PREVIOUS_AMOUNT_CHECK = """
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_amount_check CHECK (amount <> 0);
"""


def upgrade() -> None:
    for block in (
        NO_SHADOWS,
        load("ledger_entry_hash_of/0006"),
        load("ledger_entry_hash/0006"),
        load("ledger_entries_assign/0006"),
        AMOUNT_CHECK,
    ):
        op.execute(block)


def downgrade() -> None:
    for block in (
        PREVIOUS_AMOUNT_CHECK,
        load("ledger_entries_assign/0001"),
        load("ledger_entry_hash/0001"),
        "DROP FUNCTION ledger_entry_hash_of(text, bigint, text, text, bigint, text, bigint, "
        "text, text, text, text);",
    ):
        op.execute(block)
