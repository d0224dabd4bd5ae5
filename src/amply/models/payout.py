"""Payouts of organisations' connected Stripe accounts to their banks, and the sandbox's
simulated balance transactions (migration 0013)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from amply.models.base import Base
from amply.models.enums import ConnectedPayoutStatus, SandboxBalanceType, stored_as_text


class ConnectedPayout(Base):
    """A Stripe payout of an organisation's balance, by Stripe's payout id, and the entries
    it put on the organisation's chain (``payout_sent``, and ``payout_failed`` if it failed
    or was canceled)."""

    __tablename__ = "connected_payouts"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    stripe_account_id: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    status: Mapped[ConnectedPayoutStatus] = mapped_column(stored_as_text(ConnectedPayoutStatus))
    failure_code: Mapped[str | None] = mapped_column(Text)
    sent_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    failed_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SandboxBalanceTransaction(Base):
    """What the sandbox simulates Stripe's balance to have done: written once, never changed."""

    __tablename__ = "sandbox_balance_transactions"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    stripe_account_id: Mapped[str] = mapped_column(Text)
    type: Mapped[SandboxBalanceType] = mapped_column(stored_as_text(SandboxBalanceType))
    source: Mapped[str] = mapped_column(Text)
    charge: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
