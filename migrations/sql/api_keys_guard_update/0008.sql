-- API keys: what a key is (organisation, name, rights, mode, prefix, hash, creator, creation)
-- never changes; a revoked key stays revoked (revoked_at is set once); last use only moves
-- forward.
CREATE OR REPLACE FUNCTION api_keys_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.organisation_id, NEW.name, NEW.read_only, NEW.mode, NEW.display_prefix,
        NEW.token_hash, NEW.created_by, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.organisation_id, OLD.name, OLD.read_only, OLD.mode, OLD.display_prefix,
        OLD.token_hash, OLD.created_by, OLD.created_at)
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
       OR NEW.last_used_at < OLD.last_used_at
       OR (OLD.last_used_at IS NOT NULL AND NEW.last_used_at IS NULL) THEN
        RAISE EXCEPTION 'api_keys: % never changes, and stays revoked once revoked', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'api_keys_immutable';
    END IF;
    RETURN NEW;
END
$$;
