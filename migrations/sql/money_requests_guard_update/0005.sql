-- A request's terms never change, and it leaves 'pending' once, for good.
CREATE OR REPLACE FUNCTION money_requests_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.requester_wallet_id, NEW.payer_wallet_id, NEW.amount, NEW.currency,
        NEW.description, NEW.expires_at, NEW.created_at)
       IS DISTINCT FROM
       (OLD.requester_wallet_id, OLD.payer_wallet_id, OLD.amount, OLD.currency,
        OLD.description, OLD.expires_at, OLD.created_at) THEN
        RAISE EXCEPTION 'money_requests: the terms of % never change', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'money_requests_immutable';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'money_requests: % cannot go from % to %', OLD.id, OLD.status,
            NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'money_requests_status_transition';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
