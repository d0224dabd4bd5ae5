-- Append-only: no UPDATE, DELETE or TRUNCATE of an entry, by anyone, the owner included. (A
-- role that may ALTER the table, the owner or a superuser, could disable these triggers
-- first; what such a role changes is caught by verification, which recomputes every hash.)
CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is forbidden, the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
