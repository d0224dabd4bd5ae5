-- A record says truly what it records (no money without its record, and no record without
-- its money): it belongs to a donation's dispute on the donation's organisation, or to a
-- wallet's deposit on that wallet; each part names the entry of the right type, chain,
-- amount and currency in the row's journal; a wallet never gets back more than it lost to
-- its deposits' reversals, and the platform never recovers more than it lost (so a
-- wallet's shortfall is never negative); a deposit is never refunded more than it paid.
CREATE OR REPLACE FUNCTION charge_balance_transactions_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    owner_chain text;
    owner_currency text;
    deposit public.transactions%ROWTYPE;
    chain_type text;
    loss_type text;
    fee_type text;
    fee_chain text;
BEGIN
    -- Write-once: a record never changes and is never deleted.
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'charge_balance_transactions: % is written once', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'charge_balance_transactions_immutable';
    END IF;
    IF NEW.kind = 'donation_dispute' THEN
        SELECT d.organisation_id INTO owner_chain
          FROM public.donations AS d
          JOIN public.donation_disputes AS dispute
            ON dispute.donation_id = d.id AND dispute.id = NEW.dispute_id
         WHERE d.id = NEW.donation_id;
        chain_type := CASE WHEN NEW.chain_amount < 0 THEN 'dispute_funds_withdrawn'
                           ELSE 'dispute_funds_reinstated' END;
        fee_type := CASE WHEN NEW.fee > 0 THEN 'dispute_fee' ELSE 'dispute_fee_refunded' END;
        fee_chain := owner_chain;
    ELSE
        SELECT * INTO deposit FROM public.transactions
         WHERE id = NEW.deposit_id AND kind = 'deposit' AND status = 'completed';
        owner_chain := deposit.wallet_id;
        owner_currency := deposit.currency;
        chain_type := CASE WHEN NEW.chain_amount < 0 THEN 'deposit_reversed'
                           ELSE 'deposit_reinstated' END;
        fee_type := CASE WHEN NEW.fee > 0 THEN 'deposit_loss' ELSE 'deposit_loss_recovered' END;
        fee_chain := 'plat_losses';
    END IF;
    loss_type := CASE WHEN NEW.loss_amount < 0 THEN 'deposit_loss'
                      ELSE 'deposit_loss_recovered' END;
    IF owner_chain IS NULL OR owner_chain <> NEW.chain_id
       OR (owner_currency IS NOT NULL AND owner_currency <> NEW.currency) THEN
        RAISE EXCEPTION 'charge_balance_transactions: % does not belong to chain % (% %)',
            NEW.id, NEW.chain_id, NEW.kind, coalesce(NEW.donation_id, NEW.deposit_id)
            USING ERRCODE = 'check_violation', CONSTRAINT = 'charge_balance_transactions_owner';
    END IF;
    IF (NEW.chain_amount <> 0
        AND NOT public.charge_balance_transaction_entry_matches(
            NEW.chain_entry_id, chain_type, NEW.chain_id, NEW.chain_amount, NEW.currency,
            NEW.journal_id))
       OR (NEW.loss_amount <> 0
           AND NOT public.charge_balance_transaction_entry_matches(
               NEW.loss_entry_id, loss_type, 'plat_losses', NEW.loss_amount, NEW.currency,
               NEW.journal_id))
       OR (NEW.fee <> 0
           AND NOT public.charge_balance_transaction_entry_matches(
               NEW.fee_entry_id, fee_type, fee_chain, -NEW.fee, NEW.currency,
               NEW.journal_id)) THEN
        RAISE EXCEPTION 'charge_balance_transactions: the entries of % do not move % (fee %) %',
            NEW.id, NEW.amount, NEW.fee, NEW.currency
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'charge_balance_transactions_entry_matches';
    END IF;
    IF NEW.kind <> 'donation_dispute' THEN
        -- Serialises the wallet's reversal records (the service takes the same lock first).
        PERFORM pg_advisory_xact_lock(hashtext('amply:wallet_losses'), hashtext(NEW.chain_id));
        IF coalesce((SELECT sum(r.chain_amount) FROM public.charge_balance_transactions AS r
                      WHERE r.chain_id = NEW.chain_id AND r.kind <> 'donation_dispute'), 0)
               + NEW.chain_amount > 0
           OR coalesce((SELECT sum(r.loss_amount) FROM public.charge_balance_transactions AS r
                         WHERE r.chain_id = NEW.chain_id AND r.kind <> 'donation_dispute'), 0)
               + NEW.loss_amount > 0
           OR (NEW.kind = 'deposit_refund'
               AND coalesce((SELECT sum(r.amount) FROM public.charge_balance_transactions AS r
                              WHERE r.deposit_id = NEW.deposit_id
                                AND r.kind = 'deposit_refund'), 0)
                   + NEW.amount < -deposit.amount) THEN
            RAISE EXCEPTION 'charge_balance_transactions: % returns more than % lost',
                NEW.id, NEW.chain_id
                USING ERRCODE = 'check_violation',
                      CONSTRAINT = 'charge_balance_transactions_within_losses';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
