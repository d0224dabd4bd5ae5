"""The amount bound: no ledger entry moves more than 10^15 minor units, either way.

Revision ID: 0010_amount_bound
Revises: 0009_stripe_account_lifecycle
Create Date: 2026-12-07

docs/ledger-format.md §1 promises that amounts stay within ±10^15 and that balances fit a
signed 64-bit integer, and offline verifiers refuse an entry that breaks either (rule 1 of
§3). The application never writes more (``amply.lib.money.MAX_AMOUNT``); this makes PostgreSQL
itself refuse it, whoever writes, so that an honest chain always verifies. Balances are
``bigint`` already: PostgreSQL refuses a sum beyond 64 bits.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_amount_bound"
down_revision: str | None = "0009_stripe_account_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_amount_bound "
        "CHECK (amount BETWEEN -1000000000000000 AND 1000000000000000)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_amount_bound")
