"""Organisations that receive donations, and the people who run them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Boolean, DateTime, ForeignKey, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from amply.models.base import Base
from amply.models.user import User


class ReconnectReason(StrEnum):
    """Why an organisation's recorded Stripe account no longer counts: connect a new one
    (``payments/connect.py``)."""

    DEAUTHORIZED = "deauthorized"  # its owner disconnected Amply in Stripe
    OTHER_MODE = "other_mode"  # made with test keys and the server has live ones, or back
    OTHER_PROVIDER = "other_provider"  # a sandbox account on a server with Stripe keys


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    slug: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    website: Mapped[str | None] = mapped_column(Text)
    country: Mapped[str] = mapped_column(Text)
    default_currency: Mapped[str] = mapped_column(Text)
    stripe_account_id: Mapped[str | None] = mapped_column(Text)
    charges_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    details_submitted: Mapped[bool] = mapped_column(Boolean, default=False)
    stripe_account_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stripe_account_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stripe_account_livemode: Mapped[bool | None] = mapped_column(Boolean)
    stripe_account_deauthorized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stripe_requirements_due: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    stripe_disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrganisationMember(Base):
    __tablename__ = "organisation_members"

    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    user: Mapped[User] = relationship(lazy="raise")
    organisation: Mapped[Organisation] = relationship(lazy="raise")
