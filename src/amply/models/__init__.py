"""SQLAlchemy models; importing this package registers every table on ``Base.metadata``."""

from amply.models.api_key import ApiKey
from amply.models.base import Base
from amply.models.charge import ChargeBalanceTransaction
from amply.models.donation import Donation, DonationDispute, DonationRefund, Fund
from amply.models.ledger import CheckpointKey, LedgerChain, LedgerCheckpoint, LedgerEntry
from amply.models.organisation import Organisation, OrganisationMember
from amply.models.payout import ConnectedPayout, SandboxBalanceTransaction
from amply.models.security import RateLimitCounter, SecurityEvent
from amply.models.totals import ChainTotal
from amply.models.user import AuthSession, User
from amply.models.wallet import Card, MoneyRequest, Transaction, Wallet

__all__ = [
    "ApiKey",
    "AuthSession",
    "Base",
    "Card",
    "ChainTotal",
    "ChargeBalanceTransaction",
    "CheckpointKey",
    "ConnectedPayout",
    "Donation",
    "DonationDispute",
    "DonationRefund",
    "Fund",
    "LedgerChain",
    "LedgerCheckpoint",
    "LedgerEntry",
    "MoneyRequest",
    "Organisation",
    "OrganisationMember",
    "RateLimitCounter",
    "SandboxBalanceTransaction",
    "SecurityEvent",
    "Transaction",
    "User",
    "Wallet",
]
