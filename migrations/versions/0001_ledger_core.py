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

# Which entry types exist, and whether each moves money inside Amply ('internal': both legs
# are on Amply chains and must balance) or across its edge ('external': card payments,
# refunds, bank deposits, payouts: one leg naming the outside reference in its metadata).
# A later migration that adds types recreates ledger_entry_flow() from its own lists.
EXTERNAL_TYPES = (
    "donation_received",
    "donation_refunded",
    "payment_processing_fee",
    "payment_processing_fee_refunded",
    "dispute_funds_withdrawn",
    "dispute_funds_reinstated",
    "dispute_fee",
    "deposit",
    "withdrawal",
    "withdrawal_reversed",
)
INTERNAL_TYPES = (
    "transfer_out",
    "transfer_in",
    "withdrawal_fee",
    "withdrawal_fee_refunded",
    "fee_collected",
    "fee_refunded",
    "welcome_bonus",
    "promotion_granted",
    "wallet_donation_sent",
    "wallet_donation_received",
)


def sql_list(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


ENTRY_TYPES = f"""
-- An SQL function, so that PostgreSQL inlines it into the (cached) plan of the trigger
-- function below that calls it; it is deliberately not used in CHECK constraints or trigger
-- WHEN clauses, which PostgreSQL re-plans on every statement.
CREATE FUNCTION ledger_entry_flow(entry_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN entry_type IN ({sql_list(EXTERNAL_TYPES)}) THEN 'external'
        WHEN entry_type IN ({sql_list(INTERNAL_TYPES)}) THEN 'internal'
    END
$$;
"""

TABLES = """
-- Rows never change once inserted, so the formats of caller-supplied fields (ids, currency,
-- type, metadata) are checked once, by the insert triggers below, rather than by CHECK
-- constraints: PostgreSQL re-reads and re-plans every CHECK expression of a table on each
-- statement, which cost more than all the rest of an append. The CHECKs that remain are
-- small structural ones.
CREATE TABLE ledger_chains (
    id text PRIMARY KEY,
    kind text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE ledger_chains IS
    'One hash chain per organisation, per wallet, and per platform purpose. Never changes.';

CREATE TABLE ledger_entries (
    id text PRIMARY KEY,
    -- References ledger_chains (id): ledger_entries_assign() looks the chain up for every insert
    -- and refuses an unknown one, and chains are never deleted; a declarative foreign key
    -- would look it up a second time, with a lock, on every append.
    chain_id text NOT NULL,
    seq bigint NOT NULL CHECK (seq >= 1),
    type text NOT NULL,
    amount bigint NOT NULL CHECK (amount <> 0),
    currency text NOT NULL,
    balance_after bigint NOT NULL,
    -- Public metadata, stored as the exact JSON text that is hashed (never re-serialised).
    metadata text NOT NULL DEFAULT '{}',
    journal_id text NOT NULL,
    -- Whether the type is an internal one (ledger_entry_flow()), set by ledger_entries_assign()
    -- so that the double-entry check below fires for internal legs only. Not part of the hash:
    -- it follows from the type.
    internal boolean NOT NULL,
    created_at timestamptz NOT NULL,
    prev_entry_hash text,
    entry_hash text NOT NULL,
    -- Linear chains, backstops behind the per-chain lock: one entry per position, and no two
    -- entries claiming the same predecessor (a fork); only the first entry has none.
    CONSTRAINT ledger_entries_chain_seq_key UNIQUE (chain_id, seq),
    CONSTRAINT ledger_entries_chain_prev_hash_key UNIQUE (chain_id, prev_entry_hash),
    CONSTRAINT ledger_entries_genesis_link CHECK ((seq = 1) = (prev_entry_hash IS NULL))
);

-- The head of a chain is its entry with the highest seq (ledger_entries_chain_seq_key); the
-- balance of one currency is that of its entry with the highest seq in that currency.
CREATE INDEX ledger_entries_chain_currency_seq_idx ON ledger_entries (chain_id, currency, seq);
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
-- Which lock stands for a chain: a transaction-level advisory lock on a 64-bit hash of its id
-- (distinct chains sharing a key would merely queue behind each other). Waiters are served
-- in order and nothing is written to take it.
CREATE FUNCTION ledger_chain_lock_key(chain_id text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.hashtextextended(chain_id, 1095585868) $$;

-- Linear chains, honest hashes, balances: the database, not the caller, assigns seq,
-- prev_entry_hash, balance_after, created_at and entry_hash, holding the chain's lock until
-- the transaction ends. Concurrent appends to one chain queue on that lock and each reads the
-- entries its predecessors committed, so the chain never forks. Multi-chain journals take the
-- locks in chain-id order (the ledger service inserts legs sorted by chain_id, and
-- ledger_lock_chains() below sorts too), so they never deadlock. Wallet chains refuse an
-- entry that would take a balance below zero. The caller-supplied fields are checked first:
-- id and journal id shapes, a known type, an upper-case three-letter currency, and metadata
-- that is a JSON object of at most 8 KiB.
CREATE FUNCTION ledger_entries_assign() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
-- pg_temp last: otherwise a caller's temporary table could shadow the ledger's tables.
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    flow text;
    prev_seq bigint;
    prev_hash text;
    prev_currency text;
    prev_balance bigint;
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.prev_entry_hash IS NOT NULL OR NEW.balance_after IS NOT NULL
       OR NEW.entry_hash IS NOT NULL OR NEW.created_at IS NOT NULL
       OR NEW.internal IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: seq, prev_entry_hash, balance_after, created_at, '
            'entry_hash and internal are assigned by the database'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_assigned_fields';
    END IF;
    -- (Patterns use + and a length limit, never {n} bounds, which PostgreSQL expands into
    -- large automata.)
    IF NEW.id !~ '^led_[0-9A-Za-z]+$' OR octet_length(NEW.id) > 80
       OR NEW.journal_id !~ '^jrn_[0-9A-Za-z]+$' OR octet_length(NEW.journal_id) > 80 THEN
        RAISE EXCEPTION 'ledger: malformed entry id % or journal id %', NEW.id, NEW.journal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_ids';
    END IF;
    flow := public.ledger_entry_flow(NEW.type);
    IF flow IS NULL THEN
        RAISE EXCEPTION 'ledger: unknown entry type %', NEW.type
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_type';
    END IF;
    NEW.internal := flow = 'internal';
    IF NEW.currency !~ '^[A-Z][A-Z][A-Z]$' THEN
        RAISE EXCEPTION 'ledger: currency % is not an upper-case ISO 4217 code', NEW.currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_currency';
    END IF;
    IF octet_length(NEW.metadata) > 8192 OR json_typeof(NEW.metadata::json) <> 'object' THEN
        RAISE EXCEPTION 'ledger: metadata must be a JSON object of at most 8192 bytes'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_metadata';
    END IF;
    -- Each statement below must see what the chain's previous lock holder committed, which
    -- only READ COMMITTED guarantees; in a snapshot-isolated transaction the append would
    -- fail on ledger_entries_chain_seq_key, so say why up front.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'ledger: append in a READ COMMITTED transaction, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    PERFORM pg_advisory_xact_lock(public.ledger_chain_lock_key(NEW.chain_id));
    -- One lookup: the chain must exist, and its last entry (if any) is the predecessor.
    SELECT last.seq, last.entry_hash, last.currency, last.balance_after
      INTO prev_seq, prev_hash, prev_currency, prev_balance
      FROM public.ledger_chains AS chain
      LEFT JOIN LATERAL (
            SELECT seq, entry_hash, currency, balance_after
              FROM public.ledger_entries
             WHERE chain_id = chain.id
             ORDER BY seq DESC
             LIMIT 1
           ) AS last ON true
     WHERE chain.id = NEW.chain_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger: chain % does not exist', NEW.chain_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_chain_id_fkey';
    END IF;
    IF prev_seq IS NULL THEN
        prev_seq := 0;
        prev_balance := 0;
    ELSIF prev_currency <> NEW.currency THEN
        SELECT balance_after INTO prev_balance
          FROM public.ledger_entries
         WHERE chain_id = NEW.chain_id AND currency = NEW.currency
         ORDER BY seq DESC
         LIMIT 1;
        prev_balance := coalesce(prev_balance, 0);
    END IF;

    NEW.seq := prev_seq + 1;
    NEW.prev_entry_hash := prev_hash;
    NEW.balance_after := prev_balance + NEW.amount;
    -- A chain's kind is bound to its id's prefix (ledger_chains_guard), so 'wal_' is a wallet.
    IF starts_with(NEW.chain_id, 'wal_') AND NEW.balance_after < 0 THEN
        RAISE EXCEPTION 'ledger: insufficient funds on chain % (% % short)',
            NEW.chain_id, -NEW.balance_after, NEW.currency
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ledger_wallet_balance_non_negative';
    END IF;
    NEW.created_at := clock_timestamp();
    NEW.entry_hash := public.ledger_entry_hash(
        NEW.chain_id, NEW.seq, NEW.id, NEW.type, NEW.amount, NEW.currency,
        NEW.balance_after, NEW.metadata, NEW.journal_id, NEW.created_at,
        NEW.prev_entry_hash);
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_entries_assign
    BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_assign();
"""

IMMUTABILITY = """
-- Append-only: no UPDATE, DELETE or TRUNCATE of an entry, by anyone, the owner included. (A
-- role that may ALTER the table, the owner or a superuser, could disable these triggers
-- first; what such a role changes is caught by verification, which recomputes every hash.)
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

-- A chain never changes and is never deleted. A new chain has a well-formed id whose prefix
-- names its kind (org_, wal_, plat_), so an export cannot relabel a wallet chain to escape
-- the non-negative rule.
CREATE FUNCTION ledger_chains_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
DECLARE
    kind_prefix text;
BEGIN
    IF NEW.id !~ '^[a-z]+_[0-9A-Za-z]+$' OR octet_length(NEW.id) > 80 THEN
        RAISE EXCEPTION 'ledger: malformed chain id %', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_chains_id';
    END IF;
    kind_prefix := CASE NEW.kind
        WHEN 'organisation' THEN 'org' WHEN 'wallet' THEN 'wal' WHEN 'platform' THEN 'plat'
    END;
    IF split_part(NEW.id, '_', 1) IS DISTINCT FROM kind_prefix THEN
        RAISE EXCEPTION 'ledger: a % chain id must start with its kind''s prefix, not %',
            NEW.kind, NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_chains_kind_prefix';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_chains_guard
    BEFORE INSERT ON ledger_chains
    FOR EACH ROW EXECUTE FUNCTION ledger_chains_guard();
CREATE TRIGGER ledger_chains_no_update_delete
    BEFORE UPDATE OR DELETE ON ledger_chains
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
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    unbalanced_currency text;
    unbalanced_total numeric;
BEGIN
    SELECT currency, sum(amount)
      INTO unbalanced_currency, unbalanced_total
      FROM public.ledger_entries
     WHERE journal_id = NEW.journal_id AND internal
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
    WHEN (NEW.internal)
    EXECUTE FUNCTION ledger_check_journal_balanced();
"""

LOCKING = """
-- No deadlocks across journals: a transaction that appends several journals takes all their
-- chains' locks first, in id order. Returns how many of the chains exist.
CREATE FUNCTION ledger_lock_chains(chain_ids text[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    chain text;
    locked_count integer := 0;
BEGIN
    FOR chain IN SELECT id FROM public.ledger_chains WHERE id = ANY (chain_ids) ORDER BY id LOOP
        PERFORM pg_advisory_xact_lock(public.ledger_chain_lock_key(chain));
        locked_count := locked_count + 1;
    END LOOP;
    RETURN locked_count;
END
$$;
"""

ALWAYS_FIRE = """
-- The guards fire in every session_replication_role, so a 'replica' session cannot skip them.
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_assign;
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_no_update_delete;
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_no_truncate;
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_journal_balanced;
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_guard;
ALTER TABLE ledger_chains ENABLE ALWAYS TRIGGER ledger_chains_no_update_delete;
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
-- TRUNCATE, and cannot set seq, hashes, balances or timestamps.
REVOKE ALL ON ledger_chains, ledger_entries FROM PUBLIC;
GRANT SELECT ON ledger_chains, ledger_entries TO amply_app;
GRANT INSERT (id, kind) ON ledger_chains TO amply_app;
GRANT INSERT (id, chain_id, type, amount, currency, metadata, journal_id)
    ON ledger_entries TO amply_app;
REVOKE ALL ON FUNCTION ledger_entries_assign(), ledger_check_journal_balanced(),
    ledger_lock_chains(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_lock_chains(text[]) TO amply_app;
GRANT SELECT ON alembic_version TO amply_app;

-- Defence in depth against shadowing the ledger's tables with temporary ones: the service
-- has no need for temporary tables. (Needs the database's owner, as in every documented set-up.)
DO $$
BEGIN
    IF pg_has_role(current_user, (SELECT datdba FROM pg_database
                                   WHERE datname = current_database()), 'USAGE') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    END IF;
END $$;
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
        LOCKING,
        ALWAYS_FIRE,
        PLATFORM_CHAINS,
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only; its schema is never rolled back")
