-- Deposits and withdrawals (kinds of 'transactions', whose terms and arrows 0005_wallets
-- guards) say where the money came from and went: only a sandbox bank deposit is created
-- completed, a card deposit names its PaymentIntent, and a withdrawal settles (paid or
-- failed) only once it names its payout.
CREATE OR REPLACE FUNCTION transactions_guard_origin() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.kind = 'deposit' AND TG_OP = 'INSERT' AND NEW.status = 'completed'
        AND (NEW.source, NEW.provider) IS DISTINCT FROM ('bank', 'sandbox'))
       OR (NEW.kind = 'deposit' AND NEW.source = 'card' AND NEW.payment_intent_id IS NULL)
       OR (NEW.kind = 'withdrawal' AND NEW.status <> 'pending' AND NEW.payout_id IS NULL) THEN
        RAISE EXCEPTION 'transactions: % (%) does not name where its money came from or went',
            NEW.id, NEW.kind
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_origin';
    END IF;
    RETURN NEW;
END
$$;
