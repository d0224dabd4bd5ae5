-- The ledger holds what a transaction says moved: at commit, the legs of its journal on the
-- wallet's chain sum to what the wallet sends (-(amount + fee)) or receives (+amount), a
-- transfer's recipient or a gift's organisation received the amount, and a reversal
-- returns exactly what was sent. A transaction cannot claim a journal that moved other
-- money, or another wallet's.
CREATE OR REPLACE FUNCTION transactions_check_journals() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    expected bigint;
    moved numeric;
BEGIN
    expected := CASE WHEN NEW.kind IN ('deposit', 'welcome_bonus') THEN NEW.amount
                     ELSE -(NEW.amount + NEW.fee) END;
    IF NEW.journal_id IS NOT NULL THEN
        SELECT sum(amount) INTO moved FROM public.ledger_entries
         WHERE journal_id = NEW.journal_id AND chain_id = NEW.wallet_id
           AND currency = NEW.currency;
        IF moved IS DISTINCT FROM expected THEN
            RAISE EXCEPTION 'transactions: journal % moved % on %, not %', NEW.journal_id,
                coalesce(moved, 0), NEW.wallet_id, expected
                USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_journal_matches';
        END IF;
    END IF;
    -- A transfer's recipient, or a gift's organisation, received exactly the amount.
    IF NEW.journal_id IS NOT NULL AND NEW.kind IN ('transfer', 'donation') THEN
        SELECT sum(amount) INTO moved FROM public.ledger_entries
         WHERE journal_id = NEW.journal_id
           AND chain_id = coalesce(NEW.counterparty_wallet_id, NEW.organisation_id)
           AND currency = NEW.currency;
        IF moved IS DISTINCT FROM NEW.amount THEN
            RAISE EXCEPTION 'transactions: journal % gave % to %, not %', NEW.journal_id,
                coalesce(moved, 0), coalesce(NEW.counterparty_wallet_id, NEW.organisation_id),
                NEW.amount
                USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_journal_matches';
        END IF;
    END IF;
    IF NEW.reversal_journal_id IS NOT NULL THEN
        SELECT sum(amount) INTO moved FROM public.ledger_entries
         WHERE journal_id = NEW.reversal_journal_id AND chain_id = NEW.wallet_id
           AND currency = NEW.currency;
        IF moved IS DISTINCT FROM -expected THEN
            RAISE EXCEPTION 'transactions: reversal % returned % on %, not %',
                NEW.reversal_journal_id, coalesce(moved, 0), NEW.wallet_id, -expected
                USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_journal_matches';
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
