-- No money without its record, for payouts of connected accounts: no record names such an
-- entry yet, so none may be appended.
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_payout(
    entry public.ledger_entries
) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$ SELECT false $$;
