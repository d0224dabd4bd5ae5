-- A chain is never deleted, by TRUNCATE either (ledger_refuse_change()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER ledger_chains_no_truncate
BEFORE TRUNCATE ON ledger_chains
FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_no_truncate;
