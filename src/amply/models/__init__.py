"""SQLAlchemy models; importing this package registers every table on ``Base.metadata``."""

from amply.models.base import Base
from amply.models.ledger import LedgerChain, LedgerEntry

__all__ = ["Base", "LedgerChain", "LedgerEntry"]
