-- A record says truly what it records, and is written once (charge_balance_transactions_guard()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER charge_balance_transactions_guard
BEFORE INSERT OR UPDATE OR DELETE ON charge_balance_transactions
FOR EACH ROW EXECUTE FUNCTION charge_balance_transactions_guard();
ALTER TABLE charge_balance_transactions ENABLE ALWAYS TRIGGER charge_balance_transactions_guard;
