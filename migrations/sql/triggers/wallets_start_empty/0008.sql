-- No money without its record: a chain cannot be given to a wallet once it holds entries
-- (ledger_chain_starts_empty()).
CREATE TRIGGER wallets_start_empty
BEFORE INSERT ON wallets
FOR EACH ROW EXECUTE FUNCTION ledger_chain_starts_empty();
