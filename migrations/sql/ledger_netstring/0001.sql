-- Honest hashes: the canonical encoding of docs/ledger-format.md §2, byte for byte the same as
-- amply.lib.crypto.canonical_preimage(). A netstring is '<UTF-8 byte length>:<text>,'.
-- This, ledger_format_timestamp() and ledger_entry_hash() are plain SQL functions without
-- SET clauses so that PostgreSQL inlines them (a SET clause would cost a configuration save
-- and restore on every call); every name in them is schema-qualified instead.
CREATE OR REPLACE FUNCTION ledger_netstring(field text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.octet_length(field)::text || ':' || field || ',' $$;
