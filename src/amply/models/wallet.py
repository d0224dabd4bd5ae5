"""Wallets, their transactions, saved cards and money requests (migration 0005)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from amply.models.base import Base
from amply.models.enums import (
    DepositSource,
    MoneyRequestStatus,
    Provider,
    TransactionKind,
    TransactionStatus,
    WithdrawalSpeed,
    stored_as_text,
)


class Wallet(Base):
    """A user's wallet. Its id is its ledger chain's id; its balance is the chain's."""

    __tablename__ = "wallets"
    # created_at comes from the database: read it back with the INSERT (RETURNING).
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (SQLAlchemy reads it once)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    currency: Mapped[str] = mapped_column(Text)
    stripe_customer_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Transaction(Base):
    """One movement of a wallet's money as its user sees it; the ledger journal is the
    movement itself (``journal_id``)."""

    __tablename__ = "transactions"
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (SQLAlchemy reads it once)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[TransactionKind] = mapped_column(stored_as_text(TransactionKind))
    status: Mapped[TransactionStatus] = mapped_column(stored_as_text(TransactionStatus))
    wallet_id: Mapped[str] = mapped_column(ForeignKey("wallets.id"))
    counterparty_wallet_id: Mapped[str | None] = mapped_column(ForeignKey("wallets.id"))
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"))
    fund_id: Mapped[str | None] = mapped_column(ForeignKey("funds.id"))
    money_request_id: Mapped[str | None] = mapped_column(ForeignKey("money_requests.id"))
    card_id: Mapped[str | None] = mapped_column(ForeignKey("cards.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    risk_flags: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    hold_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    source: Mapped[DepositSource | None] = mapped_column(stored_as_text(DepositSource))
    bank_name: Mapped[str | None] = mapped_column(Text)
    speed: Mapped[WithdrawalSpeed | None] = mapped_column(stored_as_text(WithdrawalSpeed))
    provider: Mapped[Provider | None] = mapped_column(stored_as_text(Provider))
    payment_intent_id: Mapped[str | None] = mapped_column(Text)
    payout_id: Mapped[str | None] = mapped_column(Text)
    public_name: Mapped[str | None] = mapped_column(Text)
    failure_code: Mapped[str | None] = mapped_column(Text)
    failure_message: Mapped[str | None] = mapped_column(Text)
    journal_id: Mapped[str | None] = mapped_column(Text)
    reversal_journal_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Card(Base):
    """A saved card: the provider's payment method and what a person recognises it by."""

    __tablename__ = "cards"
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (SQLAlchemy reads it once)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    wallet_id: Mapped[str] = mapped_column(ForeignKey("wallets.id"))
    provider: Mapped[Provider] = mapped_column(stored_as_text(Provider))
    payment_method_id: Mapped[str] = mapped_column(Text)
    setup_intent_id: Mapped[str | None] = mapped_column(Text)
    brand: Mapped[str] = mapped_column(Text)
    last4: Mapped[str] = mapped_column(Text)
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(default=False)
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MoneyRequest(Base):
    """A request for money from another user, paid by a transfer."""

    __tablename__ = "money_requests"
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (SQLAlchemy reads it once)

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    requester_wallet_id: Mapped[str] = mapped_column(ForeignKey("wallets.id"))
    payer_wallet_id: Mapped[str] = mapped_column(ForeignKey("wallets.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[MoneyRequestStatus] = mapped_column(
        stored_as_text(MoneyRequestStatus), default=MoneyRequestStatus.PENDING
    )
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
