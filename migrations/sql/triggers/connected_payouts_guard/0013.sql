-- Payouts: terms immutable, entry references write-once and naming the right entries
-- (connected_payouts_guard()).
CREATE TRIGGER connected_payouts_guard
BEFORE INSERT OR UPDATE ON connected_payouts
FOR EACH ROW EXECUTE FUNCTION connected_payouts_guard();
