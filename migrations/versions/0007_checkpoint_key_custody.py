"""Checkpoint key custody: only the owner publishes a signing key, a key's status says which
checkpoints it may vouch for, and a checkpoint must be signed by the active key.

Revision ID: 0007_checkpoint_key_custody
Revises: 0006_faster_appends
Create Date: 2026-12-07

Before this, the service role could insert a key of its own into ``checkpoint_keys``: the
public key list would then vouch for exports forged offline with it. Now keys are installed by
the schema owner (``amply serve`` does it after migrating, or ``amply keys install``), and the
database refuses any checkpoint whose row or signature line names another key than the one
active. PostgreSQL has no Ed25519, so it cannot check the signature's 64 bytes; the service
signs the note itself, with the key whose id the database checks here. Each rule is headed by
what it guards.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_checkpoint_key_custody"
down_revision: str | None = "0006_faster_appends"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS = r"""
-- A key's status tells verifiers which checkpoints it vouches for (docs/ledger-format.md §6):
-- 'active' (the one key that signs now), 'retired' (checkpoints issued before retired_at),
-- 'revoked' (none: it may be in someone else's hands). Keys listed before this migration
-- signed checkpoints until now: the one that signed the newest checkpoint (or, with none, the
-- newest key) stays active; the others retire now.
DROP TRIGGER checkpoint_keys_no_update_delete ON checkpoint_keys;
ALTER TABLE checkpoint_keys
    ADD COLUMN status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'retired', 'revoked')),
    ADD COLUMN activated_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN retired_at timestamptz,
    ADD COLUMN revoked_at timestamptz,
    ADD CONSTRAINT checkpoint_keys_status_times CHECK (
        (status = 'active' AND retired_at IS NULL AND revoked_at IS NULL)
        OR (status = 'retired' AND retired_at IS NOT NULL AND revoked_at IS NULL)
        OR (status = 'revoked' AND revoked_at IS NOT NULL)
    );
UPDATE checkpoint_keys SET activated_at = created_at;
UPDATE checkpoint_keys SET status = 'retired', retired_at = now()
 WHERE verifier_key IS DISTINCT FROM coalesce(
     (SELECT verifier_key FROM ledger_checkpoints ORDER BY issued_at DESC LIMIT 1),
     (SELECT verifier_key FROM checkpoint_keys ORDER BY created_at DESC LIMIT 1));

-- One key signs at a time.
CREATE UNIQUE INDEX checkpoint_keys_one_active ON checkpoint_keys ((true))
    WHERE status = 'active';
"""

TRANSITIONS = r"""
-- A key is never deleted and its identity never changes; its status only moves forward:
-- active -> retired -> revoked, or active -> revoked, each time set once when it happens.
CREATE FUNCTION checkpoint_keys_guard_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
AS $$
BEGIN
    IF (NEW.verifier_key, NEW.created_at, NEW.activated_at)
       IS DISTINCT FROM (OLD.verifier_key, OLD.created_at, OLD.activated_at) THEN
        RAISE EXCEPTION 'checkpoint_keys: the key % and when it was installed never change',
            OLD.verifier_key
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT ((OLD.status, NEW.status) IN (('active', 'active'), ('retired', 'retired'),
                                         ('revoked', 'revoked'), ('active', 'retired'),
                                         ('active', 'revoked'), ('retired', 'revoked')))
       OR (OLD.retired_at IS NOT NULL AND NEW.retired_at IS DISTINCT FROM OLD.retired_at)
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at) THEN
        RAISE EXCEPTION 'checkpoint_keys: % may only move from active to retired to revoked',
            OLD.verifier_key
            USING ERRCODE = 'check_violation', CONSTRAINT = 'checkpoint_keys_transitions';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER checkpoint_keys_no_delete BEFORE DELETE ON checkpoint_keys
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER checkpoint_keys_guard_update BEFORE UPDATE ON checkpoint_keys
    FOR EACH ROW EXECUTE FUNCTION checkpoint_keys_guard_update();
ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_no_delete;
ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_guard_update;
"""

SIGNED_BY_THE_ACTIVE_KEY = r"""
-- A checkpoint is Amply's only if the active key signed it: its row names that key, its
-- origin starts with the key's name, its one signature line carries the key's name and id
-- and 68 bytes (id and Ed25519 signature), and it was issued now (within five minutes), so
-- that a retired key's checkpoints all predate its retirement.
CREATE FUNCTION ledger_checkpoints_signed_by_active_key() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
    active text := (SELECT verifier_key FROM checkpoint_keys WHERE status = 'active');
    key_name text := split_part(active, '+', 1);
    key_id text := split_part(active, '+', 2);
    body_and_signatures text[] := string_to_array(NEW.note, E'\n\n');
    signature_lines text[] := string_to_array(rtrim(body_and_signatures[2], E'\n'), E'\n');
    signature bytea;
BEGIN
    IF active IS NULL OR NEW.verifier_key IS DISTINCT FROM active THEN
        RAISE EXCEPTION 'ledger_checkpoints: % is not the active signing key', NEW.verifier_key
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_active_key';
    END IF;
    IF cardinality(body_and_signatures) <> 2
       OR cardinality(signature_lines) <> 1
       OR split_part(signature_lines[1], ' ', 1) <> U&'\2014'
       OR split_part(signature_lines[1], ' ', 2) <> key_name
       OR split_part(NEW.note, E'\n', 1) NOT LIKE key_name || '/ledger/%' THEN
        RAISE EXCEPTION 'ledger_checkpoints: the note is not signed by % alone', active
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_active_key';
    END IF;
    BEGIN
        signature := decode(split_part(signature_lines[1], ' ', 3), 'base64');
    EXCEPTION WHEN invalid_parameter_value THEN
        signature := NULL;
    END;
    IF signature IS NULL OR length(signature) <> 68
       OR encode(substr(signature, 1, 4), 'hex') <> key_id THEN
        RAISE EXCEPTION 'ledger_checkpoints: the signature is not by key id %', key_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_active_key';
    END IF;
    IF NEW.issued_at NOT BETWEEN now() - interval '5 minutes' AND now() + interval '5 minutes'
       OR split_part(body_and_signatures[1], E'\n', 4)
          <> 'time ' || ledger_format_timestamp(NEW.issued_at) THEN
        RAISE EXCEPTION 'ledger_checkpoints: a checkpoint is issued now, as its time line says'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_checkpoints_issued_now';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_checkpoints_signed_by_active_key BEFORE INSERT ON ledger_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ledger_checkpoints_signed_by_active_key();
ALTER TABLE ledger_checkpoints ENABLE ALWAYS TRIGGER ledger_checkpoints_signed_by_active_key;
"""

PRIVILEGES = """
-- The service reads keys and stores checkpoints; only the owner installs, retires or revokes.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON checkpoint_keys FROM amply_app;
GRANT SELECT ON checkpoint_keys TO amply_app;
REVOKE ALL ON FUNCTION checkpoint_keys_guard_update(), ledger_checkpoints_signed_by_active_key()
    FROM PUBLIC;
"""


def upgrade() -> None:
    for block in (STATUS, TRANSITIONS, SIGNED_BY_THE_ACTIVE_KEY, PRIVILEGES):
        op.execute(block)


def downgrade() -> None:
    op.execute("""
        DROP TRIGGER ledger_checkpoints_signed_by_active_key ON ledger_checkpoints;
        DROP FUNCTION ledger_checkpoints_signed_by_active_key();
        DROP TRIGGER checkpoint_keys_guard_update ON checkpoint_keys;
        DROP TRIGGER checkpoint_keys_no_delete ON checkpoint_keys;
        DROP FUNCTION checkpoint_keys_guard_update();
        CREATE TRIGGER checkpoint_keys_no_update_delete BEFORE UPDATE OR DELETE ON checkpoint_keys
            FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
        ALTER TABLE checkpoint_keys ENABLE ALWAYS TRIGGER checkpoint_keys_no_update_delete;
        DROP INDEX checkpoint_keys_one_active;
        ALTER TABLE checkpoint_keys DROP CONSTRAINT checkpoint_keys_status_times,
            DROP COLUMN status, DROP COLUMN activated_at, DROP COLUMN retired_at,
            DROP COLUMN revoked_at;
        GRANT INSERT ON checkpoint_keys TO amply_app;
    """)
