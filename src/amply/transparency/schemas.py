"""What the public API shows: organisations, their totals, funds and ledger entries, and the
platform's own chains."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from amply.kit.schemas import as_literal
from amply.models.enums import FundStatus, KeyStatus
from amply.organisations.schemas import FundTotalOut, GoalOut

if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    PublicFundStatus = FundStatus
else:
    PublicFundStatus = as_literal(FundStatus)


class TotalsOut(BaseModel):
    """One currency, added up from the public chain. All positive magnitudes but `net`."""

    currency: str
    received: int = Field(description="Gross of donations received.")
    refunded: int = Field(description="Refunded to donors (net of failed refunds).")
    processing_fees: int = Field(description="Taken by the payment processor (Stripe).")
    platform_fee: Literal[0] = Field(description="Taken by Amply: always 0.")
    disputed: int = Field(description="Withdrawn by disputes, net of disputes won.")
    dispute_fees: int = Field(description="The processor's dispute fees.")
    payouts: int = Field(
        description="Paid out from the processor to the organisation's bank, net of payouts "
        "that failed or were canceled (0 when there are none)."
    )
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


class PlatformTotalsOut(BaseModel):
    """One currency of a platform chain, added up from its entries."""

    currency: str
    by_type: dict[str, int] = Field(
        description="The sum of the signed amounts of each entry type (e.g. `fee_collected`)."
    )
    entries: int = Field(description="How many entries are in this currency.")
    balance: int = Field(description="The chain's balance: the sum of all its amounts.")


class PlatformChainOut(BaseModel):
    """A chain the platform itself holds (fees it collects, money it gives away)."""

    object: Literal["platform_chain"] = "platform_chain"
    id: str
    description: str = Field(description="What the chain records.")
    totals: list[PlatformTotalsOut]
    head: ChainHeadOut


class PublicFundOut(BaseModel):
    id: str
    name: str
    description: str
    goal: GoalOut | None
    status: PublicFundStatus
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


class CheckpointOut(BaseModel):
    """A signed checkpoint of a chain's head (docs/ledger-format.md §6)."""

    object: Literal["checkpoint"] = "checkpoint"
    chain_id: str
    origin: str = Field(description="The checkpoint's first line: <key name>/ledger/<chain>.")
    size: int = Field(description="Entries covered: the head's seq.")
    root_hash: str = Field(description="The head's entry_hash (the note holds it in base64).")
    issued_at: datetime
    key: str = Field(description="The verifier key that signed it (see /v1/public/keys).")
    note: str = Field(
        description="The signed note exactly as signed (c2sp.org/tlog-checkpoint): check it "
        "with `amply verify` or any signed-note tool."
    )


class SigningKeyOut(BaseModel):
    """A key that signs (or signed) checkpoints."""

    key: str = Field(
        description="Verifier key: <name>+<hex key id>+<base64(0x01 || Ed25519 public key)>.",
        examples=["amply.example+2f4ac19b+AV3rLq9Kd3mF8u0Wm6E7o0Yh1bXz5u1oPq4sWnR2t8cA"],
    )
    name: str
    key_id: str = Field(description="4 bytes, hex: SHA-256(name, 0x0A, 0x01, public key)[:4].")
    algorithm: Literal["ed25519"] = "ed25519"
    public_key: str = Field(description="The raw 32-byte Ed25519 public key, base64.")
    status: KeyStatus = Field(
        description="active: signs new checkpoints; retired: vouches for checkpoints issued "
        "before `retired_at` only; revoked: vouches for none (docs/ledger-format.md §6)."
    )
    activated_at: datetime = Field(description="When it was installed to sign.")
    retired_at: datetime | None = Field(description="When it stopped signing, if it has.")
    revoked_at: datetime | None = Field(description="When it was revoked, if it was.")


class SigningKeysOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[SigningKeyOut]
