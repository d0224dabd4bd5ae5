-- Honest hashes: the same hash as ledger_entry_hash_of(), from created_at as stored
-- (auditors' test vectors check this one); it keeps the signature of 0001.
CREATE OR REPLACE FUNCTION ledger_entry_hash(
    chain_id text, seq bigint, entry_id text, entry_type text, amount bigint,
    currency text, balance_after bigint, metadata text, journal_id text,
    created_at timestamptz, prev_entry_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT public.ledger_entry_hash_of(chain_id, seq, entry_id, entry_type, amount, currency,
        balance_after, metadata, journal_id, public.ledger_format_timestamp(created_at),
        prev_entry_hash)
$$;
