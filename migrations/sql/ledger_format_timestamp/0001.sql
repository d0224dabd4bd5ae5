-- Honest hashes: created_at in its canonical text form (docs/ledger-format.md §2): UTC, to
-- the microsecond, with a 'Z'. A plain SQL function, inlined (ledger_netstring/0001.sql).
CREATE OR REPLACE FUNCTION ledger_format_timestamp(moment timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;
