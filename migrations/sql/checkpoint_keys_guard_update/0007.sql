-- A key is never deleted and its identity never changes; its status only moves forward:
-- active -> retired -> revoked, or active -> revoked, each time set once when it happens.
CREATE OR REPLACE FUNCTION checkpoint_keys_guard_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
BEGIN
    IF (NEW.verifier_key, NEW.created_at, NEW.activated_at)
       IS DISTINCT FROM (OLD.verifier_key, OLD.created_at, OLD.activated_at) THEN
        RAISE EXCEPTION 'checkpoint_keys: the key % and when it was installed never change',
            OLD.verifier_key
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT ((OLD.status, NEW.status) IN (('active', 'active'), ('retired', 'retired'),
                                         ('revoked', 'revoked'), ('active', 'retired'),
                                         ('active', 'revoked'), ('retired', 'revoked')))
       OR (OLD.retired_at IS NOT NULL AND NEW.retired_at IS DISTINCT FROM OLD.retired_at)
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at) THEN
        RAISE EXCEPTION 'checkpoint_keys: % may only move from active to retired to revoked',
            OLD.verifier_key
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkpoint_keys_transitions';
    END IF;
    RETURN NEW;
END
$$;
