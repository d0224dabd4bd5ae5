-- No deadlocks across journals: a transaction that appends several journals takes all their
-- chains' locks first, in id order. Returns how many of the chains exist.
CREATE OR REPLACE FUNCTION ledger_lock_chains(chain_ids text[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    chain text;
    locked_count integer := 0;
BEGIN
    FOR chain IN SELECT id FROM public.ledger_chains WHERE id = ANY (chain_ids) ORDER BY id LOOP
        PERFORM pg_advisory_xact_lock(public.ledger_chain_lock_key(chain));
        locked_count := locked_count + 1;
    END LOOP;
    RETURN locked_count;
END
$$;
