-- A key is never deleted (ledger_refuse_change()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER checkpoint_keys_no_delete
BEFORE DELETE ON checkpoint_keys
FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_no_delete;
