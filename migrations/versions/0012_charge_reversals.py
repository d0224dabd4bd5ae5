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

from alembic import op

revision: str = "0012_charge_reversals"
down_revision: str | None = "0011_reversal_entry_types"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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

GUARD = """
-- Entry references point at the right entry: this type, chain, amount and currency, in the
-- row's journal.
CREATE FUNCTION charge_balance_transaction_entry_matches(
    entry_id text, entry_type text, chain text, entry_amount bigint, entry_currency text,
    journal text
) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM public.ledger_entries
                    WHERE id = entry_id AND type = entry_type AND chain_id = chain
                      AND amount = entry_amount AND currency = entry_currency
                      AND journal_id = journal)
$$;

-- A record says truly what it records (no money without its record, and no record without
-- its money): it belongs to a donation's dispute on the donation's organisation, or to a
-- wallet's deposit on that wallet; each part names the entry of the right type, chain,
-- amount and currency in the row's journal; a wallet never gets back more than it lost to
-- its deposits' reversals, and the platform never recovers more than it lost (so a
-- wallet's shortfall is never negative); a deposit is never refunded more than it paid.
CREATE FUNCTION charge_balance_transactions_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    owner_chain text;
    owner_currency text;
    deposit public.transactions%ROWTYPE;
    chain_type text;
    loss_type text;
    fee_type text;
    fee_chain text;
BEGIN
    -- Write-once: a record never changes and is never deleted.
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'charge_balance_transactions: % is written once', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'charge_balance_transactions_immutable';
    END IF;
    IF NEW.kind = 'donation_dispute' THEN
        SELECT d.organisation_id INTO owner_chain
          FROM public.donations AS d
          JOIN public.donation_disputes AS dispute
            ON dispute.donation_id = d.id AND dispute.id = NEW.dispute_id
         WHERE d.id = NEW.donation_id;
        chain_type := CASE WHEN NEW.chain_amount < 0 THEN 'dispute_funds_withdrawn'
                           ELSE 'dispute_funds_reinstated' END;
        fee_type := CASE WHEN NEW.fee > 0 THEN 'dispute_fee' ELSE 'dispute_fee_refunded' END;
        fee_chain := owner_chain;
    ELSE
        SELECT * INTO deposit FROM public.transactions
         WHERE id = NEW.deposit_id AND kind = 'deposit' AND status = 'completed';
        owner_chain := deposit.wallet_id;
        owner_currency := deposit.currency;
        chain_type := CASE WHEN NEW.chain_amount < 0 THEN 'deposit_reversed'
                           ELSE 'deposit_reinstated' END;
        fee_type := CASE WHEN NEW.fee > 0 THEN 'deposit_loss' ELSE 'deposit_loss_recovered' END;
        fee_chain := 'plat_losses';
    END IF;
    loss_type := CASE WHEN NEW.loss_amount < 0 THEN 'deposit_loss'
                      ELSE 'deposit_loss_recovered' END;
    IF owner_chain IS NULL OR owner_chain <> NEW.chain_id
       OR (owner_currency IS NOT NULL AND owner_currency <> NEW.currency) THEN
        RAISE EXCEPTION 'charge_balance_transactions: % does not belong to chain % (% %)',
            NEW.id, NEW.chain_id, NEW.kind, coalesce(NEW.donation_id, NEW.deposit_id)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'charge_balance_transactions_owner';
    END IF;
    IF (NEW.chain_amount <> 0
        AND NOT public.charge_balance_transaction_entry_matches(
            NEW.chain_entry_id, chain_type, NEW.chain_id, NEW.chain_amount, NEW.currency,
            NEW.journal_id))
       OR (NEW.loss_amount <> 0
           AND NOT public.charge_balance_transaction_entry_matches(
               NEW.loss_entry_id, loss_type, 'plat_losses', NEW.loss_amount, NEW.currency,
               NEW.journal_id))
       OR (NEW.fee <> 0
           AND NOT public.charge_balance_transaction_entry_matches(
               NEW.fee_entry_id, fee_type, fee_chain, -NEW.fee, NEW.currency,
               NEW.journal_id)) THEN
        RAISE EXCEPTION 'charge_balance_transactions: the entries of % do not move % (fee %) %',
            NEW.id, NEW.amount, NEW.fee, NEW.currency
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'charge_balance_transactions_entry_matches';
    END IF;
    IF NEW.kind <> 'donation_dispute' THEN
        -- Serialises the wallet's reversal records (the service takes the same lock first).
        PERFORM pg_advisory_xact_lock(hashtext('amply:wallet_losses'), hashtext(NEW.chain_id));
        IF coalesce((SELECT sum(r.chain_amount) FROM public.charge_balance_transactions AS r
                      WHERE r.chain_id = NEW.chain_id AND r.kind <> 'donation_dispute'), 0)
               + NEW.chain_amount > 0
           OR coalesce((SELECT sum(r.loss_amount) FROM public.charge_balance_transactions AS r
                         WHERE r.chain_id = NEW.chain_id AND r.kind <> 'donation_dispute'), 0)
               + NEW.loss_amount > 0
           OR (NEW.kind = 'deposit_refund'
               AND coalesce((SELECT sum(r.amount) FROM public.charge_balance_transactions AS r
                              WHERE r.deposit_id = NEW.deposit_id
                                AND r.kind = 'deposit_refund'), 0)
                   + NEW.amount < -deposit.amount) THEN
            RAISE EXCEPTION 'charge_balance_transactions: % returns more than % lost',
                NEW.id, NEW.chain_id
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'charge_balance_transactions_within_losses';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER charge_balance_transactions_guard
    BEFORE INSERT OR UPDATE OR DELETE ON charge_balance_transactions
    FOR EACH ROW EXECUTE FUNCTION charge_balance_transactions_guard();
ALTER TABLE charge_balance_transactions ENABLE ALWAYS TRIGGER charge_balance_transactions_guard;

-- Written once, by the service: it may read and add records, never change or remove them.
REVOKE ALL ON charge_balance_transactions FROM PUBLIC;
GRANT SELECT, INSERT ON charge_balance_transactions TO amply_app;
REVOKE ALL ON FUNCTION charge_balance_transaction_entry_matches(text, text, text, bigint, text,
                                                                text),
    charge_balance_transactions_guard() FROM PUBLIC;
"""

RECORD_HOOKS = """
-- No money without its record, for disputes of donations: each dispute entry (funds withdrawn
-- or reinstated, fee charged or returned) is named by the record of its balance transaction.
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_dispute(entry public.ledger_entries)
RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE chain_entry_id = entry.id AND kind = 'donation_dispute')
        OR EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE fee_entry_id = entry.id AND kind = 'donation_dispute')
$$;

-- No money without its record, for refunds, chargebacks and repayments of wallet deposits:
-- each entry on the wallet or on plat_losses is named by its record.
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_deposit_reversal(entry public.ledger_entries)
RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE chain_entry_id = entry.id AND kind <> 'donation_dispute')
        OR EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE loss_entry_id = entry.id)
        OR EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE fee_entry_id = entry.id AND kind <> 'donation_dispute')
$$;
"""

PREVIOUS_RECORD_HOOKS = """
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_dispute(entry public.ledger_entries)
RETURNS boolean
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

CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_deposit_reversal(entry public.ledger_entries)
RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$ SELECT false $$;
"""


def disputes_guard(*, capped: bool) -> str:
    """0008's dispute guard; since 0012 without the cap at the donation's amount."""
    cap = "OR NEW.amount > donation.amount" if capped else ""
    bound = (
        "at most its amount"
        if capped
        else "Stripe may dispute more than\n-- the charge, after currency conversion"
    )
    return f"""
-- Disputes: what was disputed (donation, amount, currency, reason, when) never changes, and
-- is in the donation's currency ({bound}). The legacy markers (withdrawn and
-- reinstated entries, before 0012) are write-once and name the right entries.
CREATE OR REPLACE FUNCTION donation_disputes_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    donation public.donations%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND (
        (NEW.id, NEW.donation_id, NEW.amount, NEW.currency, NEW.reason, NEW.created_at)
        IS DISTINCT FROM
        (OLD.id, OLD.donation_id, OLD.amount, OLD.currency, OLD.reason, OLD.created_at)
        OR (OLD.withdrawn_entry_id IS NOT NULL
            AND NEW.withdrawn_entry_id IS DISTINCT FROM OLD.withdrawn_entry_id)
        OR (OLD.reinstated_entry_id IS NOT NULL
            AND NEW.reinstated_entry_id IS DISTINCT FROM OLD.reinstated_entry_id)) THEN
        RAISE EXCEPTION 'donation_disputes: the terms and ledger markers of % never change',
            OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_disputes_immutable';
    END IF;
    SELECT * INTO donation FROM public.donations WHERE id = NEW.donation_id;
    IF TG_OP = 'INSERT' AND (NEW.currency <> donation.currency {cap}) THEN
        RAISE EXCEPTION 'donation_disputes: % does not match donation %', NEW.id,
            NEW.donation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_disputes_terms';
    END IF;
    IF (NEW.withdrawn_entry_id IS NOT NULL
        AND NEW.withdrawn_entry_id IS DISTINCT FROM (CASE TG_OP WHEN 'UPDATE'
                                                     THEN OLD.withdrawn_entry_id END)
        AND NOT public.ledger_entry_matches(NEW.withdrawn_entry_id, 'dispute_funds_withdrawn',
                                            donation.organisation_id, -NEW.amount,
                                            NEW.currency))
       OR (NEW.reinstated_entry_id IS NOT NULL
           AND NEW.reinstated_entry_id IS DISTINCT FROM (CASE TG_OP WHEN 'UPDATE'
                                                         THEN OLD.reinstated_entry_id END)
           AND NOT public.ledger_entry_matches(NEW.reinstated_entry_id,
                                               'dispute_funds_reinstated',
                                               donation.organisation_id, NEW.amount,
                                               NEW.currency)) THEN
        RAISE EXCEPTION 'donation_disputes: % must name entries moving % % on %', NEW.id,
            NEW.amount, NEW.currency, donation.organisation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_disputes_entry_matches';
    END IF;
    RETURN NEW;
END
$$;
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
    op.execute(GUARD)
    op.execute(RECORD_HOOKS)
    op.execute(disputes_guard(capped=False))


def downgrade() -> None:
    op.execute(disputes_guard(capped=True))
    op.execute(PREVIOUS_RECORD_HOOKS)
    op.execute(DOWNGRADE)
