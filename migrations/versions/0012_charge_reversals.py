"""What Stripe takes back from a charge, one balance transaction at a time: disputes of
donations, and refunds, disputes and repayments of wallet deposits.

Revision ID: 0012_charge_reversals
Revises: 0011_reversal_entry_types
Create Date: 2026-12-07

One table, ``charge_balance_transactions``, records each movement Stripe made after a charge
(keyed by Stripe's balance transaction id) and the ledger entries it produced, in one journal:

- ``donation_dispute``: a dispute balance transaction of a donation's charge, on the
  organisation's chain: ``dispute_funds_withdrawn`` / ``dispute_funds_reinstated`` for its
  amount, ``dispute_fee`` / ``dispute_fee_refunded`` for its fee (-fee);
- ``deposit_dispute``: the same for a wallet deposit's charge on the platform account: the
  amount is split between the wallet (``deposit_reversed`` / ``deposit_reinstated``, never
  below zero) and the platform's losses chain ``plat_losses`` (``deposit_loss`` /
  ``deposit_loss_recovered``); the fee is the platform's (``deposit_loss`` /
  ``deposit_loss_recovered`` on ``plat_losses``);
- ``deposit_refund``: a step of a deposit's cumulative refunded total (Stripe's
  ``charge.refunded`` carries the total, not the refunds), keyed ``<charge>:refunded:<total>``,
  split like a dispute's amount;
- ``deposit_repayment``: a later deposit into a wallet with a shortfall moves money back from
  the wallet to ``plat_losses`` (amount 0: -x on the wallet, +x on ``plat_losses``), keyed
  ``<deposit>:repayment``.

The "no money without its record" rule (0008, through the per-record functions of 0011) now
asks this table for every dispute and deposit reversal entry: each must be named by a row.
Rows are written once and never changed or deleted. The dispute guard of 0008 no longer caps
a dispute at its donation's amount: Stripe may dispute more than the charge (currency
conversion), and the chain must record what Stripe moved.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0012_charge_reversals"
down_revision: str | None = "0011_reversal_entry_types"
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
-- The platform's chain for what refunds and chargebacks of deposits cost it: the part a
-- wallet no longer held, and Stripe's dispute fees. It may go negative (it records losses).
INSERT INTO ledger_chains (id, kind) VALUES ('plat_losses', 'platform');

-- One row per movement Stripe made after a charge, with the entries it produced.
CREATE TABLE charge_balance_transactions (
    -- Stripe's balance transaction id (txn_…); for a step of a deposit's refunded total, the
    -- charge id, 'refunded' and the total; for a repayment, the deposit id and 'repayment'.
    id text PRIMARY KEY CHECK (char_length(id) BETWEEN 1 AND 255),
    kind text NOT NULL CHECK (kind IN ('donation_dispute', 'deposit_dispute', 'deposit_refund',
                                       'deposit_repayment')),
    dispute_id text CHECK (dispute_id ~ '^(dp|du)_[0-9A-Za-z_]{1,64}$'),
    donation_id text REFERENCES donations (id),
    deposit_id text REFERENCES transactions (id),
    -- The organisation's or wallet's chain.
    chain_id text NOT NULL REFERENCES ledger_chains (id),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- What Stripe moved (signed, as in the balance transaction) and its fee (Stripe's sign:
    -- > 0 a fee charged, < 0 a fee returned).
    amount bigint NOT NULL,
    fee bigint NOT NULL,
    -- How the amount is split: on chain_id, and on plat_losses (deposits only).
    chain_amount bigint NOT NULL,
    loss_amount bigint NOT NULL,
    journal_id text NOT NULL,
    chain_entry_id text UNIQUE REFERENCES ledger_entries (id),
    loss_entry_id text UNIQUE REFERENCES ledger_entries (id),
    fee_entry_id text UNIQUE REFERENCES ledger_entries (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (amount = chain_amount + loss_amount),
    CHECK ((kind = 'donation_dispute') = (donation_id IS NOT NULL)),
    CHECK ((kind = 'donation_dispute') <> (deposit_id IS NOT NULL)),
    CHECK ((kind IN ('donation_dispute', 'deposit_dispute')) = (dispute_id IS NOT NULL)),
    CHECK (kind <> 'donation_dispute' OR loss_amount = 0),
    CHECK (kind IN ('donation_dispute', 'deposit_dispute') OR fee = 0),
    CHECK (kind <> 'deposit_refund' OR amount < 0),
    CHECK (kind <> 'deposit_repayment' OR (amount = 0 AND chain_amount < 0)),
    -- Something moved, and every part that moved names its entry.
    CHECK (chain_amount <> 0 OR loss_amount <> 0 OR fee <> 0),
    CHECK ((chain_amount = 0) = (chain_entry_id IS NULL)),
    CHECK ((loss_amount = 0) = (loss_entry_id IS NULL)),
    CHECK ((fee = 0) = (fee_entry_id IS NULL))
);
CREATE INDEX charge_balance_transactions_donation ON charge_balance_transactions (donation_id)
    WHERE donation_id IS NOT NULL;
CREATE INDEX charge_balance_transactions_deposit ON charge_balance_transactions (deposit_id)
    WHERE deposit_id IS NOT NULL;
CREATE INDEX charge_balance_transactions_chain ON charge_balance_transactions (chain_id);
"""

PRIVILEGES = """
-- Written once, by the service: it may read and add records, never change or remove them.
REVOKE ALL ON charge_balance_transactions FROM PUBLIC;
GRANT SELECT, INSERT ON charge_balance_transactions TO amply_app;
REVOKE ALL ON FUNCTION charge_balance_transaction_entry_matches(text, text, text, bigint, text,
                                                                text),
    charge_balance_transactions_guard() FROM PUBLIC;
"""

DOWNGRADE = """
DROP TABLE charge_balance_transactions;
DROP FUNCTION charge_balance_transactions_guard(),
    charge_balance_transaction_entry_matches(text, text, text, bigint, text, text);
-- plat_losses goes too, if nothing was ever recorded on it (else its entries keep it).
ALTER TABLE ledger_chains DISABLE TRIGGER ledger_chains_no_update_delete;
DELETE FROM ledger_chains WHERE id = 'plat_losses';
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_no_update_delete;
"""


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(load("charge_balance_transaction_entry_matches/0012"))
    op.execute(load("charge_balance_transactions_guard/0012"))
    op.execute(load("triggers/charge_balance_transactions_guard/0012"))
    op.execute(PRIVILEGES)
    op.execute(load("ledger_entry_recorded_by_dispute/0012"))
    op.execute(load("ledger_entry_recorded_by_deposit_reversal/0012"))
    # 0008's dispute guard without the cap at the donation's amount.
    op.execute(load("donation_disputes_guard/0012"))


def downgrade() -> None:
    # The definitions this migration replaced, as 0008 and 0011 installed them.
    op.execute(load("donation_disputes_guard/0008"))
    op.execute(load("ledger_entry_recorded_by_dispute/0011"))
    op.execute(load("ledger_entry_recorded_by_deposit_reversal/0011"))
    op.execute(DOWNGRADE)
