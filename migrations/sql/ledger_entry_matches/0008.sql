-- Entry references point at the right entry: the entry exists with exactly this type, chain,
-- amount and currency. (Callers are the row guards of 0008_money_row_guards, which run as
-- their owner.)
CREATE OR REPLACE FUNCTION ledger_entry_matches(
    entry_id text, entry_type text, chain text, entry_amount bigint, entry_currency text
) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM public.ledger_entries
                    WHERE id = entry_id AND type = entry_type AND chain_id = chain
                      AND amount = entry_amount AND currency = entry_currency)
$$;
