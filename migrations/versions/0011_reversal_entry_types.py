"""Entry types for what Stripe moves after a payment, and one record hook per kind of record.

Revision ID: 0011_reversal_entry_types
Revises: 0010_amount_bound
Create Date: 2026-12-07

Issue 17 records on the chains what Stripe moves after a payment, each kind named by its own
record (the "no money without its record" rule of 0008_money_row_guards):

- disputes, one balance transaction at a time: ``dispute_funds_withdrawn`` /
  ``dispute_funds_reinstated`` for a balance transaction's amount, ``dispute_fee`` /
  ``dispute_fee_refunded`` for its fee (Stripe returns a countered dispute's fee when the
  dispute is won);
- refunds and chargebacks of wallet deposits: ``deposit_reversed`` / ``deposit_reinstated`` on
  the wallet, and ``deposit_loss`` / ``deposit_loss_recovered`` on the platform's chain for what
  the wallet no longer held;
- payouts of a connected account to the organisation's bank: ``payout_sent`` /
  ``payout_failed``.

``ledger_check_entry_recorded()`` asks one function per kind of record whether an entry of
these types is recorded. This migration defines those functions as the records exist now
(disputes as 0008 checked them; no record yet for the others, so such entries are refused);
the migrations that create the records replace each function's body, and only its body.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0011_reversal_entry_types"
down_revision: str | None = "0010_amount_bound"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's definition, one file per version: migrations/sql/<function>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


HOOK_PRIVILEGES = """
-- ledger_check_entry_recorded() runs with its caller's rights, so whoever appends may ask.
REVOKE ALL ON FUNCTION ledger_entry_recorded_by_dispute(public.ledger_entries),
    ledger_entry_recorded_by_deposit_reversal(public.ledger_entries),
    ledger_entry_recorded_by_payout(public.ledger_entries) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_entry_recorded_by_dispute(public.ledger_entries),
    ledger_entry_recorded_by_deposit_reversal(public.ledger_entries),
    ledger_entry_recorded_by_payout(public.ledger_entries) TO amply_app;
"""


def upgrade() -> None:
    # The entry types of 0003_donations plus this migration's.
    op.execute(load("ledger_entry_flow/0011"))
    op.execute(load("ledger_entry_recorded_by_dispute/0011"))
    op.execute(load("ledger_entry_recorded_by_deposit_reversal/0011"))
    op.execute(load("ledger_entry_recorded_by_payout/0011"))
    op.execute(HOOK_PRIVILEGES)
    op.execute(load("ledger_check_entry_recorded/0011"))


def downgrade() -> None:
    op.execute(load("ledger_check_entry_recorded/0008"))
    op.execute(
        "DROP FUNCTION ledger_entry_recorded_by_dispute(public.ledger_entries), "
        "ledger_entry_recorded_by_deposit_reversal(public.ledger_entries), "
        "ledger_entry_recorded_by_payout(public.ledger_entries)"
    )
    op.execute(load("ledger_entry_flow/0003"))
