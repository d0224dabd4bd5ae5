-- A row's key never changes and its sums only move forward (chain_totals_guard()).
CREATE TRIGGER chain_totals_guard
BEFORE UPDATE ON chain_totals
FOR EACH ROW EXECUTE FUNCTION chain_totals_guard();
