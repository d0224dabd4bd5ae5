-- A key's identity never changes and its status only moves forward
-- (checkpoint_keys_guard_update()).
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER checkpoint_keys_guard_update
BEFORE UPDATE ON checkpoint_keys
FOR EACH ROW EXECUTE FUNCTION checkpoint_keys_guard_update();
ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_guard_update;
