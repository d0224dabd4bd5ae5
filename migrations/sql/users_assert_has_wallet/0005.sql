-- Every user gets one wallet at sign-up: checked when the transaction that created the user
-- commits.
CREATE OR REPLACE FUNCTION users_assert_has_wallet() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM public.wallets WHERE user_id = NEW.id) THEN
        RAISE EXCEPTION 'users: % was created without a wallet', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'users_have_wallets';
    END IF;
    RETURN NULL;
END;
$$;
