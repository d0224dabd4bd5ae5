"""Read models of the ledger tables. Entries are written only by ``services.ledger``,
checkpoints only by ``services.checkpoints``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Text
from sqlalchemy.orm import Mapped, mapped_column

from amply.models.base import Base
from amply.models.enums import ChainKind, EntryType, stored_as_text
from amply.models.enums import KeyStatus as KeyStatus  # its home before models.enums


class LedgerChain(Base):
    __tablename__ = "ledger_chains"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[ChainKind] = mapped_column(stored_as_text(ChainKind))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    chain_id: Mapped[str] = mapped_column(Text)
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[EntryType] = mapped_column(stored_as_text(EntryType))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    metadata_json: Mapped[str] = mapped_column("metadata", Text)
    journal_id: Mapped[str] = mapped_column(Text)
    internal: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    prev_entry_hash: Mapped[str | None] = mapped_column(Text)
    entry_hash: Mapped[str] = mapped_column(Text)


class CheckpointKey(Base):
    """A public key that signs or signed checkpoints (migrations 0004, 0007): listed for good,
    installed by the schema owner only, its status moving from active to retired to revoked."""

    __tablename__ = "checkpoint_keys"

    verifier_key: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[KeyStatus] = mapped_column(stored_as_text(KeyStatus))
    activated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LedgerCheckpoint(Base):
    """A signed checkpoint of a chain's head (docs/ledger-format.md §6)."""

    __tablename__ = "ledger_checkpoints"

    chain_id: Mapped[str] = mapped_column(Text, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    root_hash: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verifier_key: Mapped[str] = mapped_column(Text)
    note: Mapped[str] = mapped_column(Text)
