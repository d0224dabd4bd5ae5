"""Running totals of the public chains, kept outside the append path.

Revision ID: 0015_chain_totals
Revises: 0014_stripe_outside_transactions
Create Date: 2026-12-08

``chain_totals`` holds, per chain, the sums of its entries through ``through_seq``: one row per
(currency, entry type, UTC month of ``created_at``, fund named by the entry's public metadata,
``''`` for none), with the sum of their amounts and how many there are. The public totals
(``GET /v1/public/organisations/{id}``) and the site's organisation page read these rows and
add only the entries after ``through_seq`` (a range of the ``(chain_id, seq)`` index), so no
request sums a whole chain. The background job (``amply.services.chain_totals``, run by the
checkpoint signer's loop) advances them in short transactions; appends never touch them.

The ledger is append-only, so the sums through a seq never change: a row can only be wrong if
its writer is. Hence:

- each writer writes every row of the chain with the absolute sums through its ``through_seq``
  (stored sums + the entries after them), by an UPSERT that changes a row only if the stored
  ``through_seq`` is lower, so two writers never double count and an older one never undoes a
  newer one;
- a row's key never changes and its ``through_seq`` only moves forward (``chain_totals_guard``);
- the service's role may read, insert and update the rows, nothing else (no DELETE, TRUNCATE).
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0015_chain_totals"
down_revision: str | None = "0014_stripe_outside_transactions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


TABLE = """
CREATE TABLE chain_totals (
    chain_id text NOT NULL REFERENCES ledger_chains (id),
    currency text NOT NULL,
    type text NOT NULL,
    month text NOT NULL CHECK (month ~ '^[0-9]{4}-[0-9]{2}$'),
    fund_id text NOT NULL DEFAULT '',
    total numeric NOT NULL,
    entries bigint NOT NULL CHECK (entries > 0),
    through_seq bigint NOT NULL CHECK (through_seq > 0),
    PRIMARY KEY (chain_id, currency, type, month, fund_id)
);
"""

PRIVILEGES = """
-- chain_totals_guard() runs only as a trigger.
REVOKE ALL ON FUNCTION chain_totals_guard() FROM PUBLIC;

-- Least privilege: the service maintains the totals; nobody but the owner deletes them.
REVOKE ALL ON chain_totals FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON chain_totals TO amply_app;
"""


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(load("chain_totals_guard/0015"))
    op.execute(load("triggers/chain_totals_guard/0015"))
    op.execute(PRIVILEGES)


def downgrade() -> None:
    op.execute("DROP TABLE chain_totals")
    op.execute("DROP FUNCTION chain_totals_guard()")
