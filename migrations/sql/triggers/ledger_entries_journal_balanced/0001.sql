-- Double entry: the internal legs of a journal sum to zero per currency, checked at commit
-- (ledger_check_journal_balanced()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE CONSTRAINT TRIGGER ledger_entries_journal_balanced
AFTER INSERT ON ledger_entries
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
WHEN (new.internal)
EXECUTE FUNCTION ledger_check_journal_balanced();
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_journal_balanced;
