-- Creation is the other arrow: what a transaction may start as.
CREATE OR REPLACE FUNCTION transactions_guard_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.kind, NEW.status) NOT IN (
        ('transfer', 'completed'), ('transfer', 'pending_confirmation'),
        ('transfer', 'blocked'), ('deposit', 'pending'), ('deposit', 'completed'),
        ('withdrawal', 'pending'), ('donation', 'completed'), ('welcome_bonus', 'completed')
    ) THEN
        RAISE EXCEPTION 'transactions: a % cannot start %', NEW.kind, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_status_transition';
    END IF;
    RETURN NEW;
END;
$$;
