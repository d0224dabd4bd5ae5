-- API keys never change, and stay revoked once revoked (api_keys_guard_update()).
CREATE TRIGGER api_keys_guard_update
BEFORE UPDATE ON api_keys
FOR EACH ROW EXECUTE FUNCTION api_keys_guard_update();
