"""Donations: Stripe Connect state of organisations, funds, donations, refunds, disputes,
the Stripe event log and idempotency keys.

Revision ID: 0003_donations
Revises: 0002_identity
Create Date: 2026-11-21

The ledger entries of donations are written by the ledger service under the rules of
0001_ledger_core; the tables here hold the state those entries are derived from. Each rule
the database enforces is headed by what it guards.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0003_donations"
down_revision: str | None = "0002_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


CONNECT = """
-- An organisation is paid on its own Stripe connected account (direct charges). Two
-- organisations can never share one account, so no donation lands on the wrong books.
ALTER TABLE organisations
    ADD COLUMN stripe_account_id text UNIQUE
        CHECK (stripe_account_id ~ '^acct_[0-9A-Za-z_]{1,64}$'),
    ADD COLUMN charges_enabled boolean NOT NULL DEFAULT false,
    ADD COLUMN payouts_enabled boolean NOT NULL DEFAULT false,
    ADD COLUMN details_submitted boolean NOT NULL DEFAULT false,
    ADD COLUMN stripe_account_synced_at timestamptz,
    -- When Stripe created the account.updated event last applied: an older event that
    -- arrives late never overwrites a newer status.
    ADD COLUMN stripe_account_event_at timestamptz;
"""

FUNDS = """
CREATE TABLE funds (
    id text PRIMARY KEY CHECK (id ~ '^fund_[0-9A-Za-z]{24}$'),
    organisation_id text NOT NULL REFERENCES organisations (id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    goal_amount bigint CHECK (goal_amount > 0),
    goal_currency text CHECK (goal_currency ~ '^[A-Z]{3}$'),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- A goal is an amount in a currency, never one without the other.
    CHECK ((goal_amount IS NULL) = (goal_currency IS NULL))
);
CREATE UNIQUE INDEX funds_organisation_name_key ON funds (organisation_id, lower(name));
"""

DONATIONS = """
CREATE TABLE donations (
    id text PRIMARY KEY CHECK (id ~ '^don_[0-9A-Za-z]{24}$'),
    organisation_id text NOT NULL REFERENCES organisations (id),
    fund_id text REFERENCES funds (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'completed', 'failed', 'refunded')),
    donor_name text CHECK (char_length(donor_name) BETWEEN 1 AND 100),
    donor_email text CHECK (char_length(donor_email) BETWEEN 3 AND 254),
    anonymous boolean NOT NULL DEFAULT false,
    message text CHECK (char_length(message) <= 500),
    -- SHA-256 of the donor's receipt token. (The token itself is kept only inside the first
    -- checkout response that idempotency_keys replays to retries, until that key expires.)
    receipt_token_hash bytea NOT NULL UNIQUE CHECK (octet_length(receipt_token_hash) = 32),
    provider text NOT NULL CHECK (provider IN ('stripe', 'sandbox')),
    stripe_account_id text NOT NULL,
    -- One donation per PaymentIntent: a webhook can never complete two donations.
    payment_intent_id text NOT NULL UNIQUE,
    charge_id text,
    -- Stripe's fee, in the currency Stripe charged it (the account's settlement currency).
    processing_fee bigint CHECK (processing_fee >= 0),
    processing_fee_currency text CHECK (processing_fee_currency ~ '^[A-Z]{3}$'),
    -- Refunded and disputed amounts as the ledger has recorded them.
    amount_refunded bigint NOT NULL DEFAULT 0,
    amount_disputed bigint NOT NULL DEFAULT 0 CHECK (amount_disputed >= 0),
    failure_code text CHECK (char_length(failure_code) <= 100),
    failure_message text CHECK (char_length(failure_message) <= 500),
    received_entry_id text REFERENCES ledger_entries (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    -- When Stripe created the refund event last applied: an older charge.refunded total
    -- arriving late (one that still counts a refund since failed) changes nothing.
    refunds_as_of timestamptz,
    -- Never more refunded than given.
    CHECK (amount_refunded BETWEEN 0 AND amount),
    -- A donation is completed exactly when its donation_received entry exists.
    CHECK ((status IN ('completed', 'refunded')) = (received_entry_id IS NOT NULL)),
    CHECK ((status IN ('completed', 'refunded')) = (completed_at IS NOT NULL)),
    CHECK (status <> 'refunded' OR amount_refunded = amount),
    CHECK ((processing_fee IS NULL) = (processing_fee_currency IS NULL))
);
CREATE INDEX donations_organisation_created ON donations (organisation_id, created_at DESC, id);
CREATE INDEX donations_fund ON donations (fund_id) WHERE fund_id IS NOT NULL;
"""

REFUNDS_AND_DISPUTES = """
-- Refunds an organisation asked for through Amply. The ledger moves only when Stripe's
-- charge.refunded event confirms; these rows remember who asked, why, and Stripe's answer.
CREATE TABLE donation_refunds (
    id text PRIMARY KEY CHECK (id ~ '^rfd_[0-9A-Za-z]{24}$'),
    donation_id text NOT NULL REFERENCES donations (id),
    amount bigint NOT NULL CHECK (amount > 0),
    reason text NOT NULL CHECK (reason IN ('requested_by_customer', 'duplicate', 'fraudulent')),
    note text CHECK (char_length(note) <= 500),
    status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    provider_refund_id text NOT NULL UNIQUE,
    -- Whether the ledger's donation_refunded entries cover this refund yet (Stripe's
    -- charge.refunded named it): until then it still counts against what can be refunded.
    recorded boolean NOT NULL DEFAULT false,
    -- The donation_refund_reversed entry of a recorded refund that then failed: at most one.
    reversed_entry_id text UNIQUE REFERENCES ledger_entries (id),
    requested_by_user_id text REFERENCES users (id),
    requested_by_api_key_id text REFERENCES api_keys (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((requested_by_user_id IS NULL) <> (requested_by_api_key_id IS NULL)),
    CHECK (reversed_entry_id IS NULL OR (recorded AND status IN ('failed', 'canceled')))
);
CREATE INDEX donation_refunds_donation ON donation_refunds (donation_id, created_at);

-- Disputes (chargebacks) by Stripe's dispute id: the funds are withdrawn from the ledger
-- at most once and reinstated at most once, whatever order and however often the
-- events arrive.
CREATE TABLE donation_disputes (
    id text PRIMARY KEY CHECK (id ~ '^(dp|du)_[0-9A-Za-z_]{1,64}$'),
    donation_id text NOT NULL REFERENCES donations (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL CHECK (char_length(status) <= 40),
    reason text CHECK (char_length(reason) <= 60),
    withdrawn_entry_id text REFERENCES ledger_entries (id),
    reinstated_entry_id text REFERENCES ledger_entries (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (reinstated_entry_id IS NULL OR withdrawn_entry_id IS NOT NULL)
);
CREATE INDEX donation_disputes_donation ON donation_disputes (donation_id);
"""

EVENTS = """
-- Every Stripe event (and every sandbox event) is stored once, by its id, in the same
-- transaction as its effects: a redelivered or concurrently delivered event finds its id
-- taken and changes nothing, so each event takes effect exactly once.
CREATE TABLE stripe_events (
    id text PRIMARY KEY CHECK (id ~ '^evt_[0-9A-Za-z_]{1,100}$'),
    type text NOT NULL CHECK (char_length(type) <= 100),
    account text CHECK (char_length(account) <= 100),
    livemode boolean NOT NULL,
    source text NOT NULL CHECK (source IN ('webhook', 'sandbox')),
    outcome text NOT NULL CHECK (outcome IN ('processed', 'ignored')),
    created timestamptz NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stripe_events_received ON stripe_events (received_at);
"""

IDEMPOTENCY = """
-- The first response to each idempotency key of a caller, replayed to retries. A retry
-- waits on an advisory lock of its key while the first request runs, then finds this row.
CREATE TABLE idempotency_keys (
    scope text NOT NULL CHECK (char_length(scope) <= 100),
    key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    request_hash bytea NOT NULL CHECK (octet_length(request_hash) = 32),
    status_code integer NOT NULL CHECK (status_code BETWEEN 200 AND 299),
    response_body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expires ON idempotency_keys (expires_at);
"""

PRIVILEGES = """
-- Least privilege for the service's role: the event log is insert-only (what Stripe told
-- us cannot be rewritten), and nothing here may be deleted but expired idempotency keys.
REVOKE ALL ON funds, donations, donation_refunds, donation_disputes, stripe_events,
    idempotency_keys FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON funds, donations, donation_refunds, donation_disputes
    TO amply_app;
GRANT SELECT, INSERT ON stripe_events TO amply_app;
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO amply_app;
REVOKE ALL ON FUNCTION donations_guard_update() FROM PUBLIC;
"""


def upgrade() -> None:
    for block in (
        # The entry types of 0001_ledger_core plus donation_refund_reversed.
        load("ledger_entry_flow/0003"),
        CONNECT,
        FUNDS,
        DONATIONS,
        load("donations_guard_update/0003"),
        load("triggers/donations_guard_update/0003"),
        REFUNDS_AND_DISPUTES,
        EVENTS,
        IDEMPOTENCY,
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("forward-only: restore a backup to go back")
