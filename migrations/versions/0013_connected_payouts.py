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

from alembic import op

revision: str = "0013_connected_payouts"
down_revision: str | None = "0012_charge_reversals"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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

GUARD = """
-- Payouts: terms immutable, entry references write-once and naming the right entries.
CREATE FUNCTION connected_payouts_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- No money without its record: a payout starts with no entry, so its entries are
        -- checked below as they are named.
        IF num_nonnulls(NEW.sent_entry_id, NEW.failed_entry_id) > 0 THEN
            RAISE EXCEPTION 'connected_payouts: % starts with no ledger entry', NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'connected_payouts_start';
        END IF;
        RETURN NEW;
    END IF;
    -- Honest records: what Stripe paid out, to whom, never changes.
    IF (NEW.id, NEW.organisation_id, NEW.stripe_account_id, NEW.amount, NEW.currency,
        NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.organisation_id, OLD.stripe_account_id, OLD.amount, OLD.currency,
        OLD.created_at) THEN
        RAISE EXCEPTION 'connected_payouts: the terms of % never change', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'connected_payouts_terms';
    END IF;
    -- Append-only money: an entry, once named, stays named.
    IF (OLD.sent_entry_id IS NOT NULL AND NEW.sent_entry_id IS DISTINCT FROM OLD.sent_entry_id)
       OR (OLD.failed_entry_id IS NOT NULL
           AND NEW.failed_entry_id IS DISTINCT FROM OLD.failed_entry_id) THEN
        RAISE EXCEPTION 'connected_payouts: the ledger entries of % are set once', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'connected_payouts_write_once';
    END IF;
    -- Balances: the payout's entries move exactly its amount, on its organisation's chain.
    IF NEW.sent_entry_id IS DISTINCT FROM OLD.sent_entry_id
       AND NOT public.ledger_entry_matches(NEW.sent_entry_id, 'payout_sent',
                                           NEW.organisation_id, -NEW.amount, NEW.currency) THEN
        RAISE EXCEPTION 'connected_payouts: % must be sent by a payout_sent entry of -% % on %',
            OLD.id, NEW.amount, NEW.currency, NEW.organisation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'connected_payouts_entry_matches';
    END IF;
    IF NEW.failed_entry_id IS DISTINCT FROM OLD.failed_entry_id
       AND NOT public.ledger_entry_matches(NEW.failed_entry_id, 'payout_failed',
                                           NEW.organisation_id, NEW.amount, NEW.currency) THEN
        RAISE EXCEPTION 'connected_payouts: % must fail by a payout_failed entry of % % on %',
            OLD.id, NEW.amount, NEW.currency, NEW.organisation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'connected_payouts_entry_matches';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER connected_payouts_guard BEFORE INSERT OR UPDATE ON connected_payouts
    FOR EACH ROW EXECUTE FUNCTION connected_payouts_guard();
REVOKE ALL ON FUNCTION connected_payouts_guard() FROM PUBLIC;

-- No money without its record, for payouts: each payout entry is named by its payout's row,
-- on that payout's organisation's chain (the row's guard checks type, amount and currency).
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_payout(entry public.ledger_entries)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    IF entry.type = 'payout_sent' THEN
        RETURN EXISTS (SELECT FROM public.connected_payouts
                        WHERE sent_entry_id = entry.id AND organisation_id = entry.chain_id);
    ELSIF entry.type = 'payout_failed' THEN
        RETURN EXISTS (SELECT FROM public.connected_payouts
                        WHERE failed_entry_id = entry.id AND organisation_id = entry.chain_id);
    END IF;
    RETURN false;
END
$$;

-- Least privilege: the service reads and records payouts, and changes only their status and
-- entry references; the sandbox's balance transactions are written once. Nothing is deleted.
REVOKE ALL ON connected_payouts, sandbox_balance_transactions FROM PUBLIC;
GRANT SELECT, INSERT ON connected_payouts TO amply_app;
GRANT UPDATE (status, failure_code, sent_entry_id, failed_entry_id, updated_at)
    ON connected_payouts TO amply_app;
GRANT SELECT, INSERT ON sandbox_balance_transactions TO amply_app;
"""

PREVIOUS_RECORDED_BY_PAYOUT = """
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_payout(entry public.ledger_entries)
RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$ SELECT false $$;
"""


def upgrade() -> None:
    op.execute(TABLES)
    op.execute(GUARD)


def downgrade() -> None:
    # Payout entries already on chains stay (the ledger is append-only); from here on 0011's
    # rule refuses new ones again.
    op.execute(PREVIOUS_RECORDED_BY_PAYOUT)
    op.execute("DROP TABLE sandbox_balance_transactions")
    op.execute("DROP TABLE connected_payouts")
    op.execute("DROP FUNCTION connected_payouts_guard()")
