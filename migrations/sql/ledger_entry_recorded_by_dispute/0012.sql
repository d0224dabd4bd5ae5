-- No money without its record, for disputes of donations: each dispute entry (funds withdrawn
-- or reinstated, fee charged or returned) is named by the record of its balance transaction.
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_dispute(entry public.ledger_entries)
RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE chain_entry_id = entry.id AND kind = 'donation_dispute')
        OR EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE fee_entry_id = entry.id AND kind = 'donation_dispute')
$$;
