-- Disputes: the terms never change, and the ledger markers are write-once and name the right
-- entries (donation_disputes_guard()).
CREATE TRIGGER donation_disputes_guard
BEFORE INSERT OR UPDATE ON donation_disputes
FOR EACH ROW EXECUTE FUNCTION donation_disputes_guard();
