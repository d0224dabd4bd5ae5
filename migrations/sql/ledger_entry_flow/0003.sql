-- Double entry: the entry types of 0001 plus donation_refund_reversed (external): a refund
-- that Stripe recorded and then reported as failed returns the money to the organisation.
-- (0001.sql says what the two flows mean and why this is an SQL function.)
CREATE OR REPLACE FUNCTION ledger_entry_flow(entry_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN entry_type IN ('donation_received', 'donation_refunded', 'donation_refund_reversed', 'payment_processing_fee', 'payment_processing_fee_refunded', 'dispute_funds_withdrawn', 'dispute_funds_reinstated', 'dispute_fee', 'deposit', 'withdrawal', 'withdrawal_reversed') THEN 'external'
        WHEN entry_type IN ('transfer_out', 'transfer_in', 'withdrawal_fee', 'withdrawal_fee_refunded', 'fee_collected', 'fee_refunded', 'welcome_bonus', 'promotion_granted', 'wallet_donation_sent', 'wallet_donation_received') THEN 'internal'
    END
$$;
