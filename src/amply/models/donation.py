"""Funds, donations, and the refunds and disputes of donations (migration 0003)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, LargeBinary, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from amply.models.base import Base
from amply.models.enums import (
    DonationStatus,
    FundStatus,
    Provider,
    RefundReason,
    RefundStatus,
    stored_as_text,
)


class Fund(Base):
    """A designated fund of an organisation that donations may name."""

    __tablename__ = "funds"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    goal_amount: Mapped[int | None] = mapped_column(BigInteger)
    goal_currency: Mapped[str | None] = mapped_column(Text)
    status: Mapped[FundStatus] = mapped_column(stored_as_text(FundStatus), default=FundStatus.OPEN)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Donation(Base):
    __tablename__ = "donations"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    fund_id: Mapped[str | None] = mapped_column(ForeignKey("funds.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    status: Mapped[DonationStatus] = mapped_column(
        stored_as_text(DonationStatus), default=DonationStatus.PENDING
    )
    donor_name: Mapped[str | None] = mapped_column(Text)
    donor_email: Mapped[str | None] = mapped_column(Text)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    message: Mapped[str | None] = mapped_column(Text)
    receipt_token_hash: Mapped[bytes] = mapped_column(LargeBinary)
    # Opens the commitment on the donation's public entry, with the token's digest (0004).
    receipt_salt: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[Provider] = mapped_column(stored_as_text(Provider))
    stripe_account_id: Mapped[str] = mapped_column(Text)
    payment_intent_id: Mapped[str] = mapped_column(Text)
    charge_id: Mapped[str | None] = mapped_column(Text)
    processing_fee: Mapped[int | None] = mapped_column(BigInteger)
    processing_fee_currency: Mapped[str | None] = mapped_column(Text)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_disputed: Mapped[int] = mapped_column(BigInteger, default=0)
    failure_code: Mapped[str | None] = mapped_column(Text)
    failure_message: Mapped[str | None] = mapped_column(Text)
    received_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    # The payment_processing_fee entry, and the latest donation_refunded entry (0008).
    processing_fee_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    refunded_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refunds_as_of: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def display_name(self) -> str:
        """The donor as the public ledger shows them."""
        if self.anonymous or not self.donor_name:
            return "Anonymous"
        return self.donor_name


class DonationRefund(Base):
    """A refund an organisation asked for through Amply."""

    __tablename__ = "donation_refunds"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    donation_id: Mapped[str] = mapped_column(ForeignKey("donations.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[RefundReason] = mapped_column(stored_as_text(RefundReason))
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[RefundStatus] = mapped_column(stored_as_text(RefundStatus))
    provider_refund_id: Mapped[str] = mapped_column(Text)
    recorded: Mapped[bool] = mapped_column(Boolean, default=False)
    reversed_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    requested_by_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    requested_by_api_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DonationDispute(Base):
    """A dispute (chargeback) of a donation, by Stripe's dispute id."""

    __tablename__ = "donation_disputes"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    donation_id: Mapped[str] = mapped_column(ForeignKey("donations.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    withdrawn_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    reinstated_entry_id: Mapped[str | None] = mapped_column(ForeignKey("ledger_entries.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
