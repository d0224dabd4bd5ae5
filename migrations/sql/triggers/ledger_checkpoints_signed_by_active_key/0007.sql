-- A checkpoint is Amply's only if the active key signed it
-- (ledger_checkpoints_signed_by_active_key()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER ledger_checkpoints_signed_by_active_key
BEFORE INSERT ON ledger_checkpoints
FOR EACH ROW EXECUTE FUNCTION ledger_checkpoints_signed_by_active_key();
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_signed_by_active_key;
