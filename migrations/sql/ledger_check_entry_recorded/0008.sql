-- No money without its record: when a transaction commits, every entry it appended on a chain
-- that belongs to someone (the platform's chains, a wallet's, an organisation's) is named by
-- the business row that records it, and that row says where the money came from:
--   donation_received, payment_processing_fee, donation_refunded -> donations (by entry id)
--   donation_refund_reversed -> donation_refunds; dispute_funds_withdrawn/_reinstated ->
--   donation_disputes (by entry id); dispute_fee -> in the same journal, appended by the same
--   transaction, as its dispute's dispute_funds_withdrawn
--   deposit, withdrawal, withdrawal_fee, fee_collected, welcome_bonus, promotion_granted,
--   transfer_out, transfer_in, wallet_donation_sent, wallet_donation_received -> the
--   transaction (wallet table) of the right kind whose journal_id it is, on the chain that
--   plays that leg's part, and the journal moved there exactly what that transaction says
--   (so legs added later to an old journal are refused too)
--   withdrawal_reversed, withdrawal_fee_refunded, fee_refunded -> likewise, by the
--   withdrawal's reversal_journal_id.
-- The entry references are UNIQUE and checked for type, chain, amount and currency by the
-- row guards of 0008_money_row_guards, so one record covers one entry. Honest appends cost
-- one index probe per leg, at commit (and the transaction legs one more, on their journal).
-- A chain that belongs to no one (no wallet or organisation has its id) holds no one's money
-- and is exempt; it can never come to belong to anyone with entries on it
-- (ledger_chain_starts_empty()). Tests and benchmarks append to such chains.
-- Like ledger_entries_assign() since 0006_faster_appends, it runs with its caller's rights and
-- search_path, which spares a search_path switch per leg: whoever may append may read every
-- table it reads, and every name in it is qualified (0006 says why that is safe).
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
    ELSIF NEW.type = 'dispute_funds_withdrawn' THEN
        recorded := EXISTS (SELECT FROM public.donation_disputes
                             WHERE withdrawn_entry_id = NEW.id);
    ELSIF NEW.type = 'dispute_funds_reinstated' THEN
        recorded := EXISTS (SELECT FROM public.donation_disputes
                             WHERE reinstated_entry_id = NEW.id);
    ELSIF NEW.type = 'dispute_fee' THEN
        -- Appended by the same statement (so the same transaction: equal xmin) as the
        -- withdrawal of the dispute's funds, in its journal, on its chain.
        recorded := EXISTS (
            SELECT FROM public.ledger_entries AS withdrawn
              JOIN public.donation_disputes AS dispute
                ON dispute.withdrawn_entry_id = withdrawn.id
             WHERE withdrawn.journal_id = NEW.journal_id AND withdrawn.chain_id = NEW.chain_id
               AND withdrawn.xmin = (SELECT fee.xmin FROM public.ledger_entries AS fee
                                      WHERE fee.id = NEW.id));
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
