"""Wallets: one per user with its own chain, the transactions that move its money (transfers,
deposits, withdrawals, gifts to organisations, welcome bonuses), saved cards and money requests.

Revision ID: 0005_wallets
Revises: 0004_checkpoints
Create Date: 2026-11-21

A wallet's balance is its chain's: the ledger (0001_ledger_core) keeps it and refuses to take
it below zero. The tables here hold what the entries are derived from, and each rule the
database enforces is headed by what it guards: every user has a wallet, a transaction's terms
never change, statuses move only along their arrows, and a transaction is completed exactly
when the ledger holds its journal, with the amount it says.
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0005_wallets"
down_revision: str | None = "0004_checkpoints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each function's and trigger's definition, one file per version:
# migrations/sql/<function>/<revision>.sql, migrations/sql/triggers/<trigger>/<revision>.sql
# (migrations/sql/README.md).
SQL_DIR = Path(__file__).resolve().parents[1] / "sql"


def load(name: str) -> str:
    """The statement of ``migrations/sql/<name>.sql``, e.g. ``load("ledger_entry_flow/0003")``."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8")


WALLETS = """
-- One wallet per user, whose id is its ledger chain's id (a 'wal_' chain: never below zero).
CREATE TABLE wallets (
    id text PRIMARY KEY CHECK (id ~ '^wal_[0-9A-Za-z]{24}$') REFERENCES ledger_chains (id),
    user_id text NOT NULL UNIQUE REFERENCES users (id),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The Stripe Customer (on the platform account) that holds the user's saved cards.
    stripe_customer_id text UNIQUE CHECK (char_length(stripe_customer_id) <= 100),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Users who signed up before wallets existed get theirs now (empty chains).
WITH new_wallets AS (
    SELECT 'wal_' || substr(md5(random()::text || id), 1, 24) AS id, id AS user_id FROM users
), chains AS (
    INSERT INTO ledger_chains (id, kind) SELECT id, 'wallet' FROM new_wallets
)
INSERT INTO wallets (id, user_id, currency) SELECT id, user_id, 'USD' FROM new_wallets;
"""

CARDS = """
-- Saved cards: only the provider's payment method id and what a person recognises a card by.
-- There is deliberately no column a card number or CVC could be stored in.
CREATE TABLE cards (
    id text PRIMARY KEY CHECK (id ~ '^card_[0-9A-Za-z]{24}$'),
    wallet_id text NOT NULL REFERENCES wallets (id),
    provider text NOT NULL CHECK (provider IN ('stripe', 'sandbox')),
    payment_method_id text NOT NULL UNIQUE
        CHECK (payment_method_id ~ '^pm_[0-9A-Za-z_]{1,100}$'),
    setup_intent_id text UNIQUE CHECK (char_length(setup_intent_id) <= 100),
    brand text NOT NULL CHECK (char_length(brand) BETWEEN 1 AND 30),
    last4 text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month integer NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year integer NOT NULL CHECK (exp_year BETWEEN 2000 AND 2200),
    is_default boolean NOT NULL DEFAULT false,
    removed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- A removed card is never the default.
    CHECK (NOT (is_default AND removed_at IS NOT NULL))
);
CREATE INDEX cards_wallet ON cards (wallet_id, created_at);
-- At most one default card per wallet.
CREATE UNIQUE INDEX cards_one_default ON cards (wallet_id) WHERE is_default;
"""

MONEY_REQUESTS = """
-- A request for money from another user. It is paid by a transfer (transactions.
-- money_request_id), through the same risk rules as any transfer.
CREATE TABLE money_requests (
    id text PRIMARY KEY CHECK (id ~ '^req_[0-9A-Za-z]{24}$'),
    requester_wallet_id text NOT NULL REFERENCES wallets (id),
    payer_wallet_id text NOT NULL REFERENCES wallets (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    description text NOT NULL CHECK (char_length(description) BETWEEN 1 AND 500),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'paid', 'declined', 'cancelled', 'expired')),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CHECK (requester_wallet_id <> payer_wallet_id),
    CHECK ((status = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX money_requests_payer ON money_requests (payer_wallet_id, created_at DESC, id);
CREATE INDEX money_requests_requester
    ON money_requests (requester_wallet_id, created_at DESC, id);
CREATE INDEX money_requests_pending_expiry ON money_requests (expires_at)
    WHERE status = 'pending';
"""

TRANSACTIONS = """
-- Every movement of a wallet's money, as its user sees it (the seed's Transaction: the intent;
-- the ledger journal is the movement). wallet_id is the wallet that sends (transfer,
-- withdrawal, donation) or receives (deposit, welcome_bonus); counterparty_wallet_id is a
-- transfer's recipient.
CREATE TABLE transactions (
    id text PRIMARY KEY CHECK (id ~ '^txn_[0-9A-Za-z]{24}$'),
    kind text NOT NULL
        CHECK (kind IN ('transfer', 'deposit', 'withdrawal', 'donation', 'welcome_bonus')),
    status text NOT NULL CHECK (status IN (
        'pending_confirmation', 'completed', 'cancelled', 'expired', 'blocked',
        'pending', 'paid', 'failed')),
    wallet_id text NOT NULL REFERENCES wallets (id),
    counterparty_wallet_id text REFERENCES wallets (id),
    organisation_id text REFERENCES organisations (id),
    fund_id text REFERENCES funds (id),
    money_request_id text REFERENCES money_requests (id),
    card_id text REFERENCES cards (id),
    amount bigint NOT NULL CHECK (amount > 0),
    -- What the sender pays on top (an instant withdrawal's fee), in the same currency.
    fee bigint NOT NULL DEFAULT 0 CHECK (fee >= 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    description text NOT NULL CHECK (char_length(description) BETWEEN 1 AND 500),
    -- The risk rules that matched, each {"rule": ..., "reason": ...}, and a hard limit's reason.
    risk_flags jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(risk_flags) = 'array'),
    blocked_reason text CHECK (char_length(blocked_reason) <= 500),
    hold_expires_at timestamptz,
    -- Deposits: where from; withdrawals: how fast, and the payout's reference.
    source text CHECK (source IN ('card', 'bank')),
    bank_name text CHECK (char_length(bank_name) BETWEEN 1 AND 100),
    speed text CHECK (speed IN ('standard', 'instant')),
    provider text CHECK (provider IN ('stripe', 'sandbox')),
    payment_intent_id text UNIQUE CHECK (char_length(payment_intent_id) <= 100),
    payout_id text UNIQUE CHECK (char_length(payout_id) <= 100),
    -- A gift to an organisation: the name its public ledger shows (NULL: Anonymous).
    public_name text CHECK (char_length(public_name) BETWEEN 1 AND 100),
    failure_code text CHECK (char_length(failure_code) <= 100),
    failure_message text CHECK (char_length(failure_message) <= 500),
    -- The ledger journal that moved the money, and the one that returned it (failed payout).
    journal_id text UNIQUE,
    reversal_journal_id text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,

    -- Which fields each kind has.
    CHECK ((kind = 'transfer') = (counterparty_wallet_id IS NOT NULL)),
    CHECK (counterparty_wallet_id IS DISTINCT FROM wallet_id),
    CHECK ((kind = 'donation') = (organisation_id IS NOT NULL)),
    CHECK (kind = 'donation' OR (fund_id IS NULL AND public_name IS NULL)),
    CHECK (kind = 'transfer' OR (money_request_id IS NULL AND hold_expires_at IS NULL
                                 AND risk_flags = '[]' AND blocked_reason IS NULL)),
    CHECK ((kind = 'deposit') = (source IS NOT NULL)),
    CHECK (kind = 'deposit' OR card_id IS NULL),
    CHECK ((kind = 'withdrawal') = (speed IS NOT NULL)),
    CHECK (kind = 'withdrawal' OR fee = 0),
    CHECK (kind IN ('deposit', 'withdrawal') OR (bank_name IS NULL AND provider IS NULL
                                                 AND payout_id IS NULL)),
    CHECK (kind = 'deposit' OR payment_intent_id IS NULL),
    -- Which statuses each kind has.
    CHECK (CASE kind
        WHEN 'transfer' THEN status IN ('pending_confirmation', 'completed', 'cancelled',
                                        'expired', 'blocked')
        WHEN 'deposit' THEN status IN ('pending', 'completed', 'failed')
        WHEN 'withdrawal' THEN status IN ('pending', 'paid', 'failed')
        ELSE status = 'completed'
    END),
    CHECK ((status = 'blocked') = (blocked_reason IS NOT NULL)),
    CHECK (status <> 'pending_confirmation' OR hold_expires_at IS NOT NULL),
    -- Money moved exactly when a journal is named: a withdrawal's when it is requested (and
    -- returned by a reversal exactly when its payout failed), everything else's on completion.
    CHECK (CASE kind
        WHEN 'withdrawal' THEN journal_id IS NOT NULL
                               AND (status = 'failed') = (reversal_journal_id IS NOT NULL)
        ELSE (status = 'completed') = (journal_id IS NOT NULL) AND reversal_journal_id IS NULL
    END),
    CHECK ((status IN ('completed', 'paid')) = (completed_at IS NOT NULL))
);
CREATE INDEX transactions_wallet ON transactions (wallet_id, created_at DESC, id);
CREATE INDEX transactions_counterparty ON transactions (counterparty_wallet_id, created_at DESC, id)
    WHERE counterparty_wallet_id IS NOT NULL;
CREATE INDEX transactions_holds ON transactions (wallet_id, hold_expires_at)
    WHERE status = 'pending_confirmation';
-- The new-recipient risk rule: has this sender completed a transfer to that recipient?
CREATE INDEX transactions_completed_pairs ON transactions (wallet_id, counterparty_wallet_id)
    WHERE kind = 'transfer' AND status = 'completed';
CREATE INDEX transactions_organisation ON transactions (organisation_id)
    WHERE organisation_id IS NOT NULL;
-- Paying a request twice pays once: at most one transfer per request is awaiting
-- confirmation or completed.
CREATE UNIQUE INDEX transactions_one_payment_per_request ON transactions (money_request_id)
    WHERE money_request_id IS NOT NULL AND status IN ('pending_confirmation', 'completed');
"""

PRIVILEGES = """
-- Least privilege: the service may create and update these rows (under the guards above),
-- never delete them.
REVOKE ALL ON wallets, cards, money_requests, transactions FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON wallets, cards, money_requests, transactions TO amply_app;
REVOKE ALL ON FUNCTION wallets_guard_update(), users_assert_has_wallet(),
    money_requests_guard_update(), transactions_guard_update(), transactions_guard_insert(),
    transactions_check_journals() FROM PUBLIC;
"""


def upgrade() -> None:
    for block in (
        WALLETS,
        load("wallets_guard_update/0005"),
        load("users_assert_has_wallet/0005"),
        load("triggers/wallets_guard_update/0005"),
        load("triggers/users_have_wallets/0005"),
        CARDS,
        MONEY_REQUESTS,
        load("money_requests_guard_update/0005"),
        load("triggers/money_requests_guard_update/0005"),
        TRANSACTIONS,
        load("transactions_guard_update/0005"),
        load("transactions_guard_insert/0005"),
        load("transactions_check_journals/0005"),
        load("triggers/transactions_guard_update/0005"),
        load("triggers/transactions_guard_insert/0005"),
        load("triggers/transactions_journal_matches/0005"),
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    raise NotImplementedError("forward-only: restore a backup to go back")
