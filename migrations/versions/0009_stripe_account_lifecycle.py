"""The lifecycle of an organisation's connected Stripe account: its mode, its disconnection,
and what Stripe still needs from it.

Revision ID: 0009_stripe_account_lifecycle
Revises: 0008_money_row_guards
Create Date: 2026-12-07

An account made with test keys must not take live donations, and an account whose owner
disconnected Amply (``account.application.deauthorized``) takes no donations until the
organisation connects a new one. Accounts recorded before this migration were made in an
unknown mode: they count as test-mode accounts, so that a server with live keys asks those
organisations to connect again rather than charge through a test account.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_stripe_account_lifecycle"
down_revision: str | None = "0008_money_row_guards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIFECYCLE = """
ALTER TABLE organisations
    -- The mode of the keys the account was made with (sandbox accounts: false).
    ADD COLUMN stripe_account_livemode boolean,
    -- When Stripe said the account's owner disconnected Amply; cleared only by a new account.
    ADD COLUMN stripe_account_deauthorized_at timestamptz,
    -- What Stripe needs before the account can take (or keep taking) payments.
    ADD COLUMN stripe_requirements_due text[] NOT NULL DEFAULT '{}',
    ADD COLUMN stripe_disabled_reason text CHECK (char_length(stripe_disabled_reason) <= 200);
UPDATE organisations SET stripe_account_livemode = false WHERE stripe_account_id IS NOT NULL;

-- An account and its mode are recorded together: no account counts in both modes.
ALTER TABLE organisations ADD CONSTRAINT organisations_stripe_account_mode
    CHECK ((stripe_account_id IS NULL) = (stripe_account_livemode IS NULL));
"""


def upgrade() -> None:
    op.execute(LIFECYCLE)


def downgrade() -> None:
    op.execute("""
        ALTER TABLE organisations DROP CONSTRAINT organisations_stripe_account_mode,
            DROP COLUMN stripe_account_livemode, DROP COLUMN stripe_account_deauthorized_at,
            DROP COLUMN stripe_requirements_due, DROP COLUMN stripe_disabled_reason;
    """)
