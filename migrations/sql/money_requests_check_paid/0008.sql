-- Money requests: a request is 'paid' only when, at commit, a completed transfer of its
-- amount from its payer to its requester names it (the deferred trigger
-- money_requests_paid_by_transfer).
CREATE OR REPLACE FUNCTION money_requests_check_paid() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM public.transactions
                    WHERE money_request_id = NEW.id AND kind = 'transfer'
                      AND status = 'completed' AND wallet_id = NEW.payer_wallet_id
                      AND counterparty_wallet_id = NEW.requester_wallet_id
                      AND amount = NEW.amount AND currency = NEW.currency) THEN
        RAISE EXCEPTION 'money_requests: % is paid by no completed transfer', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'money_requests_paid_by_transfer';
    END IF;
    RETURN NULL;
END
$$;
