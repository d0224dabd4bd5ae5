"""Identity and access: users, sessions, organisations and their members, API keys,
the security event log and login throttling counters.

Revision ID: 0002_identity
Revises: 0001_ledger_core
Create Date: 2026-11-21

Secrets are never stored: sessions and API keys keep only the SHA-256 of their token,
passwords only their argon2id hash. Each rule the database enforces is headed by what it guards.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0002_identity"
down_revision: str | None = "0001_ledger_core"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


USERS = """
CREATE TABLE users (
    id text PRIMARY KEY CHECK (id ~ '^usr_[0-9A-Za-z]{24}$'),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    username text NOT NULL CHECK (username ~ '^[A-Za-z0-9_]{3,30}$'),
    email text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254 AND position('@' in email) > 1),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Usernames and emails are unique case-insensitively, even under concurrent sign-ups.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE auth_sessions (
    id text PRIMARY KEY CHECK (id ~ '^ses_[0-9A-Za-z]{24}$'),
    user_id text NOT NULL REFERENCES users (id),
    -- SHA-256 of the bearer token: a leaked table cannot be replayed as sessions.
    token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    revoked_reason text CHECK (revoked_reason IN ('logout', 'password_changed', 'revoked')),
    user_agent text CHECK (char_length(user_agent) <= 200),
    CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);
CREATE INDEX auth_sessions_user_active ON auth_sessions (user_id, created_at)
    WHERE revoked_at IS NULL;
"""

ORGANISATIONS = """
CREATE TABLE organisations (
    id text PRIMARY KEY CHECK (id ~ '^org_[0-9A-Za-z]{24}$'),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 120),
    slug text NOT NULL CHECK (slug ~ '^[a-z0-9](?:[a-z0-9-]{1,58}[a-z0-9])$'),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    website text CHECK (char_length(website) <= 300),
    country text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    default_currency text NOT NULL CHECK (default_currency ~ '^[A-Z]{3}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX organisations_slug_key ON organisations (slug);

CREATE TABLE organisation_members (
    organisation_id text NOT NULL REFERENCES organisations (id),
    user_id text NOT NULL REFERENCES users (id),
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organisation_id, user_id)
);
CREATE INDEX organisation_members_user ON organisation_members (user_id);
"""

API_KEYS = """
CREATE TABLE api_keys (
    id text PRIMARY KEY CHECK (id ~ '^key_[0-9A-Za-z]{24}$'),
    organisation_id text NOT NULL REFERENCES organisations (id),
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    read_only boolean NOT NULL,
    mode text NOT NULL CHECK (mode IN ('test', 'live')),
    display_prefix text NOT NULL CHECK (display_prefix ~ '^sk_(test|live)_[0-9A-Za-z]{4}$'),
    -- SHA-256 of the key: shown once at creation, never stored.
    token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_by text NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_organisation ON api_keys (organisation_id, created_at);
"""

SECURITY_EVENTS = """
-- The security event log: insert-only for the service (see the privileges below).
CREATE TABLE security_events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE CHECK (id ~ '^sev_[0-9A-Za-z]{24}$'),
    type text NOT NULL,
    user_id text REFERENCES users (id),
    organisation_id text REFERENCES organisations (id),
    actor_user_id text REFERENCES users (id),
    actor_api_key_id text REFERENCES api_keys (id),
    client_address text CHECK (char_length(client_address) <= 64),
    user_agent text CHECK (char_length(user_agent) <= 200),
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX security_events_user ON security_events (user_id, position) WHERE user_id IS NOT NULL;
CREATE INDEX security_events_organisation ON security_events (organisation_id, position)
    WHERE organisation_id IS NOT NULL;
"""

RATE_LIMITS = """
-- Fixed-window counters for throttling (login failures, later checkout velocity). In the
-- database, so that every app instance sees the same counts.
CREATE TABLE rate_limit_counters (
    key text PRIMARY KEY CHECK (char_length(key) <= 300),
    window_started_at timestamptz NOT NULL,
    hits integer NOT NULL CHECK (hits >= 0)
);
"""

PRIVILEGES = """
-- Least privilege for the service's role. Nothing here may be deleted except memberships
-- and expired throttling counters; the security event log is insert-only, so the service
-- cannot rewrite what it recorded.
REVOKE ALL ON users, auth_sessions, organisations, organisation_members, api_keys,
    security_events, rate_limit_counters FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON users, auth_sessions, organisations, api_keys TO amply_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON organisation_members, rate_limit_counters TO amply_app;
GRANT SELECT, INSERT ON security_events TO amply_app;
REVOKE ALL ON FUNCTION organisation_assert_has_owner(text), organisation_members_check_owner(),
    organisations_check_owner() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION organisation_assert_has_owner(text) TO amply_app;
"""


def upgrade() -> None:
    for block in (
        USERS,
        ORGANISATIONS,
        load("organisation_assert_has_owner/0002"),
        load("organisation_members_check_owner/0002"),
        load("organisations_check_owner/0002"),
        load("triggers/organisation_members_keep_an_owner/0002"),
        load("triggers/organisations_created_with_an_owner/0002"),
        API_KEYS,
        SECURITY_EVENTS,
        RATE_LIMITS,
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("forward-only: restore a backup to go back")
