"""Signed checkpoints of chain heads, the keys that signed them, and donor receipt salts.

Revision ID: 0004_checkpoints
Revises: 0003_donations
Create Date: 2026-11-21

A checkpoint is Amply's Ed25519 signature on a chain's head (docs/ledger-format.md §6). The
database cannot check a signature, but it checks everything else a checkpoint says: that the
chain holds exactly that entry at that position, and that the signed text says so. Each rule
is headed by what it guards.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_checkpoints"
down_revision: str | None = "0003_donations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = r"""
-- Every key that ever signed a checkpoint stays listed, for good: after a rotation, auditors
-- holding old checkpoints can still check them against GET /v1/public/keys.
CREATE TABLE checkpoint_keys (
    -- The verifier key of c2sp.org/signed-note: <name>+<hex key id>+<base64(0x01 || key)>.
    verifier_key text PRIMARY KEY
        CHECK (verifier_key ~ '^[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE checkpoint_keys IS
    'Public keys that signed checkpoints. Insert-only: a retired key is still listed.';

CREATE TABLE ledger_checkpoints (
    chain_id text NOT NULL REFERENCES ledger_chains (id),
    size bigint NOT NULL CHECK (size >= 1),
    root_hash text NOT NULL,
    issued_at timestamptz NOT NULL,
    verifier_key text NOT NULL REFERENCES checkpoint_keys (verifier_key),
    -- The signed note, byte for byte as it was published.
    note text NOT NULL,
    PRIMARY KEY (chain_id, size)
);

COMMENT ON TABLE ledger_checkpoints IS
    'Signed checkpoints of chain heads (c2sp.org/tlog-checkpoint). Insert-only.';
"""

CONSISTENCY = r"""
-- Never sign what the chain does not hold: a checkpoint names an entry that exists at that
-- position with that hash, and its signed text says exactly that chain, size and hash. Since
-- the ledger is append-only, two checkpoints that each match the chain agree with each
-- other: Amply can never have published two inconsistent ones. Checkpoints only move
-- forward, so the latest one always covers every earlier one.
CREATE FUNCTION ledger_checkpoints_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
    lines text[] := string_to_array(NEW.note, E'\n');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_entries
                    WHERE chain_id = NEW.chain_id AND seq = NEW.size
                      AND entry_hash = NEW.root_hash) THEN
        RAISE EXCEPTION 'ledger_checkpoints: chain % has no entry % with hash %',
            NEW.chain_id, NEW.size, NEW.root_hash
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_match_chain';
    END IF;
    IF right(lines[1], length(NEW.chain_id) + 1) <> '/' || NEW.chain_id
       OR lines[2] <> NEW.size::text
       OR lines[3] <> encode(decode(substr(NEW.root_hash, 8), 'hex'), 'base64') THEN
        RAISE EXCEPTION 'ledger_checkpoints: the note does not say chain %, size %, hash %',
            NEW.chain_id, NEW.size, NEW.root_hash
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_note_matches';
    END IF;
    IF EXISTS (SELECT 1 FROM ledger_checkpoints
                WHERE chain_id = NEW.chain_id AND size >= NEW.size) THEN
        RAISE EXCEPTION 'ledger_checkpoints: chain % already has a checkpoint at or past %',
            NEW.chain_id, NEW.size
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_forward';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_checkpoints_guard BEFORE INSERT ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_checkpoints_guard();

-- What was signed and published is never changed or withdrawn, by anyone.
CREATE TRIGGER ledger_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_checkpoints_no_truncate BEFORE TRUNCATE ON ledger_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoint_keys_no_update_delete BEFORE UPDATE OR DELETE ON checkpoint_keys
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoint_keys_no_truncate BEFORE TRUNCATE ON checkpoint_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_guard;
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_no_update_delete;
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_no_truncate;
ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_no_update_delete;
ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_no_truncate;
"""

RECEIPTS = r"""
-- A donor's receipt opens the salted commitment on the donation's public entry
-- (docs/ledger-format.md §7). The salt is fixed when the donation is created: changing it
-- would take from the donor the means to prove the entry is theirs. (NULL for donations
-- created before receipts carried commitments.)
ALTER TABLE donations ADD COLUMN receipt_salt text CHECK (receipt_salt ~ '^[0-9a-f]{64}$');

CREATE FUNCTION donations_keep_receipt_salt() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.receipt_salt IS DISTINCT FROM OLD.receipt_salt THEN
        RAISE EXCEPTION 'donations: the receipt salt of % never changes', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_immutable';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER donations_keep_receipt_salt BEFORE UPDATE OF receipt_salt ON donations
    FOR EACH ROW EXECUTE FUNCTION donations_keep_receipt_salt();
"""

PRIVILEGES = """
-- The service signs and stores checkpoints; it can never alter or withdraw one.
REVOKE ALL ON checkpoint_keys, ledger_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON checkpoint_keys, ledger_checkpoints TO amply_app;
REVOKE ALL ON FUNCTION ledger_checkpoints_guard(), donations_keep_receipt_salt() FROM PUBLIC;
"""


def upgrade() -> None:
    for block in (TABLES, CONSISTENCY, RECEIPTS, PRIVILEGES):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("forward-only: restore a backup to go back")
