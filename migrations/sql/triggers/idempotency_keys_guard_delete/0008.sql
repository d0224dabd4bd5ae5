-- Idempotency keys are deleted only once expired (idempotency_keys_guard_delete()).
CREATE TRIGGER idempotency_keys_guard_delete
BEFORE DELETE ON idempotency_keys
FOR EACH ROW EXECUTE FUNCTION idempotency_keys_guard_delete();
