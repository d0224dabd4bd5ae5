-- No money without its record, for refunds, chargebacks and repayments of wallet deposits:
-- each entry on the wallet or on plat_losses is named by its record.
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_deposit_reversal(entry public.ledger_entries)
RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER
AS $$
    SELECT EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE chain_entry_id = entry.id AND kind <> 'donation_dispute')
        OR EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE loss_entry_id = entry.id)
        OR EXISTS (SELECT FROM public.charge_balance_transactions
                    WHERE fee_entry_id = entry.id AND kind <> 'donation_dispute')
$$;
