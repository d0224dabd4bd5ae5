-- A checkpoint is Amply's only if the active key signed it: its row names that key, its
-- origin starts with the key's name, its one signature line carries the key's name and id
-- and 68 bytes (id and Ed25519 signature), and it was issued now (within five minutes), so
-- that a retired key's checkpoints all predate its retirement.
CREATE OR REPLACE FUNCTION ledger_checkpoints_signed_by_active_key() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
    active text := (SELECT verifier_key FROM checkpoint_keys WHERE status = 'active');
    key_name text := split_part(active, '+', 1);
    key_id text := split_part(active, '+', 2);
    body_and_signatures text[] := string_to_array(NEW.note, E'\n\n');
    signature_lines text[] := string_to_array(rtrim(body_and_signatures[2], E'\n'), E'\n');
    signature bytea;
BEGIN
    IF active IS NULL OR NEW.verifier_key IS DISTINCT FROM active THEN
        RAISE EXCEPTION 'ledger_checkpoints: % is not the active signing key', NEW.verifier_key
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_active_key';
    END IF;
    IF cardinality(body_and_signatures) <> 2
       OR cardinality(signature_lines) <> 1
       OR split_part(signature_lines[1], ' ', 1) <> U&'\2014'
       OR split_part(signature_lines[1], ' ', 2) <> key_name
       OR split_part(NEW.note, E'\n', 1) NOT LIKE key_name || '/ledger/%' THEN
        RAISE EXCEPTION 'ledger_checkpoints: the note is not signed by % alone', active
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_active_key';
    END IF;
    BEGIN
        signature := decode(split_part(signature_lines[1], ' ', 3), 'base64');
    EXCEPTION WHEN invalid_parameter_value THEN
        signature := NULL;
    END;
    IF signature IS NULL OR length(signature) <> 68
       OR encode(substr(signature, 1, 4), 'hex') <> key_id THEN
        RAISE EXCEPTION 'ledger_checkpoints: the signature is not by key id %', key_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_active_key';
    END IF;
    IF NEW.issued_at NOT BETWEEN now() - interval '5 minutes' AND now() + interval '5 minutes'
       OR split_part(body_and_signatures[1], E'\n', 4)
          <> 'time ' || ledger_format_timestamp(NEW.issued_at) THEN
        RAISE EXCEPTION 'ledger_checkpoints: a checkpoint is issued now, as its time line says'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_issued_now';
    END IF;
    RETURN NEW;
END
$$;
