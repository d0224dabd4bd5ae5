-- Cards: which card it is (wallet, provider, payment method, SetupIntent, brand, last4,
-- expiry, creation) never changes; a card is created in use, and once removed stays removed
-- (removed_at is set once), so a removed card can never be charged again.
CREATE OR REPLACE FUNCTION cards_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.removed_at IS NOT NULL THEN
            RAISE EXCEPTION 'cards: % cannot be created removed', NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'cards_immutable';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.id, NEW.wallet_id, NEW.provider, NEW.payment_method_id, NEW.setup_intent_id,
        NEW.brand, NEW.last4, NEW.exp_month, NEW.exp_year, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.wallet_id, OLD.provider, OLD.payment_method_id, OLD.setup_intent_id,
        OLD.brand, OLD.last4, OLD.exp_month, OLD.exp_year, OLD.created_at)
       OR (OLD.removed_at IS NOT NULL AND NEW.removed_at IS DISTINCT FROM OLD.removed_at) THEN
        RAISE EXCEPTION 'cards: % never changes, and stays removed once removed', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'cards_immutable';
    END IF;
    RETURN NEW;
END
$$;
