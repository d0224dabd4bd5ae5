-- Double entry: which entry types exist, and whether each moves money inside Amply
-- ('internal': both legs are on Amply chains and must balance) or across its edge
-- ('external': card payments, refunds, bank deposits, payouts: one leg naming the outside
-- reference in its metadata). ledger_entries_assign() refuses an unknown type and marks the
-- internal legs that the deferred journal check sums. A migration that adds types adds a
-- new version of this file.
-- An SQL function, so that PostgreSQL inlines it into the (cached) plan of the trigger
-- function that calls it; it is deliberately not used in CHECK constraints or trigger
-- WHEN clauses, which PostgreSQL re-plans on every statement.
CREATE OR REPLACE FUNCTION ledger_entry_flow(entry_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN entry_type IN ('donation_received', 'donation_refunded', 'payment_processing_fee', 'payment_processing_fee_refunded', 'dispute_funds_withdrawn', 'dispute_funds_reinstated', 'dispute_fee', 'deposit', 'withdrawal', 'withdrawal_reversed') THEN 'external'
        WHEN entry_type IN ('transfer_out', 'transfer_in', 'withdrawal_fee', 'withdrawal_fee_refunded', 'fee_collected', 'fee_refunded', 'welcome_bonus', 'promotion_granted', 'wallet_donation_sent', 'wallet_donation_received') THEN 'internal'
    END
$$;
