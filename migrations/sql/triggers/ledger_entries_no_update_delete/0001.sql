-- Append-only: no UPDATE or DELETE of an entry, by anyone, the owner included
-- (ledger_refuse_change()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER ledger_entries_no_update_delete
BEFORE UPDATE OR DELETE ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_no_update_delete;
