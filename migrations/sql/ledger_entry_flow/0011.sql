-- Double entry: the entry types of 0003 plus what Stripe moves after a payment, all external
-- (0011_reversal_entry_types): dispute_fee_refunded; deposit_reversed, deposit_reinstated,
-- deposit_loss, deposit_loss_recovered; payout_sent, payout_failed.
-- (0001.sql says what the two flows mean and why this is an SQL function.)
CREATE OR REPLACE FUNCTION ledger_entry_flow(entry_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN entry_type IN ('donation_received', 'donation_refunded', 'donation_refund_reversed', 'payment_processing_fee', 'payment_processing_fee_refunded', 'dispute_funds_withdrawn', 'dispute_funds_reinstated', 'dispute_fee', 'dispute_fee_refunded', 'deposit', 'deposit_reversed', 'deposit_reinstated', 'deposit_loss', 'deposit_loss_recovered', 'withdrawal', 'withdrawal_reversed', 'payout_sent', 'payout_failed') THEN 'external'
        WHEN entry_type IN ('transfer_out', 'transfer_in', 'withdrawal_fee', 'withdrawal_fee_refunded', 'fee_collected', 'fee_refunded', 'welcome_bonus', 'promotion_granted', 'wallet_donation_sent', 'wallet_donation_received') THEN 'internal'
    END
$$;
