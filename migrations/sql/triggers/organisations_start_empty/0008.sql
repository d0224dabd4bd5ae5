-- No money without its record: a chain cannot be given to an organisation once it holds entries
-- (ledger_chain_starts_empty()).
CREATE TRIGGER organisations_start_empty
BEFORE INSERT ON organisations
FOR EACH ROW EXECUTE FUNCTION ledger_chain_starts_empty();
