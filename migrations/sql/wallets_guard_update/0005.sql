-- What a wallet is never changes: its chain, its owner, its currency. Only the Stripe
-- Customer may be set, once.
CREATE OR REPLACE FUNCTION wallets_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.user_id, NEW.currency, NEW.created_at)
       IS DISTINCT FROM (OLD.id, OLD.user_id, OLD.currency, OLD.created_at)
       OR (OLD.stripe_customer_id IS NOT NULL
           AND NEW.stripe_customer_id IS DISTINCT FROM OLD.stripe_customer_id) THEN
        RAISE EXCEPTION 'wallets: % may not change its chain, owner or currency', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'wallets_immutable';
    END IF;
    RETURN NEW;
END;
$$;
