"""Faster appends: the same ledger rules, checked with less work per entry.

Revision ID: 0006_faster_appends
Revises: 0005_wallets
Create Date: 2026-11-21

Every rule of 0001_ledger_core still holds, enforced by the same trigger (it keeps its name,
``ledger_entries_assign``) and backstopped by the same constraints; only the work per append
shrinks. PostgreSQL builds every expression of a PL/pgSQL function afresh in each transaction
(checking the caller's right to run each function it calls) and parses every CHECK constraint
afresh in each statement, and an append is usually a transaction of one statement of one row,
so an append costs roughly what its expressions and constraints count:

- The hash builds the preimage with one ``format()`` instead of 48 concatenations, in
  ``ledger_entry_hash_of()``, which takes created_at as canonical text, so that the trigger
  formats the timestamp once; ``ledger_entry_hash()`` keeps its signature and calls it. The
  bytes are the same (docs/ledger-format.md §2, checked against the committed test vectors).
- The insert trigger tests everything the caller supplies in one expression, which then
  takes the chain's lock; only when that test fails does it test the rules one by one, to
  name the first one broken, with the same errors as before.
- It reads the chain's last entry with one index probe. A chain is looked up in
  ``ledger_chains`` only while it has no entry yet: an entry exists only for a chain that
  existed, and chains are never deleted.
- ``amount <> 0`` moves from a CHECK constraint into that trigger, beside the other format
  rules of caller-supplied fields (the error still names ``ledger_entries_amount_check``).
- The trigger runs with its caller's rights instead of its owner's, which spares a
  search_path switch per append (the comment on the function says why that is safe).

Downgrading restores the definitions of 0001_ledger_core.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_faster_appends"
down_revision: str | None = "0005_wallets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HASH_FUNCTIONS = """
-- Honest hashes: the canonical encoding of docs/ledger-format.md §2, byte for byte the same as
-- amply.lib.crypto.canonical_preimage(): the netstrings '<UTF-8 byte length>:<text>,' of the
-- version tag and the eleven fields, in order, hashed with SHA-256; here with created_at
-- already in its canonical text form (ledger_format_timestamp()). format() writes NULL as
-- empty text, which is what prev_entry_hash needs at seq 1 (its netstring is '0:,'); no
-- other field of an entry is ever NULL. Plain SQL functions without SET clauses, so that
-- PostgreSQL inlines them into the caller's expression; every name in them is qualified.
CREATE FUNCTION ledger_entry_hash_of(
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

-- The same from created_at as stored (auditors' test vectors check this one).
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
"""

ASSIGN_TRIGGER = """
-- Linear chains, honest hashes, balances, formats: the database, not the caller, assigns seq,
-- prev_entry_hash, balance_after, created_at, entry_hash and internal, holding the chain's
-- lock until the transaction ends (0001_ledger_core explains the lock, the lock order across
-- chains, and why appends need READ COMMITTED). Concurrent appends to one chain queue on that
-- lock and each reads the entry its predecessor committed, so the chain never forks. Wallet
-- chains refuse an entry that would take a balance below zero. Caller-supplied fields are
-- checked first: id and journal id shapes, a known type, an upper-case three-letter currency,
-- metadata that is a JSON object of at most 8 KiB, and a non-zero amount.
--
-- The function runs with its caller's rights (SECURITY INVOKER, no SET clause): every role that
-- may insert an entry may also read ledger_chains and ledger_entries, which is all it reads,
-- and a SET clause would make PostgreSQL switch and restore search_path, and rebuild the name
-- lookups that depend on it, on every append. Without it, names still cannot be shadowed:
-- every table and function of the ledger is qualified with its schema, pg_catalog is searched
-- before any schema a caller lists unless listed after it, and the service's role may create
-- objects in no schema (NO_SHADOWS below checks it), so it has no shadow to offer.
CREATE OR REPLACE FUNCTION ledger_entries_assign() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    flow text := public.ledger_entry_flow(NEW.type);
    last_seq bigint;
    last_hash text;
    last_currency text;
    last_balance bigint;
    created_text text;
BEGIN
    -- Every rule on what the caller supplies, in one expression, whose last term takes the
    -- chain's lock. The branch is skipped only when no term is true, and so only after every
    -- term, the lock included, has been evaluated: a well-formed entry always holds the lock
    -- past this point. (The lock returns void, which is not NULL, for any chain id but NULL.)
    -- When a term is true, the branch tests the rules one by one and raises the first one
    -- broken.
    IF NEW.seq IS NOT NULL OR NEW.prev_entry_hash IS NOT NULL OR NEW.balance_after IS NOT NULL
       OR NEW.entry_hash IS NOT NULL OR NEW.created_at IS NOT NULL OR NEW.internal IS NOT NULL
       -- (Patterns use + and a length limit, never {n} bounds, which PostgreSQL expands into
       -- large automata.)
       OR NEW.id !~ '^led_[0-9A-Za-z]+$' OR NEW.journal_id !~ '^jrn_[0-9A-Za-z]+$'
       OR greatest(octet_length(NEW.id), octet_length(NEW.journal_id)) > 80
       OR flow IS NULL
       OR NEW.currency !~ '^[A-Z][A-Z][A-Z]$'
       OR octet_length(NEW.metadata) > 8192 OR json_typeof(NEW.metadata::json) <> 'object'
       OR NEW.amount = 0
       -- Each statement below must see what the chain's previous lock holder committed,
       -- which only READ COMMITTED guarantees.
       OR current_setting('transaction_isolation') <> 'read committed'
       OR pg_advisory_xact_lock(public.ledger_chain_lock_key(NEW.chain_id)) IS NULL THEN
        IF num_nonnulls(NEW.seq, NEW.prev_entry_hash, NEW.balance_after, NEW.entry_hash,
                        NEW.created_at, NEW.internal) > 0 THEN
            RAISE EXCEPTION 'ledger: seq, prev_entry_hash, balance_after, created_at, '
                'entry_hash and internal are assigned by the database'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_assigned_fields';
        END IF;
        IF NEW.id !~ '^led_[0-9A-Za-z]+$' OR octet_length(NEW.id) > 80
           OR NEW.journal_id !~ '^jrn_[0-9A-Za-z]+$' OR octet_length(NEW.journal_id) > 80 THEN
            RAISE EXCEPTION 'ledger: malformed entry id % or journal id %', NEW.id, NEW.journal_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_ids';
        END IF;
        IF flow IS NULL THEN
            RAISE EXCEPTION 'ledger: unknown entry type %', NEW.type
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_type';
        END IF;
        IF NEW.currency !~ '^[A-Z][A-Z][A-Z]$' THEN
            RAISE EXCEPTION 'ledger: currency % is not an upper-case ISO 4217 code', NEW.currency
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_currency';
        END IF;
        IF octet_length(NEW.metadata) > 8192 OR json_typeof(NEW.metadata::json) <> 'object' THEN
            RAISE EXCEPTION 'ledger: metadata must be a JSON object of at most 8192 bytes'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_metadata';
        END IF;
        IF NEW.amount = 0 THEN
            RAISE EXCEPTION 'ledger: an entry moves a non-zero amount'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_amount_check';
        END IF;
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'ledger: append in a READ COMMITTED transaction, not %',
                current_setting('transaction_isolation')
                USING ERRCODE = 'invalid_transaction_state';
        END IF;
        -- Reached only with a NULL chain id (its lock key is NULL), which the lookup below
        -- refuses as an unknown chain; the lock is taken here all the same.
        PERFORM pg_advisory_xact_lock(public.ledger_chain_lock_key(NEW.chain_id));
    END IF;

    -- The predecessor: the chain's last entry, one probe of ledger_entries_chain_seq_key.
    SELECT seq, entry_hash, currency, balance_after
      INTO last_seq, last_hash, last_currency, last_balance
      FROM public.ledger_entries
     WHERE chain_id = NEW.chain_id
     ORDER BY seq DESC
     LIMIT 1;
    IF NOT FOUND THEN
        -- No entry yet: the chain must exist (this stands in for a foreign key; once a chain
        -- has an entry it existed, and chains are never deleted).
        IF NOT EXISTS (SELECT FROM public.ledger_chains WHERE id = NEW.chain_id) THEN
            RAISE EXCEPTION 'ledger: chain % does not exist', NEW.chain_id
                USING ERRCODE = 'foreign_key_violation',
                      CONSTRAINT = 'ledger_entries_chain_id_fkey';
        END IF;
        last_seq := 0;
        last_balance := 0;
    ELSIF last_currency <> NEW.currency THEN
        SELECT balance_after INTO last_balance
          FROM public.ledger_entries
         WHERE chain_id = NEW.chain_id AND currency = NEW.currency
         ORDER BY seq DESC
         LIMIT 1;
        last_balance := coalesce(last_balance, 0);
    END IF;

    NEW.seq := last_seq + 1;
    NEW.prev_entry_hash := last_hash;
    NEW.balance_after := last_balance + NEW.amount;
    -- A chain's kind is bound to its id's prefix (ledger_chains_guard), so 'wal_' is a wallet.
    IF NEW.balance_after < 0 AND starts_with(NEW.chain_id, 'wal_') THEN
        RAISE EXCEPTION 'ledger: insufficient funds on chain % (% % short)',
            NEW.chain_id, -NEW.balance_after, NEW.currency
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ledger_wallet_balance_non_negative';
    END IF;
    -- Double entry: marks the legs the deferred ledger_entries_journal_balanced check sums.
    NEW.internal := flow = 'internal';
    NEW.created_at := clock_timestamp();
    created_text := public.ledger_format_timestamp(NEW.created_at);
    NEW.entry_hash := public.ledger_entry_hash_of(
        NEW.chain_id, NEW.seq, NEW.id, NEW.type, NEW.amount, NEW.currency,
        NEW.balance_after, NEW.metadata, NEW.journal_id, created_text,
        NEW.prev_entry_hash);
    RETURN NEW;
END
$$;
"""

NO_SHADOWS = """
-- Honest hashes, with the trigger above running as its caller: the service's role must not be
-- able to create a function or operator that a search_path of its choosing would put in place
-- of a built-in one. PostgreSQL 15 and later grant no such right by default; refuse to
-- migrate a database where it was granted.
DO $$
DECLARE
    schema_name text;
BEGIN
    IF has_database_privilege('amply_app', current_database(), 'CREATE') THEN
        RAISE EXCEPTION 'amply_app may create schemas in this database: '
            'REVOKE CREATE ON DATABASE % FROM amply_app, PUBLIC', current_database();
    END IF;
    SELECT nspname INTO schema_name FROM pg_namespace
     WHERE has_schema_privilege('amply_app', oid, 'CREATE')
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'amply_app may create objects in schema %: '
            'REVOKE CREATE ON SCHEMA % FROM amply_app, PUBLIC', schema_name, schema_name;
    END IF;
END $$;
"""

AMOUNT_CHECK = """
-- A non-zero amount is now checked by ledger_entries_assign(), with the other formats.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_amount_check;
"""

# -- downgrade: the definitions of 0001_ledger_core ------------------------------------------

PREVIOUS_HASH_FUNCTION = """
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
"""

PREVIOUS_ASSIGN_TRIGGER = """
CREATE OR REPLACE FUNCTION ledger_entries_assign() RETURNS trigger
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
"""

PREVIOUS_AMOUNT_CHECK = """
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_amount_check CHECK (amount <> 0);
"""


def upgrade() -> None:
    for block in (NO_SHADOWS, HASH_FUNCTIONS, ASSIGN_TRIGGER, AMOUNT_CHECK):
        op.execute(block)


def downgrade() -> None:
    for block in (
        PREVIOUS_AMOUNT_CHECK,
        PREVIOUS_ASSIGN_TRIGGER,
        PREVIOUS_HASH_FUNCTION,
        "DROP FUNCTION ledger_entry_hash_of(text, bigint, text, text, bigint, text, bigint, "
        "text, text, text, text);",
    ):
        op.execute(block)
