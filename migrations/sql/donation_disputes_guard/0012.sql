-- Disputes: what was disputed (donation, amount, currency, reason, when) never changes, and
-- is in the donation's currency (Stripe may dispute more than the charge, after currency
-- conversion). The legacy markers (withdrawn and reinstated entries, before 0012) are
-- write-once and name the right entries.
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
    IF TG_OP = 'INSERT' AND (NEW.currency <> donation.currency ) THEN
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
