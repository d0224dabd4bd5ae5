-- Refunds asked for through Amply: what was asked (donation, amount, reason, note, Stripe's
-- refund, who asked, when) never changes. Status follows Stripe's refund: pending and
-- succeeded may trade places (events arrive out of order), failed and canceled are final.
-- 'recorded' (the ledger covers it) is set once, never cleared; the reversal entry is
-- written once and must return exactly the refund's amount to the donation's organisation.
CREATE OR REPLACE FUNCTION donation_refunds_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    donation public.donations%ROWTYPE;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.recorded OR NEW.reversed_entry_id IS NOT NULL THEN
            RAISE EXCEPTION 'donation_refunds: % starts unrecorded and unreversed', NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_refunds_start';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.id, NEW.donation_id, NEW.amount, NEW.reason, NEW.note, NEW.provider_refund_id,
        NEW.requested_by_user_id, NEW.requested_by_api_key_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.donation_id, OLD.amount, OLD.reason, OLD.note, OLD.provider_refund_id,
        OLD.requested_by_user_id, OLD.requested_by_api_key_id, OLD.created_at)
       OR (OLD.recorded AND NOT NEW.recorded)
       OR (OLD.reversed_entry_id IS NOT NULL
           AND NEW.reversed_entry_id IS DISTINCT FROM OLD.reversed_entry_id) THEN
        RAISE EXCEPTION 'donation_refunds: what % asked for, and its ledger markers, never change',
            OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_refunds_immutable';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND (OLD.status, NEW.status) NOT IN (
        ('pending', 'succeeded'), ('pending', 'failed'), ('pending', 'canceled'),
        ('succeeded', 'pending'), ('succeeded', 'failed'), ('succeeded', 'canceled')
    ) THEN
        RAISE EXCEPTION 'donation_refunds: % cannot go from % to %', OLD.id, OLD.status,
            NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_refunds_status_transition';
    END IF;
    IF NEW.reversed_entry_id IS DISTINCT FROM OLD.reversed_entry_id THEN
        SELECT * INTO donation FROM public.donations WHERE id = NEW.donation_id;
        IF NOT public.ledger_entry_matches(NEW.reversed_entry_id, 'donation_refund_reversed',
                                           donation.organisation_id, NEW.amount,
                                           donation.currency) THEN
            RAISE EXCEPTION 'donation_refunds: the reversal of % must return % % to %', OLD.id,
                NEW.amount, donation.currency, donation.organisation_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_refunds_entry_matches';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
