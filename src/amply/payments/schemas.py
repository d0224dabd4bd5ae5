"""Payouts of an organisation's Stripe balance to its bank (connected accounts), and the
sandbox's stand-in for them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from amply.donations.schemas import Amount
from amply.kit.schemas import RequestModel
from amply.organisations.schemas import Currency


class SandboxPayoutIn(RequestModel):
    amount: Amount = Field(
        description="Pay out this much of the organisation's simulated Stripe balance (at "
        "most what it holds in that currency)."
    )
    currency: Currency | None = Field(
        default=None, description="Omit for the organisation's default currency."
    )


class PayoutOut(BaseModel):
    """A payout as the organisation's public chain records it."""

    object: str = "payout"
    id: str = Field(description="Stripe's payout id (`po_…`; `po_sandbox_…` in the sandbox).")
    organisation_id: str
    amount: int = Field(description="Minor units paid out.")
    currency: str
    status: str = Field(
        description="`pending`, `in_transit`, `paid`, `failed` or `canceled`, as Stripe last "
        "said (it only moves forward)."
    )
    failure_code: str | None = Field(description="Stripe's reason, when it failed.")
    sent_entry_id: str | None = Field(
        description="The `payout_sent` entry (-amount), recorded when Stripe created the payout."
    )
    failed_entry_id: str | None = Field(
        description="The `payout_failed` entry (+amount), when it failed or was canceled."
    )
    created_at: datetime
