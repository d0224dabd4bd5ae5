"""Running totals of the public chains (migration 0015), kept by
:mod:`amply.ledger.chain_totals`."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import BigInteger, ForeignKey, Numeric, Text
from sqlalchemy.orm import Mapped, mapped_column

from amply.models.base import Base


class ChainTotal(Base):
    """The sum and count of a chain's entries of one currency, type, UTC month and fund
    (``''``: none) through ``through_seq``."""

    __tablename__ = "chain_totals"

    chain_id: Mapped[str] = mapped_column(ForeignKey("ledger_chains.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text, primary_key=True)
    month: Mapped[str] = mapped_column(Text, primary_key=True)
    fund_id: Mapped[str] = mapped_column(Text, primary_key=True, server_default="")
    total: Mapped[Decimal] = mapped_column(Numeric)
    entries: Mapped[int] = mapped_column(BigInteger)
    through_seq: Mapped[int] = mapped_column(BigInteger)
