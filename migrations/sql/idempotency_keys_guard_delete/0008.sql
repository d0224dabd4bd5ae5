-- Idempotency keys: a stored first response is replayed until its key expires, so it may be
-- deleted only once expired (the service's sweep and its purge of an expired key do just
-- that); deleting a live key would let a retry move money twice.
CREATE OR REPLACE FUNCTION idempotency_keys_guard_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.expires_at > now() THEN
        RAISE EXCEPTION 'idempotency_keys: the key % of % has not expired', OLD.key, OLD.scope
            USING ERRCODE = 'insufficient_privilege',
                  CONSTRAINT = 'idempotency_keys_delete_expired';
    END IF;
    RETURN OLD;
END
$$;
