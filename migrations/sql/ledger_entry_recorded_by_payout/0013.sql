-- No money without its record, for payouts: each payout entry is named by its payout's row,
-- on that payout's organisation's chain (the row's guard checks type, amount and currency).
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_payout(entry public.ledger_entries)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    IF entry.type = 'payout_sent' THEN
        RETURN EXISTS (SELECT FROM public.connected_payouts
                        WHERE sent_entry_id = entry.id AND organisation_id = entry.chain_id);
    ELSIF entry.type = 'payout_failed' THEN
        RETURN EXISTS (SELECT FROM public.connected_payouts
                        WHERE failed_entry_id = entry.id AND organisation_id = entry.chain_id);
    END IF;
    RETURN false;
END
$$;
