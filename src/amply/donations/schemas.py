"""Request and response bodies of funds, donations, refunds, Stripe onboarding and the
sandbox. Amounts are integers in minor units; currencies are upper-case ISO 4217 codes.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    EmailStr,
    Field,
    StrictBool,
)

from amply.kit.schemas import Amount, Currency, RequestModel, Text100, as_literal
from amply.models import enums
from amply.organisations.schemas import FundId, OrganisationId

if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    DonationStatus = enums.DonationStatus
    RefundReason = enums.RefundReason
    RefundStatus = enums.RefundStatus
    Provider = enums.Provider
else:
    DonationStatus = as_literal(enums.DonationStatus)
    RefundReason = as_literal(enums.RefundReason)
    RefundStatus = as_literal(enums.RefundStatus)
    Provider = as_literal(enums.Provider)


# --- Funds ----------------------------------------------------------------------------------


# --- Stripe onboarding ----------------------------------------------------------------------


# --- Donations ------------------------------------------------------------------------------


class DonationCreate(RequestModel):
    organisation_id: OrganisationId
    fund_id: FundId | None = Field(default=None, description="An open fund of the organisation.")
    amount: Amount
    currency: Currency
    donor_name: Text100 | None = Field(default=None, examples=["Ada Lovelace"])
    donor_email: Annotated[EmailStr | None, Field(max_length=254)] = Field(
        default=None, description="For the donor's receipt; never public."
    )
    anonymous: StrictBool = Field(
        default=False,
        description="Show the donor as `Anonymous` on the public ledger even if named here.",
    )
    message: Annotated[str | None, Field(max_length=500)] = Field(
        default=None, description="A message to the organisation; never public."
    )


class LedgerEntryRef(BaseModel):
    chain_id: str
    seq: int
    entry_id: str
    entry_hash: str


class RefundOut(BaseModel):
    object: Literal["refund"] = "refund"
    id: str
    donation_id: str
    amount: int
    reason: RefundReason
    note: str | None
    status: RefundStatus = Field(
        description="Stripe's status of the refund; the ledger moves when Stripe confirms."
    )
    provider_refund_id: str
    created_at: datetime


class DonationOut(BaseModel):
    object: Literal["donation"] = "donation"
    id: str = Field(examples=["don_3xY5zA7bC9dE1fG3hI5jK7lM"])
    organisation_id: str
    fund_id: str | None
    amount: int
    currency: str
    status: DonationStatus
    donor_name: str | None
    anonymous: bool
    public_name: str = Field(description="How the public ledger names the donor.")
    message: str | None
    amount_refunded: int
    created_at: datetime
    completed_at: datetime | None
    ledger_entry: LedgerEntryRef | None = Field(
        description="The donation_received entry on the organisation's chain, once completed."
    )
    # Organisation view only (null for donors):
    donor_email: str | None = None
    payment_intent_id: str | None = None
    processing_fee: int | None = Field(
        default=None, description="Stripe's fee, in `processing_fee_currency`."
    )
    processing_fee_currency: str | None = Field(
        default=None, description="The currency Stripe charged its fee in (the account's)."
    )
    amount_disputed: int | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    refunds: list[RefundOut] | None = None


class PaymentOut(BaseModel):
    provider: Provider
    payment_intent_id: str
    client_secret: str | None = Field(description="For Stripe.js `confirmPayment` (Stripe only).")
    publishable_key: str | None = Field(description="Initialise Stripe.js with this key.")
    stripe_account: str = Field(description="Initialise Stripe.js with `{stripeAccount}`.")


class CheckoutOut(BaseModel):
    object: Literal["checkout"] = "checkout"
    donation: DonationOut
    payment: PaymentOut
    receipt_token: str = Field(
        description="Lets the donor read this donation (`X-Receipt-Token`). Shown once."
    )


class RefundCreate(RequestModel):
    amount: Amount | None = Field(default=None, description="Omit to refund what remains.")
    reason: RefundReason
    note: Annotated[str | None, Field(max_length=500)] = Field(
        default=None, description="Internal note; never public."
    )


class SandboxRefund(RequestModel):
    amount: Amount | None = Field(
        default=None,
        description="Refund this much as if from Stripe's dashboard, besides any refunds "
        "asked for through Amply. Omit both to refund what remains.",
    )


class SandboxDonationOut(BaseModel):
    """What the sandbox says about a donation's payment: where the money stands, never who
    gave it (no donor name, email or message: anyone may confirm a donor's payment)."""

    object: Literal["donation"] = "donation"
    id: str = Field(examples=["don_3xY5zA7bC9dE1fG3hI5jK7lM"])
    organisation_id: str
    amount: int
    currency: str
    status: DonationStatus
    amount_refunded: int
    completed_at: datetime | None
    ledger_entry: LedgerEntryRef | None = Field(
        description="The donation_received entry on the organisation's chain, once completed."
    )


class WebhookAck(BaseModel):
    received: Literal[True] = True
    outcome: Literal["processed", "ignored", "duplicate"]


class ReceiptDonationOut(BaseModel):
    id: str
    organisation_id: str
    fund_id: str | None
    amount: int
    currency: str
    status: DonationStatus
    completed_at: datetime | None


class ReceiptEntryOut(BaseModel):
    chain_id: str
    seq: int
    id: str
    entry_hash: str


class ReceiptCommitmentOut(BaseModel):
    """Opens the `receipt_commitment` in the entry's metadata (docs/ledger-format.md §7)."""

    scheme: Literal["amply-receipt-commitment/v1"] = "amply-receipt-commitment/v1"
    salt: str | None = Field(
        description="32 random bytes, hex (null: a donation from before "
        "receipts carried commitments)."
    )
    secret: str = Field(description="SHA-256 of your receipt token, hex.")
    value: str | None = Field(description="The commitment the public entry carries.")


class ReceiptCheckpointOut(BaseModel):
    note: str = Field(description="A signed checkpoint covering the entry.")
    key: str = Field(description="The verifier key that signed it.")


class ReceiptOut(BaseModel):
    """Everything a donor needs to prove, offline, that a public entry is their donation:
    `amply verify-receipt RECEIPT EXPORT`."""

    format: Literal["amply-donation-receipt/v1"] = "amply-donation-receipt/v1"
    donation: ReceiptDonationOut
    entry: ReceiptEntryOut
    commitment: ReceiptCommitmentOut
    checkpoint: ReceiptCheckpointOut
