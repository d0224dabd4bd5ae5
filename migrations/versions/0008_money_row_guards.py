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

# Each function's definition, one file per version: migrations/sql/<function>/<revision>.sql
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

DONATIONS = """
-- Donations start pending; their ledger references are write-once and name the right
-- entries (donations_guard_money()).
CREATE TRIGGER donations_guard_money BEFORE INSERT OR UPDATE ON donations
    FOR EACH ROW EXECUTE FUNCTION donations_guard_money();
"""

REFUNDS = """
-- Refunds: what was asked never changes, the status moves along Stripe's arrows, and the
-- ledger markers are set once (donation_refunds_guard()).
CREATE TRIGGER donation_refunds_guard BEFORE INSERT OR UPDATE ON donation_refunds
    FOR EACH ROW EXECUTE FUNCTION donation_refunds_guard();
"""

DISPUTES = """
-- Disputes: the terms never change, and the ledger markers are write-once and name the
-- right entries (donation_disputes_guard()).
CREATE TRIGGER donation_disputes_guard BEFORE INSERT OR UPDATE ON donation_disputes
    FOR EACH ROW EXECUTE FUNCTION donation_disputes_guard();
"""

TRANSACTIONS = """
-- Deposits and withdrawals say where the money came from and went
-- (transactions_guard_origin()).
CREATE TRIGGER transactions_guard_origin BEFORE INSERT OR UPDATE ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_guard_origin();

-- One welcome bonus per wallet, ever.
CREATE UNIQUE INDEX transactions_one_welcome_bonus ON transactions (wallet_id)
    WHERE kind = 'welcome_bonus';
"""

NO_MONEY_WITHOUT_RECORD = """
-- No money without its record: at commit, every entry on a chain that belongs to someone is
-- named by the business row that records it (ledger_check_entry_recorded()).
CREATE CONSTRAINT TRIGGER ledger_entries_recorded
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    EXECUTE FUNCTION ledger_check_entry_recorded();
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_recorded;

-- And a chain cannot be given to a wallet or an organisation once it holds entries
-- (ledger_chain_starts_empty()).
CREATE TRIGGER wallets_start_empty BEFORE INSERT ON wallets
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_starts_empty();
CREATE TRIGGER organisations_start_empty BEFORE INSERT ON organisations
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_starts_empty();
"""

CARDS = """
-- Cards never change, and stay removed once removed (cards_guard()).
CREATE TRIGGER cards_guard BEFORE INSERT OR UPDATE ON cards
    FOR EACH ROW EXECUTE FUNCTION cards_guard();
"""

MONEY_REQUESTS = """
-- Money requests: created pending and resolved once (money_requests_guard()), and paid only
-- by a completed transfer of their amount, checked at commit (money_requests_check_paid()).
CREATE TRIGGER money_requests_guard BEFORE INSERT OR UPDATE ON money_requests
    FOR EACH ROW EXECUTE FUNCTION money_requests_guard();
CREATE CONSTRAINT TRIGGER money_requests_paid_by_transfer
    AFTER UPDATE OF status ON money_requests
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.status = 'paid')
    EXECUTE FUNCTION money_requests_check_paid();
"""

API_KEYS = """
-- API keys never change, and stay revoked once revoked (api_keys_guard_update()).
CREATE TRIGGER api_keys_guard_update BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_guard_update();
"""

IDEMPOTENCY_KEYS = """
-- Idempotency keys are deleted only once expired (idempotency_keys_guard_delete()).
CREATE TRIGGER idempotency_keys_guard_delete BEFORE DELETE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION idempotency_keys_guard_delete();
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
        DONATIONS,
        load("donation_refunds_guard/0008"),
        REFUNDS,
        load("donation_disputes_guard/0008"),
        DISPUTES,
        load("transactions_guard_origin/0008"),
        TRANSACTIONS,
        load("ledger_check_entry_recorded/0008"),
        load("ledger_chain_starts_empty/0008"),
        NO_MONEY_WITHOUT_RECORD,
        load("cards_guard/0008"),
        CARDS,
        load("money_requests_guard/0008"),
        load("money_requests_check_paid/0008"),
        MONEY_REQUESTS,
        load("api_keys_guard_update/0008"),
        API_KEYS,
        load("idempotency_keys_guard_delete/0008"),
        IDEMPOTENCY_KEYS,
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    op.execute(DOWNGRADE)
