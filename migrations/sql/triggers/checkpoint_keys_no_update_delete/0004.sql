-- Every key that ever signed a checkpoint stays listed, unchanged, for good
-- (ledger_refuse_change()). Replaced in 0007 by checkpoint_keys_no_delete and
-- checkpoint_keys_guard_update.
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER checkpoint_keys_no_update_delete
BEFORE UPDATE OR DELETE ON checkpoint_keys
FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_no_update_delete;
