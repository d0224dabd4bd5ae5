"""Declarative base of all SQLAlchemy models. Alembic migrations own the schema itself."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
