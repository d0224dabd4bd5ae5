"""Ledger core: chains, entries, and the database rules that guard them.

Revision ID: 0001_ledger_core
Revises:
Create Date: 2026-11-21

Every invariant of SPEC.md §4 that PostgreSQL can enforce is created here, each statement
headed by the invariant it guards; each function is defined in its file
``migrations/sql/<function>/0001.sql`` and each trigger in
``migrations/sql/triggers/<trigger>/0001.sql``, headed likewise. ``docs/ledger-format.md``
describes the same rules for auditors. Run as the schema owner; the service connects as
``amply_app``.
"""

from collections.abc import Sequence
from pathlib import Path

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

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


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
        load("ledger_entry_flow/0001"),
        TABLES,
        load("ledger_netstring/0001"),
        load("ledger_format_timestamp/0001"),
        load("ledger_entry_hash/0001"),
        load("ledger_chain_lock_key/0001"),
        load("ledger_entries_assign/0001"),
        load("triggers/ledger_entries_assign/0001"),
        load("ledger_refuse_change/0001"),
        load("triggers/ledger_entries_no_update_delete/0001"),
        load("triggers/ledger_entries_no_truncate/0001"),
        load("ledger_chains_guard/0001"),
        load("triggers/ledger_chains_guard/0001"),
        load("triggers/ledger_chains_no_update_delete/0001"),
        load("triggers/ledger_chains_no_truncate/0001"),
        load("ledger_check_journal_balanced/0001"),
        load("triggers/ledger_entries_journal_balanced/0001"),
        load("ledger_lock_chains/0001"),
        PLATFORM_CHAINS,
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only; its schema is never rolled back")
