-- Never sign what the chain does not hold, and checkpoints only move forward
-- (ledger_checkpoints_guard()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER ledger_checkpoints_guard
BEFORE INSERT ON ledger_checkpoints
FOR EACH ROW EXECUTE FUNCTION ledger_checkpoints_guard();
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_guard;
