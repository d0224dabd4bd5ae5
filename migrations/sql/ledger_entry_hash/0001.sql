-- Honest hashes: entry_hash is 'sha256:' and the lower-case hex SHA-256 of the netstrings
-- (ledger_netstring()) of the version tag and the eleven fields of an entry, in order
-- (docs/ledger-format.md §2). A plain SQL function, inlined (ledger_netstring/0001.sql).
CREATE OR REPLACE FUNCTION ledger_entry_hash(
    chain_id text, seq bigint, entry_id text, entry_type text, amount bigint,
    currency text, balance_after bigint, metadata text, journal_id text,
    created_at timestamptz, prev_entry_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT 'sha256:' || pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
        public.ledger_netstring('amply-ledger-entry/v1')
        || public.ledger_netstring(chain_id)
        || public.ledger_netstring(seq::text)
        || public.ledger_netstring(entry_id)
        || public.ledger_netstring(entry_type)
        || public.ledger_netstring(amount::text)
        || public.ledger_netstring(currency)
        || public.ledger_netstring(balance_after::text)
        || public.ledger_netstring(metadata)
        || public.ledger_netstring(journal_id)
        || public.ledger_netstring(public.ledger_format_timestamp(created_at))
        || public.ledger_netstring(coalesce(prev_entry_hash, '')),
        'UTF8')), 'hex')
$$;
