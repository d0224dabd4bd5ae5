-- A chain never changes and is never deleted. A new chain has a well-formed id whose prefix
-- names its kind (org_, wal_, plat_), so an export cannot relabel a wallet chain to escape
-- the non-negative rule.
CREATE OR REPLACE FUNCTION ledger_chains_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
DECLARE
    kind_prefix text;
BEGIN
    IF NEW.id !~ '^[a-z]+_[0-9A-Za-z]+$' OR octet_length(NEW.id) > 80 THEN
        RAISE EXCEPTION 'ledger: malformed chain id %', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_chains_id';
    END IF;
    kind_prefix := CASE NEW.kind
        WHEN 'organisation' THEN 'org' WHEN 'wallet' THEN 'wal' WHEN 'platform' THEN 'plat'
    END;
    IF split_part(NEW.id, '_', 1) IS DISTINCT FROM kind_prefix THEN
        RAISE EXCEPTION 'ledger: a % chain id must start with its kind''s prefix, not %',
            NEW.kind, NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_chains_kind_prefix';
    END IF;
    RETURN NEW;
END
$$;
