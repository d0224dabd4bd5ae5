-- What a wallet is never changes (wallets_guard_update()).
CREATE TRIGGER wallets_guard_update
BEFORE UPDATE ON wallets
FOR EACH ROW EXECUTE FUNCTION wallets_guard_update();
