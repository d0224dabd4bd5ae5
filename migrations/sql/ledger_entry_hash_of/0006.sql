-- Honest hashes: the canonical encoding of docs/ledger-format.md §2, byte for byte the same as
-- amply.lib.crypto.canonical_preimage(): the netstrings '<UTF-8 byte length>:<text>,' of the
-- version tag and the eleven fields, in order, hashed with SHA-256; here with created_at
-- already in its canonical text form (ledger_format_timestamp()). format() writes NULL as
-- empty text, which is what prev_entry_hash needs at seq 1 (its netstring is '0:,'); no
-- other field of an entry is ever NULL. Plain SQL functions without SET clauses, so that
-- PostgreSQL inlines them into the caller's expression; every name in them is qualified.
CREATE OR REPLACE FUNCTION ledger_entry_hash_of(
    chain_id text, seq bigint, entry_id text, entry_type text, amount bigint,
    currency text, balance_after bigint, metadata text, journal_id text,
    created_at text, prev_entry_hash text
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT 'sha256:' || pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
        pg_catalog.format(
            '21:amply-ledger-entry/v1,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,%s:%s,'
            '%s:%s,%s:%s,%s:%s,',
            pg_catalog.octet_length(chain_id), chain_id,
            pg_catalog.octet_length(seq::text), seq,
            pg_catalog.octet_length(entry_id), entry_id,
            pg_catalog.octet_length(entry_type), entry_type,
            pg_catalog.octet_length(amount::text), amount,
            pg_catalog.octet_length(currency), currency,
            pg_catalog.octet_length(balance_after::text), balance_after,
            pg_catalog.octet_length(metadata), metadata,
            pg_catalog.octet_length(journal_id), journal_id,
            pg_catalog.octet_length(created_at), created_at,
            pg_catalog.octet_length(coalesce(prev_entry_hash, '')), prev_entry_hash),
        'UTF8')), 'hex')
$$;
