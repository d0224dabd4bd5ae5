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

from alembic import op

revision: str = "0011_reversal_entry_types"
down_revision: str | None = "0010_amount_bound"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The entry types of 0003_donations plus this migration's.
EXTERNAL_TYPES = (
    "donation_received",
    "donation_refunded",
    "donation_refund_reversed",
    "payment_processing_fee",
    "payment_processing_fee_refunded",
    "dispute_funds_withdrawn",
    "dispute_funds_reinstated",
    "dispute_fee",
    "dispute_fee_refunded",
    "deposit",
    "deposit_reversed",
    "deposit_reinstated",
    "deposit_loss",
    "deposit_loss_recovered",
    "withdrawal",
    "withdrawal_reversed",
    "payout_sent",
    "payout_failed",
)
INTERNAL_TYPES = (
    "transfer_out",
    "transfer_in",
    "withdrawal_fee",
    "withdrawal_fee_refunded",
    "fee_collected",
    "fee_refunded",
    "welcome_bonus",
    "promotion_granted",
    "wallet_donation_sent",
    "wallet_donation_received",
)
PREVIOUS_EXTERNAL_TYPES = tuple(
    t
    for t in EXTERNAL_TYPES
    if t
    not in (
        "dispute_fee_refunded",
        "deposit_reversed",
        "deposit_reinstated",
        "deposit_loss",
        "deposit_loss_recovered",
        "payout_sent",
        "payout_failed",
    )
)


def sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def entry_flow(external: Sequence[str]) -> str:
    return f"""
CREATE OR REPLACE FUNCTION ledger_entry_flow(entry_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN entry_type IN ({sql_list(external)}) THEN 'external'
        WHEN entry_type IN ({sql_list(INTERNAL_TYPES)}) THEN 'internal'
    END
$$;
"""


RECORD_HOOKS = """
-- No money without its record, for disputes: as 0008 checked it. A withdrawal or
-- reinstatement is named by its dispute; a dispute fee is appended by the same statement
-- (equal xmin) as the withdrawal of its dispute's funds, in its journal, on its chain. No
-- record names a refunded dispute fee yet.
CREATE FUNCTION ledger_entry_recorded_by_dispute(entry public.ledger_entries) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    IF entry.type = 'dispute_funds_withdrawn' THEN
        RETURN EXISTS (SELECT FROM public.donation_disputes
                        WHERE withdrawn_entry_id = entry.id);
    ELSIF entry.type = 'dispute_funds_reinstated' THEN
        RETURN EXISTS (SELECT FROM public.donation_disputes
                        WHERE reinstated_entry_id = entry.id);
    ELSIF entry.type = 'dispute_fee' THEN
        RETURN EXISTS (
            SELECT FROM public.ledger_entries AS withdrawn
              JOIN public.donation_disputes AS dispute
                ON dispute.withdrawn_entry_id = withdrawn.id
             WHERE withdrawn.journal_id = entry.journal_id AND withdrawn.chain_id = entry.chain_id
               AND withdrawn.xmin = (SELECT fee.xmin FROM public.ledger_entries AS fee
                                      WHERE fee.id = entry.id));
    END IF;
    RETURN false;
END
$$;

-- No money without its record, for refunds and chargebacks of wallet deposits: no record
-- names such an entry yet, so none may be appended.
CREATE FUNCTION ledger_entry_recorded_by_deposit_reversal(entry public.ledger_entries)
RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$ SELECT false $$;

-- No money without its record, for payouts of connected accounts: no record names such an
-- entry yet, so none may be appended.
CREATE FUNCTION ledger_entry_recorded_by_payout(entry public.ledger_entries) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$ SELECT false $$;

-- ledger_check_entry_recorded() runs with its caller's rights, so whoever appends may ask.
REVOKE ALL ON FUNCTION ledger_entry_recorded_by_dispute(public.ledger_entries),
    ledger_entry_recorded_by_deposit_reversal(public.ledger_entries),
    ledger_entry_recorded_by_payout(public.ledger_entries) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_entry_recorded_by_dispute(public.ledger_entries),
    ledger_entry_recorded_by_deposit_reversal(public.ledger_entries),
    ledger_entry_recorded_by_payout(public.ledger_entries) TO amply_app;
"""

RECORDED = """
-- ledger_check_entry_recorded() of 0008, with the dispute branches asking
-- ledger_entry_recorded_by_dispute() and the new types asking their own record's function.
CREATE OR REPLACE FUNCTION ledger_check_entry_recorded() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    recorded boolean;
BEGIN
    -- One branch per record, each its own small statement: PostgreSQL sets up every
    -- statement it runs afresh in each transaction, so only the record's own probe is paid.
    IF NEW.type = 'donation_received' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE received_entry_id = NEW.id);
    ELSIF NEW.type = 'payment_processing_fee' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE processing_fee_entry_id = NEW.id);
    ELSIF NEW.type = 'donation_refunded' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE refunded_entry_id = NEW.id);
    ELSIF NEW.type = 'donation_refund_reversed' THEN
        recorded := EXISTS (SELECT FROM public.donation_refunds
                             WHERE reversed_entry_id = NEW.id);
    ELSIF NEW.type IN ('dispute_funds_withdrawn', 'dispute_funds_reinstated', 'dispute_fee',
                       'dispute_fee_refunded') THEN
        recorded := public.ledger_entry_recorded_by_dispute(NEW);
    ELSIF NEW.type IN ('deposit_reversed', 'deposit_reinstated', 'deposit_loss',
                       'deposit_loss_recovered') THEN
        recorded := public.ledger_entry_recorded_by_deposit_reversal(NEW);
    ELSIF NEW.type IN ('payout_sent', 'payout_failed') THEN
        recorded := public.ledger_entry_recorded_by_payout(NEW);
    ELSE
        recorded := EXISTS (
            SELECT FROM public.transactions AS t
             WHERE CASE WHEN NEW.type IN ('withdrawal_reversed', 'withdrawal_fee_refunded',
                                          'fee_refunded')
                        THEN t.reversal_journal_id = NEW.journal_id
                        ELSE t.journal_id = NEW.journal_id END
               AND t.currency = NEW.currency
               -- The transaction's kind, and the chain that plays this leg's part.
               AND CASE NEW.type
                    WHEN 'deposit' THEN t.kind = 'deposit' AND NEW.chain_id = t.wallet_id
                    WHEN 'welcome_bonus' THEN
                        t.kind = 'welcome_bonus' AND NEW.chain_id = t.wallet_id
                    WHEN 'promotion_granted' THEN
                        t.kind = 'welcome_bonus' AND NEW.chain_id = 'plat_promotions'
                    WHEN 'transfer_out' THEN t.kind = 'transfer' AND NEW.chain_id = t.wallet_id
                    WHEN 'transfer_in' THEN
                        t.kind = 'transfer' AND NEW.chain_id = t.counterparty_wallet_id
                    WHEN 'wallet_donation_sent' THEN
                        t.kind = 'donation' AND NEW.chain_id = t.wallet_id
                    WHEN 'wallet_donation_received' THEN
                        t.kind = 'donation' AND NEW.chain_id = t.organisation_id
                    WHEN 'withdrawal' THEN t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'withdrawal_fee' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'fee_collected' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = 'plat_fees'
                    WHEN 'withdrawal_reversed' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'withdrawal_fee_refunded' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'fee_refunded' THEN t.kind = 'withdrawal' AND NEW.chain_id = 'plat_fees'
                    ELSE false
                   END
               -- What the journal moved on that chain is what the transaction says.
               AND (SELECT sum(e.amount) FROM public.ledger_entries AS e
                     WHERE e.journal_id = NEW.journal_id AND e.chain_id = NEW.chain_id
                       AND e.currency = NEW.currency)
                   = CASE
                    WHEN NEW.type IN ('deposit', 'welcome_bonus', 'transfer_in',
                                      'wallet_donation_received') THEN t.amount
                    WHEN NEW.type = 'promotion_granted' THEN -t.amount
                    WHEN NEW.type = 'fee_collected' THEN t.fee
                    WHEN NEW.type = 'fee_refunded' THEN -t.fee
                    WHEN NEW.type IN ('withdrawal_reversed', 'withdrawal_fee_refunded')
                        THEN t.amount + t.fee
                    ELSE -(t.amount + t.fee)
                   END);
    END IF;
    IF recorded THEN
        RETURN NULL;
    END IF;
    -- Unrecorded: refused unless the chain belongs to no one.
    IF starts_with(NEW.chain_id, 'wal_') THEN
        recorded := NOT EXISTS (SELECT FROM public.wallets WHERE id = NEW.chain_id);
    ELSIF starts_with(NEW.chain_id, 'org_') THEN
        recorded := NOT EXISTS (SELECT FROM public.organisations WHERE id = NEW.chain_id);
    END IF;
    IF NOT recorded THEN
        RAISE EXCEPTION 'ledger: no record names the % entry % (% %) on chain %, journal %',
            NEW.type, NEW.id, NEW.amount, NEW.currency, NEW.chain_id, NEW.journal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_recorded';
    END IF;
    RETURN NULL;
END
$$;

"""

PREVIOUS_RECORDED = """
CREATE OR REPLACE FUNCTION ledger_check_entry_recorded() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    recorded boolean;
BEGIN
    -- One branch per record, each its own small statement: PostgreSQL sets up every
    -- statement it runs afresh in each transaction, so only the record's own probe is paid.
    IF NEW.type = 'donation_received' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE received_entry_id = NEW.id);
    ELSIF NEW.type = 'payment_processing_fee' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE processing_fee_entry_id = NEW.id);
    ELSIF NEW.type = 'donation_refunded' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE refunded_entry_id = NEW.id);
    ELSIF NEW.type = 'donation_refund_reversed' THEN
        recorded := EXISTS (SELECT FROM public.donation_refunds
                             WHERE reversed_entry_id = NEW.id);
    ELSIF NEW.type = 'dispute_funds_withdrawn' THEN
        recorded := EXISTS (SELECT FROM public.donation_disputes
                             WHERE withdrawn_entry_id = NEW.id);
    ELSIF NEW.type = 'dispute_funds_reinstated' THEN
        recorded := EXISTS (SELECT FROM public.donation_disputes
                             WHERE reinstated_entry_id = NEW.id);
    ELSIF NEW.type = 'dispute_fee' THEN
        -- Appended by the same statement (so the same transaction: equal xmin) as the
        -- withdrawal of the dispute's funds, in its journal, on its chain.
        recorded := EXISTS (
            SELECT FROM public.ledger_entries AS withdrawn
              JOIN public.donation_disputes AS dispute
                ON dispute.withdrawn_entry_id = withdrawn.id
             WHERE withdrawn.journal_id = NEW.journal_id AND withdrawn.chain_id = NEW.chain_id
               AND withdrawn.xmin = (SELECT fee.xmin FROM public.ledger_entries AS fee
                                      WHERE fee.id = NEW.id));
    ELSE
        recorded := EXISTS (
            SELECT FROM public.transactions AS t
             WHERE CASE WHEN NEW.type IN ('withdrawal_reversed', 'withdrawal_fee_refunded',
                                          'fee_refunded')
                        THEN t.reversal_journal_id = NEW.journal_id
                        ELSE t.journal_id = NEW.journal_id END
               AND t.currency = NEW.currency
               -- The transaction's kind, and the chain that plays this leg's part.
               AND CASE NEW.type
                    WHEN 'deposit' THEN t.kind = 'deposit' AND NEW.chain_id = t.wallet_id
                    WHEN 'welcome_bonus' THEN
                        t.kind = 'welcome_bonus' AND NEW.chain_id = t.wallet_id
                    WHEN 'promotion_granted' THEN
                        t.kind = 'welcome_bonus' AND NEW.chain_id = 'plat_promotions'
                    WHEN 'transfer_out' THEN t.kind = 'transfer' AND NEW.chain_id = t.wallet_id
                    WHEN 'transfer_in' THEN
                        t.kind = 'transfer' AND NEW.chain_id = t.counterparty_wallet_id
                    WHEN 'wallet_donation_sent' THEN
                        t.kind = 'donation' AND NEW.chain_id = t.wallet_id
                    WHEN 'wallet_donation_received' THEN
                        t.kind = 'donation' AND NEW.chain_id = t.organisation_id
                    WHEN 'withdrawal' THEN t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'withdrawal_fee' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'fee_collected' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = 'plat_fees'
                    WHEN 'withdrawal_reversed' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'withdrawal_fee_refunded' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'fee_refunded' THEN t.kind = 'withdrawal' AND NEW.chain_id = 'plat_fees'
                    ELSE false
                   END
               -- What the journal moved on that chain is what the transaction says.
               AND (SELECT sum(e.amount) FROM public.ledger_entries AS e
                     WHERE e.journal_id = NEW.journal_id AND e.chain_id = NEW.chain_id
                       AND e.currency = NEW.currency)
                   = CASE
                    WHEN NEW.type IN ('deposit', 'welcome_bonus', 'transfer_in',
                                      'wallet_donation_received') THEN t.amount
                    WHEN NEW.type = 'promotion_granted' THEN -t.amount
                    WHEN NEW.type = 'fee_collected' THEN t.fee
                    WHEN NEW.type = 'fee_refunded' THEN -t.fee
                    WHEN NEW.type IN ('withdrawal_reversed', 'withdrawal_fee_refunded')
                        THEN t.amount + t.fee
                    ELSE -(t.amount + t.fee)
                   END);
    END IF;
    IF recorded THEN
        RETURN NULL;
    END IF;
    -- Unrecorded: refused unless the chain belongs to no one.
    IF starts_with(NEW.chain_id, 'wal_') THEN
        recorded := NOT EXISTS (SELECT FROM public.wallets WHERE id = NEW.chain_id);
    ELSIF starts_with(NEW.chain_id, 'org_') THEN
        recorded := NOT EXISTS (SELECT FROM public.organisations WHERE id = NEW.chain_id);
    END IF;
    IF NOT recorded THEN
        RAISE EXCEPTION 'ledger: no record names the % entry % (% %) on chain %, journal %',
            NEW.type, NEW.id, NEW.amount, NEW.currency, NEW.chain_id, NEW.journal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_recorded';
    END IF;
    RETURN NULL;
END
$$;

"""


def upgrade() -> None:
    op.execute(entry_flow(EXTERNAL_TYPES))
    op.execute(RECORD_HOOKS)
    op.execute(RECORDED)


def downgrade() -> None:
    op.execute(PREVIOUS_RECORDED)
    op.execute(
        "DROP FUNCTION ledger_entry_recorded_by_dispute(public.ledger_entries), "
        "ledger_entry_recorded_by_deposit_reversal(public.ledger_entries), "
        "ledger_entry_recorded_by_payout(public.ledger_entries)"
    )
    op.execute(entry_flow(PREVIOUS_EXTERNAL_TYPES))
