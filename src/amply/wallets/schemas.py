"""Request and response bodies of the wallet, transfers, money requests, the transaction
history and gifts from a wallet. Amounts are integers in minor units of the wallet's
currency (upper-case ISO 4217)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field, StrictBool, StringConstraints

from amply.auth.schemas import Username
from amply.kit.schemas import Amount, Currency, RequestModel, as_literal
from amply.models import enums
from amply.organisations.schemas import FundId, OrganisationId

Description = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    Field(
        description="What the money is for (mandatory, 1 to 500 characters).",
        examples=["Dinner on Friday"],
    ),
]
if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    TransferStatus = enums.TransferStatus
    RequestStatus = enums.MoneyRequestStatus
    RiskRule = enums.RiskRule
else:
    TransferStatus = as_literal(enums.TransferStatus)
    RequestStatus = as_literal(enums.MoneyRequestStatus)
    RiskRule = as_literal(enums.RiskRule)


class LedgerLegOut(BaseModel):
    """One ledger entry of the journal that moved the money."""

    chain_id: str = Field(description="The chain (a wallet `wal_…`, organisation or platform).")
    seq: int
    entry_id: str
    type: str = Field(description="The entry type, e.g. `transfer_out`.")
    amount: int = Field(description="Signed: + credit, - debit, in minor units.")
    currency: str
    balance_after: int | None = Field(
        description="The chain's balance after the entry: shown for your own wallet's legs only."
    )
    entry_hash: str


class WalletLedgerOut(BaseModel):
    chain_id: str = Field(description="The wallet's chain: its id.")
    head_seq: int = Field(description="Sequence number of the chain's last entry (0: empty).")
    head_hash: str | None


class WalletOut(BaseModel):
    object: Literal["wallet"] = "wallet"
    id: str = Field(examples=["wal_3kTn8Qz1Lm5Vb7Xc9Rd2Fg4H"])
    currency: str = Field(examples=["USD"])
    balance: int = Field(
        description="The ledger balance: the chain's balance_after (= the sum of its amounts).",
        examples=[12500],
    )
    held: int = Field(
        description="Set aside by transfers awaiting your confirmation.", examples=[2000]
    )
    available: int = Field(description="What you can spend: balance - held.", examples=[10500])
    ledger: WalletLedgerOut
    created_at: datetime


# --- Transfers ------------------------------------------------------------------------------


class TransferCreate(RequestModel):
    recipient: Username = Field(description="The recipient's username (any case).")
    amount: Amount
    currency: Currency | None = Field(
        default=None, description="Optional; must be your wallet's currency if given."
    )
    description: Description


class RiskFlagOut(BaseModel):
    rule: RiskRule
    reason: str = Field(description="Why the rule matched, in words for the sender.")


class PartyOut(BaseModel):
    wallet_id: str
    username: str


class TransferOut(BaseModel):
    object: Literal["transfer"] = "transfer"
    id: str = Field(examples=["txn_5Gh7Jk9Lm1Np3Qr5St7Vw9Xy"])
    status: TransferStatus = Field(
        description="`completed` (money moved), `pending_confirmation` (held: confirm or "
        "cancel before `hold_expires_at`), `cancelled`, `expired`, or `blocked` by a hard "
        "limit (nothing moved; see `blocked_reason`)."
    )
    sender: PartyOut
    recipient: PartyOut
    amount: int = Field(examples=[2500])
    currency: str = Field(examples=["USD"])
    description: str
    risk_flags: list[RiskFlagOut] = Field(
        description="Every risk rule that matched; any makes the transfer need confirmation."
    )
    blocked_reason: str | None
    hold_expires_at: datetime | None
    money_request_id: str | None = Field(description="The money request this transfer pays.")
    created_at: datetime
    completed_at: datetime | None
    ledger_entries: list[LedgerLegOut] = Field(
        description="The journal's entries once completed: transfer_out and transfer_in."
    )


# --- Money requests -------------------------------------------------------------------------


class MoneyRequestCreate(RequestModel):
    payer: Username = Field(description="Who you ask to pay: their username.")
    amount: Amount
    currency: Currency | None = Field(
        default=None, description="Optional; must be your wallet's currency if given."
    )
    description: Description


class MoneyRequestOut(BaseModel):
    object: Literal["money_request"] = "money_request"
    id: str = Field(examples=["req_8Bc2De4Fg6Hi8Jk0Lm2No4Pq"])
    status: RequestStatus
    requester: PartyOut
    payer: PartyOut
    amount: int
    currency: str
    description: str
    expires_at: datetime
    created_at: datetime
    resolved_at: datetime | None
    payment: TransferOut | None = Field(
        description="The transfer paying it, while awaiting confirmation or once completed "
        "(shown to the payer; to the requester once completed)."
    )


class MoneyRequestPaid(BaseModel):
    object: Literal["money_request_payment"] = "money_request_payment"
    request: MoneyRequestOut
    transfer: TransferOut


# --- History --------------------------------------------------------------------------------

HistoryType = Literal["sent", "received", "deposit", "withdrawal", "donation", "bonus"]
HistoryFilter = Literal[
    "sent", "received", "deposit", "withdrawal", "fee", "request", "donation", "bonus"
]
if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    HistoryStatus = enums.TransactionStatus
    GiftStatus = enums.DonationTransactionStatus
else:
    HistoryStatus = as_literal(enums.TransactionStatus)
    GiftStatus = as_literal(enums.DonationTransactionStatus)


class TransactionOut(BaseModel):
    object: Literal["transaction"] = "transaction"
    id: str
    type: HistoryType = Field(description="What it was for you.")
    status: HistoryStatus
    direction: Literal["in", "out"]
    amount: int = Field(description="The amount moved, positive; see `direction` and `fee`.")
    fee: int = Field(description="A fee paid on top (instant withdrawals).")
    currency: str
    description: str
    counterparty: PartyOut | None = Field(description="The other wallet of a transfer.")
    organisation_id: str | None = Field(description="The organisation a gift went to.")
    money_request_id: str | None
    created_at: datetime
    completed_at: datetime | None
    ledger_entries: list[LedgerLegOut] = Field(
        description="Entries of the journals that moved (and returned) the money."
    )


# --- Giving ---------------------------------------------------------------------------------


class WalletDonationCreate(RequestModel):
    organisation_id: OrganisationId
    fund_id: FundId | None = None
    amount: Amount
    currency: Currency | None = Field(
        default=None, description="Optional; must be your wallet's currency if given."
    )
    anonymous: StrictBool = Field(
        default=True,
        description="The public ledger shows your name only if you set this to false.",
    )
    description: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
    ] = "Donation"


class WalletDonationOut(BaseModel):
    object: Literal["wallet_donation"] = "wallet_donation"
    id: str
    status: GiftStatus
    organisation_id: str
    fund_id: str | None
    amount: int
    currency: str
    public_name: str = Field(description="The donor as the public ledger shows them.")
    created_at: datetime
    ledger_entries: list[LedgerLegOut]
