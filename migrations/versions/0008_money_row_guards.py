"""Money row guards: every row that moves or records money is guarded by PostgreSQL itself.

Revision ID: 0008_money_row_guards
Revises: 0007_checkpoint_key_custody
Create Date: 2026-12-07

The ledger refuses to be rewritten (0001_ledger_core) and wallet transactions move only along
their arrows (0005_wallets). This migration gives the same to every other row that moves or
records money, against the service's own role (``amply_app``), so that no application bug
and no stolen service credential can do what the services never do:

- donations, refunds, disputes, cards, money requests and API keys: terms immutable once set,
  legal status transitions only, write-once markers;
- every reference from a business row to a ledger entry is UNIQUE and must name an entry of
  the right type, on the right chain, for the right amount and currency;
- no money without its record: at commit, every entry on a chain that belongs to someone (a
  wallet, an organisation, the platform) is named by the business row it records, which says
  where the money came from (a deferred constraint trigger, like journal balance);
- idempotency keys are forgotten only once expired.

Two columns are added so that the remaining donation entries have their record too:
``donations.processing_fee_entry_id`` (Stripe's fee, set once) and
``donations.refunded_entry_id`` (the latest ``donation_refunded`` entry, whose amount is what
``amount_refunded`` grew by). Each rule is headed by what it guards; downgrading drops them.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0008_money_row_guards"
down_revision: str | None = "0007_checkpoint_key_custody"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


ENTRY_REFERENCES = """
-- Unique entry references: one ledger entry records one thing. A donation's received entry,
-- fee and latest refund, and a dispute's withdrawal and reinstatement, each name an entry no
-- other row names (a refund's reversal already has its UNIQUE, from 0003_donations).
ALTER TABLE donations
    ADD COLUMN processing_fee_entry_id text REFERENCES ledger_entries (id),
    ADD COLUMN refunded_entry_id text REFERENCES ledger_entries (id),
    ADD CONSTRAINT donations_fee_entry_has_fee
        CHECK (processing_fee_entry_id IS NULL OR processing_fee > 0);
CREATE UNIQUE INDEX donations_received_entry_key ON donations (received_entry_id);
CREATE UNIQUE INDEX donations_processing_fee_entry_key ON donations (processing_fee_entry_id);
CREATE UNIQUE INDEX donations_refunded_entry_key ON donations (refunded_entry_id);
CREATE UNIQUE INDEX donation_disputes_withdrawn_entry_key
    ON donation_disputes (withdrawn_entry_id);
CREATE UNIQUE INDEX donation_disputes_reinstated_entry_key
    ON donation_disputes (reinstated_entry_id);
"""

ONE_WELCOME_BONUS = """
-- One welcome bonus per wallet, ever.
CREATE UNIQUE INDEX transactions_one_welcome_bonus ON transactions (wallet_id)
    WHERE kind = 'welcome_bonus';
"""

PRIVILEGES = """
-- The new functions run only as triggers.
REVOKE ALL ON FUNCTION ledger_entry_matches(text, text, text, bigint, text),
    donations_guard_money(), donation_refunds_guard(), donation_disputes_guard(),
    transactions_guard_origin(), ledger_check_entry_recorded(), ledger_chain_starts_empty(),
    cards_guard(), money_requests_guard(), money_requests_check_paid(),
    api_keys_guard_update(), idempotency_keys_guard_delete() FROM PUBLIC;
"""

DOWNGRADE = """
DROP TRIGGER idempotency_keys_guard_delete ON idempotency_keys;
DROP TRIGGER api_keys_guard_update ON api_keys;
DROP TRIGGER money_requests_paid_by_transfer ON money_requests;
DROP TRIGGER money_requests_guard ON money_requests;
DROP TRIGGER cards_guard ON cards;
DROP TRIGGER organisations_start_empty ON organisations;
DROP TRIGGER wallets_start_empty ON wallets;
DROP TRIGGER ledger_entries_recorded ON ledger_entries;
DROP TRIGGER transactions_guard_origin ON transactions;
DROP TRIGGER donation_disputes_guard ON donation_disputes;
DROP TRIGGER donation_refunds_guard ON donation_refunds;
DROP TRIGGER donations_guard_money ON donations;
DROP FUNCTION idempotency_keys_guard_delete(), api_keys_guard_update(),
    money_requests_check_paid(), money_requests_guard(), cards_guard(),
    ledger_chain_starts_empty(), ledger_check_entry_recorded(), transactions_guard_origin(),
    donation_disputes_guard(), donation_refunds_guard(), donations_guard_money(),
    ledger_entry_matches(text, text, text, bigint, text);
DROP INDEX transactions_one_welcome_bonus, donation_disputes_reinstated_entry_key,
    donation_disputes_withdrawn_entry_key, donations_refunded_entry_key,
    donations_processing_fee_entry_key, donations_received_entry_key;
ALTER TABLE donations
    DROP COLUMN refunded_entry_id,
    DROP COLUMN processing_fee_entry_id;
"""


def upgrade() -> None:
    for block in (
        ENTRY_REFERENCES,
        load("ledger_entry_matches/0008"),
        load("donations_guard_money/0008"),
        load("triggers/donations_guard_money/0008"),
        load("donation_refunds_guard/0008"),
        load("triggers/donation_refunds_guard/0008"),
        load("donation_disputes_guard/0008"),
        load("triggers/donation_disputes_guard/0008"),
        load("transactions_guard_origin/0008"),
        load("triggers/transactions_guard_origin/0008"),
        ONE_WELCOME_BONUS,
        load("ledger_check_entry_recorded/0008"),
        load("ledger_chain_starts_empty/0008"),
        load("triggers/ledger_entries_recorded/0008"),
        load("triggers/wallets_start_empty/0008"),
        load("triggers/organisations_start_empty/0008"),
        load("cards_guard/0008"),
        load("triggers/cards_guard/0008"),
        load("money_requests_guard/0008"),
        load("money_requests_check_paid/0008"),
        load("triggers/money_requests_guard/0008"),
        load("triggers/money_requests_paid_by_transfer/0008"),
        load("api_keys_guard_update/0008"),
        load("triggers/api_keys_guard_update/0008"),
        load("idempotency_keys_guard_delete/0008"),
        load("triggers/idempotency_keys_guard_delete/0008"),
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    op.execute(DOWNGRADE)
