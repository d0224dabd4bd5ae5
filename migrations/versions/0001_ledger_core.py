"""Ledger core: chains, entries, and the database rules that guard them.

Revision ID: 0001_ledger_core
Revises:
Create Date: 2026-11-21

Every invariant of SPEC.md §4 that PostgreSQL can enforce is created here, each statement
headed by the invariant it guards. ``docs/ledger-format.md`` describes the same rules for
auditors. Run as the schema owner; the service connects as ``amply_app``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_ledger_core"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRECONDITIONS = """
-- Honest hashes: octet_length() and convert_to() below count and hash UTF-8 bytes only when
-- the database itself stores UTF-8.
DO $$
BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'Amply needs a UTF8 database, this one is %',
            current_setting('server_encoding');
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amply_app') THEN
        RAISE EXCEPTION 'role amply_app is missing: create it before migrating '
            '(README.md, "Using your own PostgreSQL")';
    END IF;
END $$;
"""

ENTRY_TYPES = """
-- Which entry types exist, and whether each moves money inside Amply ('internal': both legs
-- are on Amply chains and must balance) or across its edge ('external': card payments,
-- refunds, bank deposits, payouts: one leg naming the outside reference in its metadata).
-- Later migrations add types by replacing this function. PL/pgSQL rather than SQL: a CHECK
-- constraint would re-inline (re-parse) an SQL function on every INSERT statement.
CREATE FUNCTION ledger_entry_flow(entry_type text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    RETURN CASE entry_type
        WHEN 'donation_received' THEN 'external'
        WHEN 'donation_refunded' THEN 'external'
        WHEN 'payment_processing_fee' THEN 'external'
        WHEN 'payment_processing_fee_refunded' THEN 'external'
        WHEN 'dispute_funds_withdrawn' THEN 'external'
        WHEN 'dispute_funds_reinstated' THEN 'external'
        WHEN 'dispute_fee' THEN 'external'
        WHEN 'deposit' THEN 'external'
        WHEN 'withdrawal' THEN 'external'
        WHEN 'withdrawal_reversed' THEN 'external'
        WHEN 'transfer_out' THEN 'internal'
        WHEN 'transfer_in' THEN 'internal'
        WHEN 'withdrawal_fee' THEN 'internal'
        WHEN 'withdrawal_fee_refunded' THEN 'internal'
        WHEN 'fee_collected' THEN 'internal'
        WHEN 'fee_refunded' THEN 'internal'
        WHEN 'welcome_bonus' THEN 'internal'
        WHEN 'promotion_granted' THEN 'internal'
        WHEN 'wallet_donation_sent' THEN 'internal'
        WHEN 'wallet_donation_received' THEN 'internal'
    END;
END
$$;
"""

TABLES = """
CREATE TABLE ledger_chains (
    id text PRIMARY KEY CHECK (id ~ '^[a-z]+_[0-9A-Za-z]+$' AND octet_length(id) <= 80),
    kind text NOT NULL CHECK (kind IN ('organisation', 'wallet', 'platform')),
    -- The head is a cache of the last entry, maintained only by ledger_entries_assign().
    head_seq bigint NOT NULL DEFAULT 0 CHECK (head_seq >= 0),
    head_hash text CHECK (head_hash ~ '^sha256:[0-9a-f]+$' AND octet_length(head_hash) = 71),
    balances jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((head_seq = 0) = (head_hash IS NULL))
);

COMMENT ON TABLE ledger_chains IS
    'One hash chain per organisation, per wallet, and per platform purpose.';

CREATE TABLE ledger_entries (
    id text PRIMARY KEY CHECK (id ~ '^led_[0-9A-Za-z]+$' AND octet_length(id) <= 80),
    chain_id text NOT NULL REFERENCES ledger_chains (id),
    seq bigint NOT NULL CHECK (seq >= 1),
    type text NOT NULL CHECK (ledger_entry_flow(type) IS NOT NULL),
    amount bigint NOT NULL CHECK (amount <> 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance_after bigint NOT NULL,
    -- Public metadata, stored as the exact JSON text that is hashed (never re-serialised).
    metadata text NOT NULL DEFAULT '{}'
        CHECK (octet_length(metadata) <= 8192 AND json_typeof(metadata::json) = 'object'),
    journal_id text NOT NULL
        CHECK (journal_id ~ '^jrn_[0-9A-Za-z]+$' AND octet_length(journal_id) <= 80),
    created_at timestamptz NOT NULL,
    -- 'sha256:' and 64 lowercase hex digits (regexes here avoid {n} bounds, which PostgreSQL
    -- expands into large automata, in favour of + and a length check).
    prev_entry_hash text
        CHECK (prev_entry_hash ~ '^sha256:[0-9a-f]+$' AND octet_length(prev_entry_hash) = 71),
    entry_hash text NOT NULL
        CHECK (entry_hash ~ '^sha256:[0-9a-f]+$' AND octet_length(entry_hash) = 71),
    -- Linear chains, backstops behind the per-chain lock: one entry per position, and no two
    -- entries claiming the same predecessor (a fork).
    CONSTRAINT ledger_entries_chain_seq_key UNIQUE (chain_id, seq),
    CONSTRAINT ledger_entries_chain_prev_hash_key UNIQUE (chain_id, prev_entry_hash),
    CONSTRAINT ledger_entries_genesis_link CHECK ((seq = 1) = (prev_entry_hash IS NULL))
);

CREATE INDEX ledger_entries_journal_id_idx ON ledger_entries (journal_id);

COMMENT ON TABLE ledger_entries IS
    'Append-only, hash-chained ledger entries. See docs/ledger-format.md.';
"""

HASH_FUNCTIONS = """
-- Honest hashes: the canonical encoding of docs/ledger-format.md §2, byte for byte the same as
-- amply.lib.crypto.canonical_preimage(). A netstring is '<UTF-8 byte length>:<text>,'.
-- These are plain SQL functions without SET clauses so that PostgreSQL inlines them (a SET
-- clause would cost a configuration save and restore on every call); every name in them is
-- schema-qualified instead.
CREATE FUNCTION ledger_netstring(field text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT pg_catalog.octet_length(field)::text || ':' || field || ',' $$;

CREATE FUNCTION ledger_format_timestamp(moment timestamptz) RETURNS text
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
    SELECT pg_catalog.to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION ledger_entry_hash(
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
"""

ASSIGN_TRIGGER = """
-- Linear chains, honest hashes, balances: the database, not the caller, assigns seq,
-- prev_entry_hash, balance_after, created_at and entry_hash, under a lock on the chain's head
-- row. Concurrent appends to one chain queue on that lock and each sees the head its
-- predecessor committed, so the chain never forks. Multi-chain journals take the locks in
-- chain-id order (the ledger service inserts legs sorted by chain_id), so they never deadlock.
-- Wallet chains refuse an entry that would take a balance below zero.
CREATE FUNCTION ledger_entries_assign() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    chain_kind text;
    chain_head_seq bigint;
    chain_head_hash text;
    chain_balances jsonb;
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.prev_entry_hash IS NOT NULL OR NEW.balance_after IS NOT NULL
       OR NEW.entry_hash IS NOT NULL OR NEW.created_at IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: seq, prev_entry_hash, balance_after, created_at and '
            'entry_hash are assigned by the database'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_assigned_fields';
    END IF;

    SELECT kind, head_seq, head_hash, balances
      INTO chain_kind, chain_head_seq, chain_head_hash, chain_balances
      FROM ledger_chains WHERE id = NEW.chain_id
       FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger: chain % does not exist', NEW.chain_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_chain_id_fkey';
    END IF;

    NEW.seq := chain_head_seq + 1;
    NEW.prev_entry_hash := chain_head_hash;
    NEW.balance_after := coalesce((chain_balances ->> NEW.currency)::bigint, 0) + NEW.amount;
    IF chain_kind = 'wallet' AND NEW.balance_after < 0 THEN
        RAISE EXCEPTION 'ledger: insufficient funds on chain % (% % short)',
            NEW.chain_id, -NEW.balance_after, NEW.currency
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ledger_wallet_balance_non_negative';
    END IF;
    NEW.created_at := clock_timestamp();
    NEW.entry_hash := ledger_entry_hash(
        NEW.chain_id, NEW.seq, NEW.id, NEW.type, NEW.amount, NEW.currency,
        NEW.balance_after, NEW.metadata, NEW.journal_id, NEW.created_at,
        NEW.prev_entry_hash);

    UPDATE ledger_chains
       SET head_seq = NEW.seq,
           head_hash = NEW.entry_hash,
           balances = jsonb_set(chain_balances, ARRAY[NEW.currency], to_jsonb(NEW.balance_after))
     WHERE id = NEW.chain_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_entries_assign
    BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_assign();
"""

IMMUTABILITY = """
-- Append-only: no UPDATE, DELETE or TRUNCATE of an entry, by anyone, the owner included.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is forbidden, the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ledger_entries_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_entries_no_truncate
    BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- A chain is never deleted, and its head only ever moves forward by one entry at a time (as
-- ledger_entries_assign() moves it); its id, kind and creation time never change. A new
-- chain starts empty, and its id's prefix names its kind.
CREATE FUNCTION ledger_chains_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
DECLARE
    kind_prefix text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        -- The kind is part of the id (org_, wal_, plat_), so an export cannot relabel a
        -- wallet chain to escape the non-negative rule.
        kind_prefix := CASE NEW.kind
            WHEN 'organisation' THEN 'org' WHEN 'wallet' THEN 'wal' WHEN 'platform' THEN 'plat'
        END;
        IF split_part(NEW.id, '_', 1) IS DISTINCT FROM kind_prefix THEN
            RAISE EXCEPTION 'ledger: a % chain id must start with its kind''s prefix, not %',
                NEW.kind, NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_chains_kind_prefix';
        END IF;
        IF NEW.head_seq <> 0 OR NEW.head_hash IS NOT NULL OR NEW.balances <> '{}'::jsonb THEN
            RAISE EXCEPTION 'ledger: a new chain starts empty'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_chains_start_empty';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.id <> OLD.id OR NEW.kind <> OLD.kind OR NEW.created_at <> OLD.created_at
       OR NEW.head_seq <> OLD.head_seq + 1 THEN
        RAISE EXCEPTION 'ledger: a chain head only advances by appending an entry'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_chains_guard
    BEFORE INSERT OR UPDATE ON ledger_chains
    FOR EACH ROW EXECUTE FUNCTION ledger_chains_guard();
CREATE TRIGGER ledger_chains_no_delete
    BEFORE DELETE ON ledger_chains
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_chains_no_truncate
    BEFORE TRUNCATE ON ledger_chains
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
"""

DOUBLE_ENTRY = """
-- Double entry: the internal legs of a journal sum to zero per currency. Checked at commit
-- (deferred), so a journal's legs may be inserted one by one, but a transaction that leaves an
-- internal journal unbalanced, or adds a leg to an already balanced one, is rejected whole.
CREATE FUNCTION ledger_check_journal_balanced() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
    unbalanced_currency text;
    unbalanced_total numeric;
BEGIN
    SELECT currency, sum(amount)
      INTO unbalanced_currency, unbalanced_total
      FROM ledger_entries
     WHERE journal_id = NEW.journal_id AND ledger_entry_flow(type) = 'internal'
     GROUP BY currency
    HAVING sum(amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger: internal journal % does not balance (% % left over)',
            NEW.journal_id, unbalanced_total, unbalanced_currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_journal_balanced';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER ledger_entries_journal_balanced
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (ledger_entry_flow(NEW.type) = 'internal')
    EXECUTE FUNCTION ledger_check_journal_balanced();
"""

ALWAYS_FIRE = """
-- The guards fire in every session_replication_role, so a 'replica' session cannot skip them.
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_assign;
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_no_update_delete;
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_no_truncate;
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_journal_balanced;
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_guard;
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_no_delete;
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_no_truncate;
"""

PLATFORM_CHAINS = """
-- The platform's own chains: fees Amply collects, and the promotions budget that funds
-- welcome bonuses (it may go negative: it records money Amply has given away).
INSERT INTO ledger_chains (id, kind) VALUES
    ('plat_fees', 'platform'),
    ('plat_promotions', 'platform');
"""

PRIVILEGES = """
-- Append-only, second line: the service's role may read the ledger and insert the
-- caller-supplied columns of new chains and entries, nothing more. It cannot UPDATE, DELETE or
-- TRUNCATE, cannot set seq or hashes, and the trigger functions run with the owner's rights.
REVOKE ALL ON ledger_chains, ledger_entries FROM PUBLIC;
GRANT SELECT ON ledger_chains, ledger_entries TO amply_app;
GRANT INSERT (id, kind) ON ledger_chains TO amply_app;
GRANT INSERT (id, chain_id, type, amount, currency, metadata, journal_id)
    ON ledger_entries TO amply_app;
REVOKE ALL ON FUNCTION ledger_entries_assign(), ledger_check_journal_balanced() FROM PUBLIC;
GRANT SELECT ON alembic_version TO amply_app;
"""


def upgrade() -> None:
    for block in (
        PRECONDITIONS,
        ENTRY_TYPES,
        TABLES,
        HASH_FUNCTIONS,
        ASSIGN_TRIGGER,
        IMMUTABILITY,
        DOUBLE_ENTRY,
        ALWAYS_FIRE,
        PLATFORM_CHAINS,
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only; its schema is never rolled back")
