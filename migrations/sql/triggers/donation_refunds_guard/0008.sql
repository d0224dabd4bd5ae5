-- Refunds: what was asked never changes, the status moves along Stripe's arrows, and the ledger
-- markers are set once (donation_refunds_guard()).
CREATE TRIGGER donation_refunds_guard
BEFORE INSERT OR UPDATE ON donation_refunds
FOR EACH ROW EXECUTE FUNCTION donation_refunds_guard();
