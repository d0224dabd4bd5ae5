-- Payouts: terms immutable, entry references write-once and naming the right entries
-- (0013_connected_payouts lists the rules).
CREATE OR REPLACE FUNCTION connected_payouts_guard() RETURNS trigger
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
