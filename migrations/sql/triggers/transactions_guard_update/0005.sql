-- A transaction's terms never change and its status moves only along its arrows
-- (transactions_guard_update()).
CREATE TRIGGER transactions_guard_update
BEFORE UPDATE ON transactions
FOR EACH ROW EXECUTE FUNCTION transactions_guard_update();
