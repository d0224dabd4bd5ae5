-- Dropped: a key's status now changes (0007), so updates are checkpoint_keys_guard_update's to
-- judge and deletes checkpoint_keys_no_delete's.
DROP TRIGGER checkpoint_keys_no_update_delete ON checkpoint_keys;
