"""Request and response bodies of deposits. Amounts are integers in minor units of the
wallet's currency (upper-case ISO 4217)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from amply.kit.schemas import Amount, Currency, RequestModel, as_literal
from amply.models import enums

if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    DepositStatus = enums.DepositStatus
    DepositSource = enums.DepositSource
    Provider = enums.Provider
else:
    DepositStatus = as_literal(enums.DepositStatus)
    DepositSource = as_literal(enums.DepositSource)
    Provider = as_literal(enums.Provider)
CardId = Annotated[
    str,
    Field(pattern=r"^card_[0-9A-Za-z]{1,64}$", examples=["card_4Hj6Kl8Mn0Pq2Rs4Tu6Vw8Xy"]),
]
BankName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    Field(description="The simulated bank's name (1 to 100 characters).", examples=["Demo Bank"]),
]
WalletCurrency = Annotated[
    Currency | None,
    Field(description="Optional; must be your wallet's currency if given.", examples=["USD"]),
]


class DepositCreate(RequestModel):
    """`source: card` charges a saved card (a PaymentIntent on Amply's Stripe account) and
    credits the wallet when the payment succeeds; `source: bank` (sandbox mode only) is a
    simulated bank transfer, credited at once."""

    source: DepositSource = Field(description="Where the money comes from.")
    amount: Amount
    currency: WalletCurrency = None
    card_id: CardId | None = Field(
        default=None,
        description="Card deposits: one of your cards; your default card if omitted.",
    )
    bank_name: BankName | None = Field(
        default=None, description="Bank deposits (required): the simulated bank's name."
    )


class DepositEntryOut(BaseModel):
    """The ledger entry that credited the wallet."""

    chain_id: str = Field(description="The wallet's chain: its id.")
    seq: int
    entry_id: str
    amount: int
    balance_after: int
    entry_hash: str


class DepositOut(BaseModel):
    object: Literal["deposit"] = "deposit"
    id: str = Field(examples=["txn_7Fg9Hj1Kl3Mn5Pq7Rs9Tu1Vw"])
    status: DepositStatus = Field(
        description="`pending` until the payment's outcome is known; `completed` once the "
        "wallet is credited; `failed` if the payment failed (nothing credited; a failed "
        "payment that later succeeds still completes)."
    )
    amount: int = Field(examples=[2500])
    currency: str = Field(examples=["USD"])
    source: DepositSource
    card_id: str | None = Field(description="The card charged (card deposits).")
    bank_name: str | None = Field(description="The simulated bank (bank deposits).")
    provider: Provider
    payment_intent_id: str | None = Field(description="The PaymentIntent (card deposits).")
    description: str
    failure_code: str | None = Field(examples=["card_declined"])
    failure_message: str | None
    created_at: datetime
    completed_at: datetime | None
    ledger_entry: DepositEntryOut | None = Field(description="Once completed.")
