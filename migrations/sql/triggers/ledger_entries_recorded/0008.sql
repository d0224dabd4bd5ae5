-- No money without its record: at commit, every entry on a chain that belongs to someone is named
-- by the business row that records it (ledger_check_entry_recorded()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE CONSTRAINT TRIGGER ledger_entries_recorded
AFTER INSERT ON ledger_entries
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
EXECUTE FUNCTION ledger_check_entry_recorded();
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_recorded;
