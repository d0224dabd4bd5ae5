-- A new chain's id names its kind (ledger_chains_guard()); ledger_chains_no_update_delete and
-- ledger_chains_no_truncate keep it from changing or being deleted.
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER ledger_chains_guard
BEFORE INSERT ON ledger_chains
FOR EACH ROW EXECUTE FUNCTION ledger_chains_guard();
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_guard;
