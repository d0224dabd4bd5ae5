"""Stripe calls outside transactions: no schema change (kept as a documented no-op).

Checkout, refunds and card deposits now call Stripe between two short committed steps
(``amply.db.UnitOfWork``; docs/architecture.md, "the unit of work"). Each writes its row in the
second step, once Stripe's object exists, so every existing guard holds unchanged: a donation
and a card deposit still name their PaymentIntent from their first row version
(``transactions_guard_origin``, 0008), a refund its Stripe refund (``donation_refunds``,
0003), and no new status exists. The one object that can move money before the second step,
a card deposit's PaymentIntent, carries the deposit's id in its metadata, from which its
success event records the deposit (``deposits.recover``), as before. Hence nothing to
migrate; this revision keeps its place in the chain.

Revision ID: 0014_stripe_outside_transactions
Revises: 0013_connected_payouts
Create Date: 2026-12-07
"""

from collections.abc import Sequence

revision: str = "0014_stripe_outside_transactions"
down_revision: str | None = "0013_connected_payouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
