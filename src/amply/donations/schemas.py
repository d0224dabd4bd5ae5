"""Request and response bodies of funds, donations, refunds, Stripe onboarding and the
sandbox. Amounts are integers in minor units; currencies are upper-case ISO 4217 codes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    EmailStr,
    Field,
    HttpUrl,
    StrictBool,
    StringConstraints,
    model_validator,
)

from amply.kit.money import MAX_AMOUNT
from amply.kit.schemas import RequestModel
from amply.models.organisation import ReconnectReason
from amply.organisations.schemas import Currency

Amount = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=MAX_AMOUNT,
        description="A positive integer in the currency's minor units (cents for EUR).",
        examples=[2500],
    ),
]
OrganisationId = Annotated[
    str, Field(pattern=r"^org_[0-9A-Za-z]{1,64}$", examples=["org_7Hq2LmN4pR6sT8vX0zB1cD3f"])
]
FundId = Annotated[
    str, Field(pattern=r"^fund_[0-9A-Za-z]{1,64}$", examples=["fund_2aB4cD6eF8gH0iJ2kL4mN6oP"])
]
Text100 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
DonationStatus = Literal["pending", "completed", "failed", "refunded"]
RefundReason = Literal["requested_by_customer", "duplicate", "fraudulent"]


# --- Funds ----------------------------------------------------------------------------------


class Goal(RequestModel):
    amount: Amount
    currency: Currency


class FundCreate(RequestModel):
    name: Text100
    description: Annotated[str, Field(max_length=2000)] = ""
    goal: Goal | None = Field(default=None, description="An optional fundraising goal.")


class FundUpdate(RequestModel):
    """Only the fields sent are changed; `goal: null` removes the goal."""

    name: Text100 | None = None
    description: Annotated[str | None, Field(max_length=2000)] = None
    goal: Goal | None = None
    status: Literal["open", "closed"] | None = Field(
        default=None, description="A closed fund accepts no new donations."
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> FundUpdate:
        for field in self.model_fields_set - {"goal"}:
            if getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class GoalOut(BaseModel):
    amount: int
    currency: str


class FundTotalOut(BaseModel):
    currency: str
    received: int = Field(description="Gross received by completed donations.")
    refunded: int = Field(description="Refunded of those donations.")
    net: int = Field(description="received - refunded (Stripe's fees are on the ledger).")
    donations: int = Field(description="How many donations were completed.")


class FundOut(BaseModel):
    object: Literal["fund"] = "fund"
    id: str
    organisation_id: str
    name: str
    description: str
    goal: GoalOut | None
    status: Literal["open", "closed"]
    totals: list[FundTotalOut]
    created_at: datetime
    updated_at: datetime


# --- Stripe onboarding ----------------------------------------------------------------------


class StripeAccountOut(BaseModel):
    object: Literal["stripe_account"] = "stripe_account"
    provider: Literal["stripe", "sandbox"] = Field(
        description="`sandbox` when the server runs without Stripe keys."
    )
    account_id: str | None = Field(description="The connected account (`acct_…`), if any.")
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    accepts_donations: bool = Field(description="Whether checkout is open for this organisation.")
    requirements_due: list[str] = Field(
        description="What Stripe still needs from the organisation (its "
        "`requirements.currently_due`): send an admin through an onboarding link to give it."
    )
    disabled_reason: str | None = Field(
        description="Why Stripe has charges or payouts off, in Stripe's words (for example "
        "`requirements.past_due`), if it has."
    )
    reconnect_reason: ReconnectReason | None = Field(
        description="Set when the organisation's account no longer counts and an admin must "
        "connect a new one with `POST …/stripe-account`: `deauthorized` (its owner disconnected "
        "Amply in Stripe), `other_mode` (made with test keys, and the server now has live keys, "
        "or the other way round), `other_provider` (a sandbox account on a server with Stripe "
        "keys)."
    )


class AccountLinkCreate(RequestModel):
    refresh_url: Annotated[HttpUrl, Field(max_length=2000)] = Field(
        description="Where Stripe sends the admin if the link expired: ask for a new one there."
    )
    return_url: Annotated[HttpUrl, Field(max_length=2000)] = Field(
        description="Where Stripe sends the admin after onboarding."
    )


class AccountLinkOut(BaseModel):
    object: Literal["account_link"] = "account_link"
    url: str = Field(description="Send the admin here to complete Stripe's onboarding.")
    expires_at: datetime | None
    purpose: Literal["onboarding", "update"] = Field(
        description="`onboarding` until the account's details are submitted; then `update`: "
        "Stripe's onboarding again, asking for what is due now and what will be due next."
    )


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
    status: Literal["pending", "succeeded", "failed", "canceled"] = Field(
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
    provider: Literal["stripe", "sandbox"]
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
