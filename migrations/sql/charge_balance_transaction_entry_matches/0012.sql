-- Entry references point at the right entry: this type, chain, amount and currency, in the
-- row's journal.
CREATE OR REPLACE FUNCTION charge_balance_transaction_entry_matches(
    entry_id text, entry_type text, chain text, entry_amount bigint, entry_currency text,
    journal text
) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM public.ledger_entries
                    WHERE id = entry_id AND type = entry_type AND chain_id = chain
                      AND amount = entry_amount AND currency = entry_currency
                      AND journal_id = journal)
$$;
