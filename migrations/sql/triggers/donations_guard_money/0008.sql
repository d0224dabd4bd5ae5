-- Donations start pending; their ledger references are write-once and name the right entries
-- (donations_guard_money()).
CREATE TRIGGER donations_guard_money
BEFORE INSERT OR UPDATE ON donations
FOR EACH ROW EXECUTE FUNCTION donations_guard_money();
