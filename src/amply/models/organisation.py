"""Organisations that receive donations, and the people who run them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column, relationship

from amply.models.base import Base
from amply.models.enums import MemberRole, stored_as_text
from amply.models.enums import ReconnectReason as ReconnectReason  # its home before enums
from amply.models.user import User


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
    role: Mapped[MemberRole] = mapped_column(stored_as_text(MemberRole))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    user: Mapped[User] = relationship(lazy="raise")
    organisation: Mapped[Organisation] = relationship(lazy="raise")
