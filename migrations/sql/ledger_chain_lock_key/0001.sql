-- Which lock stands for a chain: a transaction-level advisory lock on a 64-bit hash of its id
-- (distinct chains sharing a key would merely queue behind each other). Waiters are served
-- in order and nothing is written to take it.
CREATE OR REPLACE FUNCTION ledger_chain_lock_key(chain_id text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.hashtextextended(chain_id, 1095585868) $$;
