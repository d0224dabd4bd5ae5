"""Every status and kind Amply stores, each defined once.

Models, services and schemas use these; the database lists the same values in its CHECK
constraints and trigger functions (migrations), and ``tests/models/test_enums.py`` compares
the two. The columns stay ``text`` in the database: :func:`stored_as_text` maps a column to an
enum without a database type or constraint of its own.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum


def stored_as_text(enum: type[StrEnum]) -> Enum:
    """A column type that stores ``enum``'s values as plain text and reads them back as its
    members; the database's own CHECK (or trigger) guards the values, not this type."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        validate_strings=False,
        values_callable=lambda members: [member.value for member in members],
    )


# --- The ledger -----------------------------------------------------------------------------


class ChainKind(StrEnum):
    """Whose money a chain holds; its id starts with the kind's prefix (ledger_chains_guard)."""

    ORGANISATION = "organisation"
    WALLET = "wallet"
    PLATFORM = "platform"


class EntryType(StrEnum):
    """What a ledger entry records. ``ledger_entry_flow()`` sorts them into external ones (money
    entering or leaving Amply) and internal ones (moving between chains; they must balance)."""

    DONATION_RECEIVED = "donation_received"
    DONATION_REFUNDED = "donation_refunded"
    DONATION_REFUND_REVERSED = "donation_refund_reversed"
    PAYMENT_PROCESSING_FEE = "payment_processing_fee"
    PAYMENT_PROCESSING_FEE_REFUNDED = "payment_processing_fee_refunded"
    DISPUTE_FUNDS_WITHDRAWN = "dispute_funds_withdrawn"
    DISPUTE_FUNDS_REINSTATED = "dispute_funds_reinstated"
    DISPUTE_FEE = "dispute_fee"
    DISPUTE_FEE_REFUNDED = "dispute_fee_refunded"
    DEPOSIT = "deposit"
    DEPOSIT_REVERSED = "deposit_reversed"
    DEPOSIT_REINSTATED = "deposit_reinstated"
    DEPOSIT_LOSS = "deposit_loss"
    DEPOSIT_LOSS_RECOVERED = "deposit_loss_recovered"
    WITHDRAWAL = "withdrawal"
    WITHDRAWAL_REVERSED = "withdrawal_reversed"
    PAYOUT_SENT = "payout_sent"
    PAYOUT_FAILED = "payout_failed"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    WITHDRAWAL_FEE = "withdrawal_fee"
    WITHDRAWAL_FEE_REFUNDED = "withdrawal_fee_refunded"
    FEE_COLLECTED = "fee_collected"
    FEE_REFUNDED = "fee_refunded"
    WELCOME_BONUS = "welcome_bonus"
    PROMOTION_GRANTED = "promotion_granted"
    WALLET_DONATION_SENT = "wallet_donation_sent"
    WALLET_DONATION_RECEIVED = "wallet_donation_received"


class KeyStatus(StrEnum):
    """Which checkpoints a key vouches for (docs/ledger-format.md §6); migration 0007's check
    lists the same values."""

    ACTIVE = "active"  # signs now
    RETIRED = "retired"  # checkpoints issued before it retired
    REVOKED = "revoked"  # none


# --- People and organisations ---------------------------------------------------------------


class SessionRevokedReason(StrEnum):
    """Why a sign-in session ended before it expired."""

    LOGOUT = "logout"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an event, not a password)
    REVOKED = "revoked"


class MemberRole(StrEnum):
    """What a member may do in an organisation."""

    OWNER = "owner"
    ADMIN = "admin"
    VIEWER = "viewer"


class ApiKeyMode(StrEnum):
    """Whether an API key works with test money or live money."""

    TEST = "test"
    LIVE = "live"


class SecurityEventType(StrEnum):
    """What the security log recorded (``auth/security_events.py``)."""

    USER_SIGNED_UP = "user_signed_up"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGIN_THROTTLED = "login_throttled"
    SESSION_REVOKED = "session_revoked"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (an event, not a password)
    PASSWORD_CHANGE_FAILED = "password_change_failed"  # noqa: S105
    ORGANISATION_CREATED = "organisation_created"
    ORGANISATION_UPDATED = "organisation_updated"
    MEMBER_ADDED = "member_added"
    MEMBER_ROLE_CHANGED = "member_role_changed"
    MEMBER_REMOVED = "member_removed"
    API_KEY_CREATED = "api_key_created"
    API_KEY_REVOKED = "api_key_revoked"
    STRIPE_ACCOUNT_CREATED = "stripe_account_created"
    STRIPE_ACCOUNT_DEAUTHORIZED = "stripe_account_deauthorized"
    REFUND_REQUESTED = "refund_requested"


# --- Donations and the payment provider -----------------------------------------------------


class Provider(StrEnum):
    """Who moves the money: Stripe, or the sandbox that stands in for it."""

    STRIPE = "stripe"
    SANDBOX = "sandbox"


class FundStatus(StrEnum):
    """Whether a fund takes donations."""

    OPEN = "open"
    CLOSED = "closed"


class DonationStatus(StrEnum):
    """Where a donation stands; completed and refunded ones are on the ledger."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUNDED = "refunded"


class RefundReason(StrEnum):
    """Why an organisation refunds a donation (Stripe's reasons)."""

    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"


class RefundStatus(StrEnum):
    """Stripe's status of a refund; the ledger moves when Stripe confirms."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class ReconnectReason(StrEnum):
    """Why an organisation's recorded Stripe account no longer counts: connect a new one
    (``payments/connect.py``)."""

    DEAUTHORIZED = "deauthorized"  # its owner disconnected Amply in Stripe
    OTHER_MODE = "other_mode"  # made with test keys and the server has live ones, or back
    OTHER_PROVIDER = "other_provider"  # a sandbox account on a server with Stripe keys


class StripeEventSource(StrEnum):
    """Where a provider event came from: Stripe's webhook or the sandbox."""

    WEBHOOK = "webhook"
    SANDBOX = "sandbox"


class StripeEventOutcome(StrEnum):
    """What handling a stored provider event did."""

    PROCESSED = "processed"
    IGNORED = "ignored"


class ChargeBalanceKind(StrEnum):
    """What took money back from a charge after it succeeded (charge_balance_transactions)."""

    DONATION_DISPUTE = "donation_dispute"
    DEPOSIT_DISPUTE = "deposit_dispute"
    DEPOSIT_REFUND = "deposit_refund"
    DEPOSIT_REPAYMENT = "deposit_repayment"


class ConnectedPayoutStatus(StrEnum):
    """Stripe's status of a payout from an organisation's connected account."""

    PENDING = "pending"
    IN_TRANSIT = "in_transit"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"


class SandboxBalanceType(StrEnum):
    """What moved a sandbox account's balance, as Stripe names balance transactions."""

    CHARGE = "charge"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    PAYOUT = "payout"
    PAYOUT_FAILURE = "payout_failure"
    PAYOUT_CANCEL = "payout_cancel"


# --- Wallets --------------------------------------------------------------------------------


class TransactionKind(StrEnum):
    """What a wallet transaction is; each kind has its own statuses and columns."""

    TRANSFER = "transfer"
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    DONATION = "donation"
    WELCOME_BONUS = "welcome_bonus"


class TransferStatus(StrEnum):
    """Where a transfer between wallets stands."""

    PENDING_CONFIRMATION = "pending_confirmation"  # held: the sender must confirm
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    BLOCKED = "blocked"  # refused by a limit: nothing moved


class DepositStatus(StrEnum):
    """Where a deposit into a wallet stands."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class WithdrawalStatus(StrEnum):
    """Where a withdrawal to a bank account stands."""

    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


class TransactionStatus(StrEnum):
    """Any transaction's status: the statuses of every kind together (the ``status`` CHECK)."""

    PENDING_CONFIRMATION = "pending_confirmation"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    BLOCKED = "blocked"
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


class DonationTransactionStatus(StrEnum):
    """A wallet's donation or welcome bonus is complete when it is written."""

    COMPLETED = "completed"


class DepositSource(StrEnum):
    """Where a deposit's money comes from."""

    CARD = "card"
    BANK = "bank"


class WithdrawalSpeed(StrEnum):
    """How fast a withdrawal arrives: standard (free) or instant (for a fee)."""

    STANDARD = "standard"
    INSTANT = "instant"


class RiskRule(StrEnum):
    """A risk rule that held a transfer for its sender's confirmation (``wallets/risk.py``);
    stored in the transfer's ``risk_flags``."""

    LARGE_AMOUNT = "large_amount"
    NEW_RECIPIENT = "new_recipient"
    RAPID_TRANSFERS = "rapid_transfers"


class MoneyRequestStatus(StrEnum):
    """Where a request for money stands."""

    PENDING = "pending"
    PAID = "paid"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TRANSACTION_STATUSES: dict[TransactionKind, type[StrEnum]] = {
    TransactionKind.TRANSFER: TransferStatus,
    TransactionKind.DEPOSIT: DepositStatus,
    TransactionKind.WITHDRAWAL: WithdrawalStatus,
    TransactionKind.DONATION: DonationTransactionStatus,
    TransactionKind.WELCOME_BONUS: DonationTransactionStatus,
}
"""The statuses each kind of transaction may have (the CASE in the transactions' CHECK)."""
