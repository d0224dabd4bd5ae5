-- Never sign what the chain does not hold: a checkpoint names an entry that exists at that
-- position with that hash, and its signed text says exactly that chain, size and hash. Since
-- the ledger is append-only, two checkpoints that each match the chain agree with each
-- other: Amply can never have published two inconsistent ones. Checkpoints only move
-- forward, so the latest one always covers every earlier one.
CREATE OR REPLACE FUNCTION ledger_checkpoints_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
    lines text[] := string_to_array(NEW.note, E'\n');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_entries
                    WHERE chain_id = NEW.chain_id AND seq = NEW.size
                      AND entry_hash = NEW.root_hash) THEN
        RAISE EXCEPTION 'ledger_checkpoints: chain % has no entry % with hash %',
            NEW.chain_id, NEW.size, NEW.root_hash
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_match_chain';
    END IF;
    IF right(lines[1], length(NEW.chain_id) + 1) <> '/' || NEW.chain_id
       OR lines[2] <> NEW.size::text
       OR lines[3] <> encode(decode(substr(NEW.root_hash, 8), 'hex'), 'base64') THEN
        RAISE EXCEPTION 'ledger_checkpoints: the note does not say chain %, size %, hash %',
            NEW.chain_id, NEW.size, NEW.root_hash
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_note_matches';
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_checkpoints
                WHERE chain_id = NEW.chain_id AND size >= NEW.size) THEN
        RAISE EXCEPTION 'ledger_checkpoints: chain % already has a checkpoint at or past %',
            NEW.chain_id, NEW.size
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_forward';
    END IF;
    RETURN NEW;
END
$$;
