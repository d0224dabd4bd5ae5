-- A chain never changes and is never deleted (ledger_refuse_change()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER ledger_chains_no_update_delete
BEFORE UPDATE OR DELETE ON ledger_chains
FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_no_update_delete;
