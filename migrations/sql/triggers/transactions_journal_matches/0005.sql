-- At commit, the ledger holds what a transaction says moved (transactions_check_journals()).
CREATE CONSTRAINT TRIGGER transactions_journal_matches
AFTER INSERT OR UPDATE OF journal_id, reversal_journal_id ON transactions
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
WHEN (new.journal_id IS NOT NULL)
EXECUTE FUNCTION transactions_check_journals();
