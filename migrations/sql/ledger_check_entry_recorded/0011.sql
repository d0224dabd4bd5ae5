-- No money without its record: ledger_check_entry_recorded() of 0008 (0008.sql states the
-- rule), with the dispute branches asking ledger_entry_recorded_by_dispute() and the new
-- types asking their own record's function.
CREATE OR REPLACE FUNCTION ledger_check_entry_recorded() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    recorded boolean;
BEGIN
    -- One branch per record, each its own small statement: PostgreSQL sets up every
    -- statement it runs afresh in each transaction, so only the record's own probe is paid.
    IF NEW.type = 'donation_received' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE received_entry_id = NEW.id);
    ELSIF NEW.type = 'payment_processing_fee' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE processing_fee_entry_id = NEW.id);
    ELSIF NEW.type = 'donation_refunded' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE refunded_entry_id = NEW.id);
    ELSIF NEW.type = 'donation_refund_reversed' THEN
        recorded := EXISTS (SELECT FROM public.donation_refunds
                             WHERE reversed_entry_id = NEW.id);
    ELSIF NEW.type IN ('dispute_funds_withdrawn', 'dispute_funds_reinstated', 'dispute_fee',
                       'dispute_fee_refunded') THEN
        recorded := public.ledger_entry_recorded_by_dispute(NEW);
    ELSIF NEW.type IN ('deposit_reversed', 'deposit_reinstated', 'deposit_loss',
                       'deposit_loss_recovered') THEN
        recorded := public.ledger_entry_recorded_by_deposit_reversal(NEW);
    ELSIF NEW.type IN ('payout_sent', 'payout_failed') THEN
        recorded := public.ledger_entry_recorded_by_payout(NEW);
    ELSE
        recorded := EXISTS (
            SELECT FROM public.transactions AS t
             WHERE CASE WHEN NEW.type IN ('withdrawal_reversed', 'withdrawal_fee_refunded',
                                          'fee_refunded')
                        THEN t.reversal_journal_id = NEW.journal_id
                        ELSE t.journal_id = NEW.journal_id END
               AND t.currency = NEW.currency
               -- The transaction's kind, and the chain that plays this leg's part.
               AND CASE NEW.type
                    WHEN 'deposit' THEN t.kind = 'deposit' AND NEW.chain_id = t.wallet_id
                    WHEN 'welcome_bonus' THEN
                        t.kind = 'welcome_bonus' AND NEW.chain_id = t.wallet_id
                    WHEN 'promotion_granted' THEN
                        t.kind = 'welcome_bonus' AND NEW.chain_id = 'plat_promotions'
                    WHEN 'transfer_out' THEN t.kind = 'transfer' AND NEW.chain_id = t.wallet_id
                    WHEN 'transfer_in' THEN
                        t.kind = 'transfer' AND NEW.chain_id = t.counterparty_wallet_id
                    WHEN 'wallet_donation_sent' THEN
                        t.kind = 'donation' AND NEW.chain_id = t.wallet_id
                    WHEN 'wallet_donation_received' THEN
                        t.kind = 'donation' AND NEW.chain_id = t.organisation_id
                    WHEN 'withdrawal' THEN t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'withdrawal_fee' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'fee_collected' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = 'plat_fees'
                    WHEN 'withdrawal_reversed' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'withdrawal_fee_refunded' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'fee_refunded' THEN t.kind = 'withdrawal' AND NEW.chain_id = 'plat_fees'
                    ELSE false
                   END
               -- What the journal moved on that chain is what the transaction says.
               AND (SELECT sum(e.amount) FROM public.ledger_entries AS e
                     WHERE e.journal_id = NEW.journal_id AND e.chain_id = NEW.chain_id
                       AND e.currency = NEW.currency)
                   = CASE
                    WHEN NEW.type IN ('deposit', 'welcome_bonus', 'transfer_in',
                                      'wallet_donation_received') THEN t.amount
                    WHEN NEW.type = 'promotion_granted' THEN -t.amount
                    WHEN NEW.type = 'fee_collected' THEN t.fee
                    WHEN NEW.type = 'fee_refunded' THEN -t.fee
                    WHEN NEW.type IN ('withdrawal_reversed', 'withdrawal_fee_refunded')
                        THEN t.amount + t.fee
                    ELSE -(t.amount + t.fee)
                   END);
    END IF;
    IF recorded THEN
        RETURN NULL;
    END IF;
    -- Unrecorded: refused unless the chain belongs to no one.
    IF starts_with(NEW.chain_id, 'wal_') THEN
        recorded := NOT EXISTS (SELECT FROM public.wallets WHERE id = NEW.chain_id);
    ELSIF starts_with(NEW.chain_id, 'org_') THEN
        recorded := NOT EXISTS (SELECT FROM public.organisations WHERE id = NEW.chain_id);
    END IF;
    IF NOT recorded THEN
        RAISE EXCEPTION 'ledger: no record names the % entry % (% %) on chain %, journal %',
            NEW.type, NEW.id, NEW.amount, NEW.currency, NEW.chain_id, NEW.journal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_recorded';
    END IF;
    RETURN NULL;
END
$$;
