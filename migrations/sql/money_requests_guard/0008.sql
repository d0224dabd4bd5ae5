-- Money requests: created pending (0005_wallets keeps the terms and lets a request leave
-- pending once); resolved_at is set once; and a request is 'paid' only when, at commit, a
-- completed transfer of its amount from its payer to its requester names it.
CREATE OR REPLACE FUNCTION money_requests_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'INSERT' AND (NEW.status <> 'pending' OR NEW.resolved_at IS NOT NULL))
       OR (TG_OP = 'UPDATE' AND OLD.resolved_at IS NOT NULL
           AND NEW.resolved_at IS DISTINCT FROM OLD.resolved_at) THEN
        RAISE EXCEPTION 'money_requests: % starts pending and is resolved once', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'money_requests_status_transition';
    END IF;
    RETURN NEW;
END
$$;
