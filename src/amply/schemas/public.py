"""What the public API shows: organisations, their totals, funds and ledger entries."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from amply.schemas.donations import FundTotalOut, GoalOut


class TotalsOut(BaseModel):
    """One currency, added up from the public chain. All positive magnitudes but `net`."""

    currency: str
    received: int = Field(description="Gross of donations received.")
    refunded: int = Field(description="Refunded to donors (net of failed refunds).")
    processing_fees: int = Field(description="Taken by the payment processor (Stripe).")
    platform_fee: Literal[0] = Field(description="Taken by Amply: always 0.")
    disputed: int = Field(description="Withdrawn by disputes, net of disputes won.")
    dispute_fees: int = Field(description="The processor's dispute fees.")
    net: int = Field(description="What the organisation holds: the chain's balance.")
    donations: int = Field(description="How many donations were received.")


class ChainHeadOut(BaseModel):
    chain_id: str
    seq: int = Field(description="Entries in the chain (0: empty).")
    entry_hash: str | None = Field(description="The last entry's hash (null: empty).")


class PublicOrganisationOut(BaseModel):
    object: Literal["organisation"] = "organisation"
    id: str
    name: str
    slug: str
    description: str
    website: str | None
    country: str
    accepts_donations: bool
    totals: list[TotalsOut]
    head: ChainHeadOut


class PublicFundOut(BaseModel):
    id: str
    name: str
    description: str
    goal: GoalOut | None
    status: Literal["open", "closed"]
    totals: list[FundTotalOut]


class PublicOrganisationDetail(PublicOrganisationOut):
    funds: list[PublicFundOut] = Field(description="Its funds (up to 100), oldest first.")


class PublicEntryOut(BaseModel):
    """An entry exactly as docs/ledger-format.md §4 exports it: the same fields hash."""

    chain_id: str
    seq: int
    id: str
    type: str
    amount: int
    currency: str
    balance_after: int
    metadata: str = Field(description="Public metadata: compact JSON text, exactly as hashed.")
    journal_id: str
    created_at: str = Field(description="RFC 3339, UTC, microseconds, as hashed.")
    prev_entry_hash: str | None
    entry_hash: str


class LedgerPageOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[PublicEntryOut]
    has_more: bool
    next_after_seq: int | None = Field(description="Pass as `after_seq` for the next page.")


class VerificationOut(BaseModel):
    chain_id: str
    ok: bool
    entries_checked: int
    head_seq: int
    head_hash: str | None
    balances: dict[str, int]
    broken_seq: int | None
    reason: str | None
    verdict: str
    checked_at: datetime
