-- A transaction's terms never change, and its status moves only along these arrows:
--   transfer:   pending_confirmation -> completed | cancelled | expired
--   deposit:    pending -> completed | failed, failed -> completed (paid on a retry)
--   withdrawal: pending -> paid | failed
-- (A transfer is created completed, pending_confirmation or blocked; gifts and bonuses are
-- created completed.) Journals, once named, stay.
CREATE OR REPLACE FUNCTION transactions_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.kind, NEW.wallet_id, NEW.counterparty_wallet_id, NEW.organisation_id, NEW.fund_id,
        NEW.money_request_id, NEW.card_id, NEW.amount, NEW.fee, NEW.currency, NEW.description,
        NEW.risk_flags, NEW.blocked_reason, NEW.hold_expires_at, NEW.source, NEW.bank_name,
        NEW.speed, NEW.provider, NEW.public_name, NEW.created_at)
       IS DISTINCT FROM
       (OLD.kind, OLD.wallet_id, OLD.counterparty_wallet_id, OLD.organisation_id, OLD.fund_id,
        OLD.money_request_id, OLD.card_id, OLD.amount, OLD.fee, OLD.currency, OLD.description,
        OLD.risk_flags, OLD.blocked_reason, OLD.hold_expires_at, OLD.source, OLD.bank_name,
        OLD.speed, OLD.provider, OLD.public_name, OLD.created_at)
       OR (OLD.payment_intent_id IS NOT NULL
           AND NEW.payment_intent_id IS DISTINCT FROM OLD.payment_intent_id)
       OR (OLD.payout_id IS NOT NULL AND NEW.payout_id IS DISTINCT FROM OLD.payout_id)
       OR (OLD.journal_id IS NOT NULL AND NEW.journal_id IS DISTINCT FROM OLD.journal_id)
       OR (OLD.reversal_journal_id IS NOT NULL
           AND NEW.reversal_journal_id IS DISTINCT FROM OLD.reversal_journal_id) THEN
        RAISE EXCEPTION 'transactions: the terms of % never change', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_immutable';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND (OLD.kind, OLD.status, NEW.status) NOT IN (
        ('transfer', 'pending_confirmation', 'completed'),
        ('transfer', 'pending_confirmation', 'cancelled'),
        ('transfer', 'pending_confirmation', 'expired'),
        ('deposit', 'pending', 'completed'),
        ('deposit', 'pending', 'failed'),
        ('deposit', 'failed', 'completed'),
        ('withdrawal', 'pending', 'paid'),
        ('withdrawal', 'pending', 'failed')
    ) THEN
        RAISE EXCEPTION 'transactions: % (%) cannot go from % to %', OLD.id, OLD.kind,
            OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_status_transition';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
