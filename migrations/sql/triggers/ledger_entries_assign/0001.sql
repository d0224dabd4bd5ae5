-- Linear chains, honest hashes, balances: before every insert, ledger_entries_assign() checks what
-- the caller supplied and assigns the rest, holding the chain's lock.
-- ENABLE ALWAYS: it fires in every session_replication_role, so a 'replica' session cannot skip it.
CREATE TRIGGER ledger_entries_assign
BEFORE INSERT ON ledger_entries
FOR EACH ROW EXECUTE FUNCTION ledger_entries_assign();
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_assign;
