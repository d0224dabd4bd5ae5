-- Every user gets one wallet at sign-up, checked at commit (users_assert_has_wallet()).
CREATE CONSTRAINT TRIGGER users_have_wallets
AFTER INSERT ON users
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION users_assert_has_wallet();
