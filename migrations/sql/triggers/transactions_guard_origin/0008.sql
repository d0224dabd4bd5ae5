-- Deposits and withdrawals say where the money came from and went (transactions_guard_origin()).
CREATE TRIGGER transactions_guard_origin
BEFORE INSERT OR UPDATE ON transactions
FOR EACH ROW EXECUTE FUNCTION transactions_guard_origin();
