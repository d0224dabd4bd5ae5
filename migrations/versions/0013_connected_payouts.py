"""Payouts of connected accounts, each named by its row; the sandbox's balance transactions.

Revision ID: 0013_connected_payouts
Revises: 0012_charge_reversals
Create Date: 2026-12-07

Stripe pays an organisation's Stripe balance to its bank (automatic payouts of the connected
account). Each payout is a row of ``connected_payouts``, keyed by Stripe's payout id, which
names the entries it put on the organisation's public chain:

- ``sent_entry_id``: the ``payout_sent`` entry (-amount), appended when Stripe created the
  payout, because that is when Stripe debits the balance (the payout's balance transaction);
- ``failed_entry_id``: the ``payout_failed`` entry (+amount), appended when the payout failed
  or was canceled, because Stripe then credits the balance back (``payout_failure`` /
  ``payout_cancel``).

The rules (each headed by the invariant it guards, SPEC §4):

- the payout's terms (id, organisation, account, amount, currency, created_at) never change;
- each entry reference is set once, is UNIQUE, and names an entry of exactly its type, on the
  organisation's chain, for the payout's amount (negative when sent) and currency; a payout
  fails only after it was sent;
- no money without its record: ``ledger_entry_recorded_by_payout()`` (0011 refused every
  payout entry) now accepts a ``payout_sent`` / ``payout_failed`` entry only when its payout
  row names it, on the row's organisation's chain;
- the service's role may read, insert and update only the status and entry columns; it may
  not delete a payout.

``sandbox_balance_transactions`` holds what the sandbox simulates Stripe's balance to be (a
charge with its fee, a refund, a payout, a payout's failure), written when the sandbox
simulates it and never changed, so that ``amply reconcile`` compares the chain in sandbox mode
with something the chain was not derived from.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0013_connected_payouts"
down_revision: str | None = "0012_charge_reversals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


TABLES = """
CREATE TABLE connected_payouts (
    id text PRIMARY KEY CHECK (id ~ '^po_[0-9A-Za-z_]{1,100}$'),
    organisation_id text NOT NULL REFERENCES organisations (id),
    stripe_account_id text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL
        CHECK (status IN ('pending', 'in_transit', 'paid', 'failed', 'canceled')),
    failure_code text,
    sent_entry_id text REFERENCES ledger_entries (id),
    failed_entry_id text REFERENCES ledger_entries (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Linear money: a payout returns to the balance only after it left it.
    CONSTRAINT connected_payouts_fails_after_sent
        CHECK (failed_entry_id IS NULL OR sent_entry_id IS NOT NULL)
);
-- One ledger entry records one thing.
CREATE UNIQUE INDEX connected_payouts_sent_entry_key ON connected_payouts (sent_entry_id);
CREATE UNIQUE INDEX connected_payouts_failed_entry_key ON connected_payouts (failed_entry_id);
CREATE INDEX connected_payouts_organisation ON connected_payouts (organisation_id, created_at);

CREATE TABLE sandbox_balance_transactions (
    id text PRIMARY KEY,
    stripe_account_id text NOT NULL,
    type text NOT NULL
        CHECK (type IN ('charge', 'refund', 'adjustment', 'payout', 'payout_failure',
                        'payout_cancel')),
    source text NOT NULL,
    charge text,
    amount bigint NOT NULL,
    fee bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_balance_transactions_account
    ON sandbox_balance_transactions (stripe_account_id, created_at, id);
"""

GUARD_PRIVILEGES = """
-- connected_payouts_guard() runs only as a trigger.
REVOKE ALL ON FUNCTION connected_payouts_guard() FROM PUBLIC;
"""

PRIVILEGES = """
-- Least privilege: the service reads and records payouts, and changes only their status and
-- entry references; the sandbox's balance transactions are written once. Nothing is deleted.
REVOKE ALL ON connected_payouts, sandbox_balance_transactions FROM PUBLIC;
GRANT SELECT, INSERT ON connected_payouts TO amply_app;
GRANT UPDATE (status, failure_code, sent_entry_id, failed_entry_id, updated_at)
    ON connected_payouts TO amply_app;
GRANT SELECT, INSERT ON sandbox_balance_transactions TO amply_app;
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(load("connected_payouts_guard/0013"))
    op.execute(load("triggers/connected_payouts_guard/0013"))
    op.execute(GUARD_PRIVILEGES)
    op.execute(load("ledger_entry_recorded_by_payout/0013"))
    op.execute(PRIVILEGES)


def downgrade() -> None:
    # Payout entries already on chains stay (the ledger is append-only); from here on 0011's
    # rule refuses new ones again.
    op.execute(load("ledger_entry_recorded_by_payout/0011"))
    op.execute("DROP TABLE sandbox_balance_transactions")
    op.execute("DROP TABLE connected_payouts")
    op.execute("DROP FUNCTION connected_payouts_guard()")
