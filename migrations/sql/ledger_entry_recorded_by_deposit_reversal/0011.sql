-- No money without its record, for refunds and chargebacks of wallet deposits: no record
-- names such an entry yet, so none may be appended.
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_deposit_reversal(entry public.ledger_entries)
RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$ SELECT false $$;
