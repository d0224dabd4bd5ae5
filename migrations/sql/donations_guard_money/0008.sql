-- Donations: a donation starts pending and off the ledger. Its references to the ledger are
-- write-once and name the right entries: received (donation_received, +amount), Stripe's fee
-- (payment_processing_fee, -processing_fee in its currency; the fee itself is set once), and
-- each refund (donation_refunded, for exactly what amount_refunded grew by; amount_refunded
-- grows only with such an entry). completed_at is set once. (0003_donations already keeps
-- the terms, the status arrows and received_entry_id once set.)
CREATE OR REPLACE FUNCTION donations_guard_money() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending'
           OR num_nonnulls(NEW.received_entry_id, NEW.processing_fee, NEW.processing_fee_entry_id,
                           NEW.refunded_entry_id, NEW.completed_at) > 0
           OR NEW.amount_refunded <> 0 OR NEW.amount_disputed <> 0 THEN
            RAISE EXCEPTION 'donations: % must start pending, with nothing received or refunded',
                NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_start_pending';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.received_entry_id IS DISTINCT FROM OLD.received_entry_id
       AND NOT public.ledger_entry_matches(NEW.received_entry_id, 'donation_received',
                                           NEW.organisation_id, NEW.amount, NEW.currency) THEN
        RAISE EXCEPTION 'donations: % must be received by a donation_received entry of % % on %',
            OLD.id, NEW.amount, NEW.currency, NEW.organisation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_entry_matches';
    END IF;
    IF (OLD.processing_fee IS NOT NULL
        AND (NEW.processing_fee, NEW.processing_fee_currency)
            IS DISTINCT FROM (OLD.processing_fee, OLD.processing_fee_currency))
       OR (OLD.processing_fee_entry_id IS NOT NULL
           AND NEW.processing_fee_entry_id IS DISTINCT FROM OLD.processing_fee_entry_id)
       OR (OLD.completed_at IS NOT NULL AND NEW.completed_at IS DISTINCT FROM OLD.completed_at)
       OR (OLD.refunded_entry_id IS NOT NULL AND NEW.refunded_entry_id IS NULL) THEN
        RAISE EXCEPTION 'donations: the fee, completion and ledger references of % are set once',
            OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_write_once';
    END IF;
    IF NEW.processing_fee_entry_id IS DISTINCT FROM OLD.processing_fee_entry_id
       AND NOT public.ledger_entry_matches(NEW.processing_fee_entry_id, 'payment_processing_fee',
                                           NEW.organisation_id, -NEW.processing_fee,
                                           NEW.processing_fee_currency) THEN
        RAISE EXCEPTION 'donations: the fee entry of % must debit % % on %', OLD.id,
            NEW.processing_fee, NEW.processing_fee_currency, NEW.organisation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_entry_matches';
    END IF;
    IF (NEW.refunded_entry_id IS DISTINCT FROM OLD.refunded_entry_id
        OR NEW.amount_refunded > OLD.amount_refunded)
       AND NOT (NEW.refunded_entry_id IS DISTINCT FROM OLD.refunded_entry_id
                AND public.ledger_entry_matches(NEW.refunded_entry_id, 'donation_refunded',
                                                NEW.organisation_id,
                                                OLD.amount_refunded - NEW.amount_refunded,
                                                NEW.currency)) THEN
        RAISE EXCEPTION 'donations: % refunds % more only by a donation_refunded entry of -% %',
            OLD.id, NEW.amount_refunded - OLD.amount_refunded,
            NEW.amount_refunded - OLD.amount_refunded, NEW.currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_entry_matches';
    END IF;
    RETURN NEW;
END
$$;
