"""Typed, read-only views of a :class:`~amply.models.wallet.Transaction` row, one per kind.

The ``transactions`` table keeps every kind of wallet transaction in one row shape, most of
its columns nullable because each kind uses only some of them. A view is made from a row of
its own kind only (``TransferView.of(row)`` refuses a withdrawal), shows only that kind's
fields, and types as present what the database guarantees for the kind: migration 0005's
CHECKs (which columns each kind has, which statuses, and that money moved exactly when a
journal is named) and the guards ``transactions_guard_insert`` and
``transactions_guard_origin``. A view is a snapshot: read the row again after changing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypedDict, TypeVar

from amply.models.enums import (
    DepositSource,
    DepositStatus,
    Provider,
    RiskRule,
    TransactionKind,
    TransferStatus,
    WithdrawalSpeed,
    WithdrawalStatus,
)
from amply.models.wallet import Transaction

V = TypeVar("V")


class WrongKind(ValueError):
    """A view of one kind was asked of a transaction of another: a bug in the caller."""


def _present(row: Transaction, value: V | None, column: str) -> V:
    # The database guarantees the column for this kind (see the module's docstring).
    if value is None:
        raise ValueError(f"transaction {row.id} ({row.kind}) has no {column}")
    return value


class _Common(TypedDict):
    """The fields every kind's view has, read the same way from its row."""

    id: str
    amount: int
    currency: str
    description: str
    created_at: datetime


def _common(row: Transaction, kind: TransactionKind) -> _Common:
    """The row's fields every view shows, once the row is checked to be of ``kind``."""
    if row.kind != kind:
        raise WrongKind(f"transaction {row.id} is a {row.kind}, not a {kind}")
    return _Common(
        id=row.id,
        amount=row.amount,
        currency=row.currency,
        description=row.description,
        created_at=row.created_at,
    )


class _Completed(TypedDict):
    journal_id: str
    completed_at: datetime


def _completed(row: Transaction) -> _Completed:
    """The journal and completion time of a kind that is completed when written."""
    return _Completed(
        journal_id=_present(row, row.journal_id, "journal"),
        completed_at=_present(row, row.completed_at, "completion time"),
    )


class _Provided(TypedDict):
    """The fields of a kind a provider pays (a deposit, a withdrawal)."""

    wallet_id: str
    bank_name: str | None
    provider: Provider | None
    failure_code: str | None
    failure_message: str | None


def _provided(row: Transaction) -> _Provided:
    return _Provided(
        wallet_id=row.wallet_id,
        bank_name=row.bank_name,
        provider=Provider(row.provider) if row.provider is not None else None,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
    )


@dataclass(frozen=True, slots=True)
class RiskFlagView:
    """One risk rule a held transfer matched, and why."""

    rule: RiskRule
    reason: str

    @classmethod
    def of(cls, flag: dict[str, Any]) -> RiskFlagView:
        return cls(rule=RiskRule(flag["rule"]), reason=str(flag["reason"]))


@dataclass(frozen=True, slots=True)
class TransferView:
    """Money sent from one wallet (``sender_wallet_id``) to another: completed at once, held
    for the sender's confirmation (then ``hold_expires_at`` is set), or blocked by a limit
    (then ``blocked_reason`` is set). ``journal_id`` is set exactly when it completed."""

    kind: ClassVar[TransactionKind] = TransactionKind.TRANSFER

    id: str
    status: TransferStatus
    sender_wallet_id: str
    recipient_wallet_id: str
    money_request_id: str | None
    amount: int
    currency: str
    description: str
    risk_flags: tuple[RiskFlagView, ...]
    blocked_reason: str | None
    hold_expires_at: datetime | None
    journal_id: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, row: Transaction) -> TransferView:
        return cls(
            **_common(row, cls.kind),
            status=TransferStatus(row.status),
            sender_wallet_id=row.wallet_id,
            recipient_wallet_id=_present(row, row.counterparty_wallet_id, "recipient"),
            money_request_id=row.money_request_id,
            risk_flags=tuple(RiskFlagView.of(flag) for flag in row.risk_flags),
            blocked_reason=row.blocked_reason,
            hold_expires_at=row.hold_expires_at,
            journal_id=row.journal_id,
            completed_at=row.completed_at,
        )


@dataclass(frozen=True, slots=True)
class DepositView:
    """Money paid into a wallet from a saved card or (in the sandbox) a bank.
    ``journal_id`` is set exactly when it completed."""

    kind: ClassVar[TransactionKind] = TransactionKind.DEPOSIT

    id: str
    wallet_id: str
    status: DepositStatus
    source: DepositSource
    card_id: str | None
    bank_name: str | None
    provider: Provider | None
    payment_intent_id: str | None
    amount: int
    currency: str
    description: str
    failure_code: str | None
    failure_message: str | None
    journal_id: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, row: Transaction) -> DepositView:
        return cls(
            **_common(row, cls.kind),
            **_provided(row),
            status=DepositStatus(row.status),
            source=DepositSource(_present(row, row.source, "source")),
            card_id=row.card_id,
            payment_intent_id=row.payment_intent_id,
            journal_id=row.journal_id,
            completed_at=row.completed_at,
        )


@dataclass(frozen=True, slots=True)
class WithdrawalView:
    """Money paid out of a wallet to a bank: debited (``journal_id``) when requested, and
    returned (``reversal_journal_id``) exactly when its payout failed."""

    kind: ClassVar[TransactionKind] = TransactionKind.WITHDRAWAL

    id: str
    wallet_id: str
    status: WithdrawalStatus
    speed: WithdrawalSpeed
    bank_name: str | None
    provider: Provider | None
    payout_id: str | None
    amount: int
    fee: int
    currency: str
    description: str
    failure_code: str | None
    failure_message: str | None
    journal_id: str
    reversal_journal_id: str | None
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, row: Transaction) -> WithdrawalView:
        return cls(
            **_common(row, cls.kind),
            **_provided(row),
            status=WithdrawalStatus(row.status),
            speed=WithdrawalSpeed(_present(row, row.speed, "speed")),
            payout_id=row.payout_id,
            fee=row.fee,
            journal_id=_present(row, row.journal_id, "journal"),
            reversal_journal_id=row.reversal_journal_id,
            completed_at=row.completed_at,
        )


@dataclass(frozen=True, slots=True)
class DonationView:
    """A gift from a wallet to an organisation (and maybe one of its funds): completed when
    written, so its journal and completion time are always there."""

    kind: ClassVar[TransactionKind] = TransactionKind.DONATION

    id: str
    wallet_id: str
    organisation_id: str
    fund_id: str | None
    public_name: str | None
    amount: int
    currency: str
    description: str
    journal_id: str
    created_at: datetime
    completed_at: datetime

    @classmethod
    def of(cls, row: Transaction) -> DonationView:
        return cls(
            **_common(row, cls.kind),
            wallet_id=row.wallet_id,
            organisation_id=_present(row, row.organisation_id, "organisation"),
            fund_id=row.fund_id,
            public_name=row.public_name,
            **_completed(row),
        )


@dataclass(frozen=True, slots=True)
class WelcomeBonusView:
    """The promotion a new wallet receives: completed when written."""

    kind: ClassVar[TransactionKind] = TransactionKind.WELCOME_BONUS

    id: str
    wallet_id: str
    amount: int
    currency: str
    description: str
    journal_id: str
    created_at: datetime
    completed_at: datetime

    @classmethod
    def of(cls, row: Transaction) -> WelcomeBonusView:
        return cls(**_common(row, cls.kind), wallet_id=row.wallet_id, **_completed(row))


TransactionView = TransferView | DepositView | WithdrawalView | DonationView | WelcomeBonusView

_VIEWS: dict[str, type[TransactionView]] = {
    view.kind: view
    for view in (TransferView, DepositView, WithdrawalView, DonationView, WelcomeBonusView)
}


def view_of(row: Transaction) -> TransactionView:
    """The row as a view of its own kind (match on the result's type)."""
    return _VIEWS[row.kind].of(row)
