-- A donor's receipt opens the salted commitment on the donation's public entry
-- (docs/ledger-format.md §7). The salt is fixed when the donation is created: changing it
-- would take from the donor the means to prove the entry is theirs.
CREATE OR REPLACE FUNCTION donations_keep_receipt_salt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.receipt_salt IS DISTINCT FROM OLD.receipt_salt THEN
        RAISE EXCEPTION 'donations: the receipt salt of % never changes', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_immutable';
    END IF;
    RETURN NEW;
END
$$;
