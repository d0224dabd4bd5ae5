"""Request and response bodies of withdrawals. Amounts are integers in minor units;
currencies are upper-case ISO 4217 codes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from amply.kit import schemas as kit_schemas
from amply.kit.schemas import Currency, RequestModel, Text100, as_literal
from amply.models import Transaction, enums

if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    Speed = enums.WithdrawalSpeed
    WithdrawalStatus = enums.WithdrawalStatus
    Provider = enums.Provider
else:
    Speed = as_literal(enums.WithdrawalSpeed)
    WithdrawalStatus = as_literal(enums.WithdrawalStatus)
    Provider = as_literal(enums.Provider)
Amount = Annotated[
    kit_schemas.Amount,
    Field(description="A positive integer in the wallet currency's minor units (cents for USD)."),
]
BankName = Annotated[
    Text100,
    Field(
        description="Which of your banks to pay: a label you recognise. It stays between you "
        "and Amply; the ledger never shows it.",
        examples=["First Community Bank"],
    ),
]


class WithdrawalCreate(RequestModel):
    amount: Amount
    speed: Speed = Field(
        default=enums.WithdrawalSpeed.STANDARD,
        description="`standard` is free; `instant` costs a fee (1.5% by default, rounded half "
        "up to the minor unit), paid on top of the amount.",
    )
    bank_name: BankName
    currency: Currency | None = Field(
        default=None,
        description="Optional: if sent, it must be your wallet's currency (else 422 "
        "`currency_mismatch`).",
    )


class SandboxPayoutFailure(RequestModel):
    failure_code: Annotated[
        str,
        StringConstraints(pattern=r"^[a-z0-9_]{1,100}$"),
        Field(description="Why the bank refused, as Stripe says it.", examples=["account_closed"]),
    ] = "could_not_process"
    failure_message: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
        default=None, examples=["The bank account has been closed."]
    )


class WithdrawalLedgerOut(BaseModel):
    journal_id: str = Field(description="The journal that debited the wallet.")
    reversal_journal_id: str | None = Field(
        description="The journal that returned the money when the payout failed."
    )


class WithdrawalOut(BaseModel):
    object: Literal["withdrawal"] = "withdrawal"
    id: str
    status: WithdrawalStatus
    amount: int = Field(description="What reaches the bank, in minor units.")
    fee: int = Field(description="The instant fee (0 for standard), in minor units.")
    total: int = Field(description="What left the wallet: amount + fee.")
    currency: str
    speed: Speed
    bank_name: str
    provider: Provider
    payout_id: str | None = Field(description="The payout provider's id (`po_sandbox_…`).")
    created_at: datetime
    completed_at: datetime | None = Field(description="When the payout was paid.")
    failure_code: str | None
    failure_message: str | None
    ledger: WithdrawalLedgerOut


class WithdrawalFeeOut(BaseModel):
    object: Literal["withdrawal_fee"] = "withdrawal_fee"
    amount: int
    speed: Speed
    currency: str
    fee: int
    total: int = Field(description="What the withdrawal would take from the wallet.")
    fee_basis_points: int = Field(description="The rate applied (150 = 1.5%; 0 for standard).")


def withdrawal_out(withdrawal: Transaction) -> WithdrawalOut:
    assert withdrawal.journal_id is not None  # a withdrawal names its journal from the start
    return WithdrawalOut.model_validate(
        {
            "id": withdrawal.id,
            "status": withdrawal.status,
            "amount": withdrawal.amount,
            "fee": withdrawal.fee,
            "total": withdrawal.amount + withdrawal.fee,
            "currency": withdrawal.currency,
            "speed": withdrawal.speed,
            "bank_name": withdrawal.bank_name,
            "provider": withdrawal.provider,
            "payout_id": withdrawal.payout_id,
            "created_at": withdrawal.created_at,
            "completed_at": withdrawal.completed_at,
            "failure_code": withdrawal.failure_code,
            "failure_message": withdrawal.failure_message,
            "ledger": WithdrawalLedgerOut(
                journal_id=withdrawal.journal_id,
                reversal_journal_id=withdrawal.reversal_journal_id,
            ),
        }
    )
