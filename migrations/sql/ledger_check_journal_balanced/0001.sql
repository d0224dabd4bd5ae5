-- Double entry: the internal legs of a journal sum to zero per currency. Checked at commit
-- (deferred), so a journal's legs may be inserted one by one, but a transaction that leaves an
-- internal journal unbalanced, or adds a leg to an already balanced one, is rejected whole.
CREATE OR REPLACE FUNCTION ledger_check_journal_balanced() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    unbalanced_currency text;
    unbalanced_total numeric;
BEGIN
    SELECT currency, sum(amount)
      INTO unbalanced_currency, unbalanced_total
      FROM public.ledger_entries
     WHERE journal_id = NEW.journal_id AND internal
     GROUP BY currency
    HAVING sum(amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: internal journal % does not balance (% % left over)',
            NEW.journal_id, unbalanced_total, unbalanced_currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_journal_balanced';
    END IF;
    RETURN NULL;
END
$$;
