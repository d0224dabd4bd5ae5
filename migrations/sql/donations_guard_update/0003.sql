-- What a donation is never changes once created: its organisation, fund, amount, currency
-- and PaymentIntent. Its status only moves forward: pending -> completed | failed,
-- failed -> completed (the donor retried with another card), completed -> refunded, and
-- refunded -> completed only when a refund fails after it was recorded.
CREATE OR REPLACE FUNCTION donations_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.organisation_id, NEW.fund_id, NEW.amount, NEW.currency, NEW.payment_intent_id,
        NEW.provider, NEW.stripe_account_id, NEW.receipt_token_hash, NEW.created_at)
       IS DISTINCT FROM
       (OLD.organisation_id, OLD.fund_id, OLD.amount, OLD.currency, OLD.payment_intent_id,
        OLD.provider, OLD.stripe_account_id, OLD.receipt_token_hash, OLD.created_at) THEN
        RAISE EXCEPTION 'donations: % may not change what was given, or to whom', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_immutable';
    END IF;
    IF OLD.received_entry_id IS NOT NULL
       AND NEW.received_entry_id IS DISTINCT FROM OLD.received_entry_id THEN
        RAISE EXCEPTION 'donations: % is already on the ledger', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_immutable';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND (OLD.status, NEW.status) NOT IN (
        ('pending', 'completed'), ('pending', 'failed'), ('failed', 'completed'),
        ('completed', 'refunded'), ('refunded', 'completed')
    ) THEN
        RAISE EXCEPTION 'donations: % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_status_transition';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
