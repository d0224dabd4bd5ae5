-- A transaction starts only as it may start (transactions_guard_insert()).
CREATE TRIGGER transactions_guard_insert
BEFORE INSERT ON transactions
FOR EACH ROW EXECUTE FUNCTION transactions_guard_insert();
