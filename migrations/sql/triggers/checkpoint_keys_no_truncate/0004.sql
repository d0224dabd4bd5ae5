-- Every key that ever signed a checkpoint stays listed, for good: no TRUNCATE
-- (ledger_refuse_change()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER checkpoint_keys_no_truncate
BEFORE TRUNCATE ON checkpoint_keys
FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_no_truncate;
