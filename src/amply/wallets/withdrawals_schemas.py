"""Request and response bodies of withdrawals. Amounts are integers in minor units;
currencies are upper-case ISO 4217 codes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from amply.kit.money import MAX_AMOUNT
from amply.kit.schemas import RequestModel
from amply.organisations.schemas import Currency

Speed = Literal["standard", "instant"]
WithdrawalStatus = Literal["pending", "paid", "failed"]
Amount = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=MAX_AMOUNT,
        description="A positive integer in the wallet currency's minor units (cents for USD).",
        examples=[2500],
    ),
]
BankName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Field(
        description="Which of your banks to pay: a label you recognise. It stays between you "
        "and Amply; the ledger never shows it.",
        examples=["First Community Bank"],
    ),
]


class WithdrawalCreate(RequestModel):
    amount: Amount
    speed: Speed = Field(
        default="standard",
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
    provider: Literal["stripe", "sandbox"]
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
