"""What Stripe took back from a charge, one balance transaction at a time (migration 0012)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from amply.models.base import Base
from amply.models.enums import ChargeBalanceKind, stored_as_text


class ChargeBalanceTransaction(Base):
    """One movement Stripe made after a charge (a dispute's balance transaction, a step of a
    deposit's refunded total) or a repayment of a wallet's shortfall, and the entries of its
    one journal: on the organisation's or wallet's chain (``chain_amount``), on
    ``plat_losses`` (``loss_amount``, deposits only) and Stripe's fee (``fee``). Written once.
    """

    __tablename__ = "charge_balance_transactions"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[ChargeBalanceKind] = mapped_column(stored_as_text(ChargeBalanceKind))
    dispute_id: Mapped[str | None] = mapped_column(Text)
    donation_id: Mapped[str | None] = mapped_column(ForeignKey("donations.id"))
    deposit_id: Mapped[str | None] = mapped_column(ForeignKey("transactions.id"))
    chain_id: Mapped[str] = mapped_column(Text)
    currency: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    chain_amount: Mapped[int] = mapped_column(BigInteger)
    loss_amount: Mapped[int] = mapped_column(BigInteger)
    journal_id: Mapped[str] = mapped_column(Text)
    chain_entry_id: Mapped[str | None] = mapped_column(Text)
    loss_entry_id: Mapped[str | None] = mapped_column(Text)
    fee_entry_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
