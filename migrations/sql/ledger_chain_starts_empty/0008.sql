-- No money without its record: a chain that belongs to no one is exempt from the rule
-- (ledger_check_entry_recorded()), so a chain cannot be given to a wallet or an
-- organisation once it holds entries, so that an ownerless chain's unrecorded money can
-- never become someone's.
CREATE OR REPLACE FUNCTION ledger_chain_starts_empty() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM public.ledger_entries WHERE chain_id = NEW.id) THEN
        RAISE EXCEPTION '%: chain % already holds entries', TG_TABLE_NAME, NEW.id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'wallets_and_organisations_start_empty';
    END IF;
    RETURN NEW;
END
$$;
