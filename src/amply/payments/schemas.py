"""Payouts of an organisation's Stripe balance to its bank (connected accounts), and the
sandbox's stand-in for them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field, HttpUrl

from amply.kit.schemas import Amount, Currency, RequestModel, as_literal
from amply.models import ConnectedPayout
from amply.models.enums import Provider
from amply.payments.connect import AccountStatus

if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    ProviderName = Provider
else:
    ProviderName = as_literal(Provider)
from amply.models.organisation import ReconnectReason


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


class StripeAccountOut(BaseModel):
    object: Literal["stripe_account"] = "stripe_account"
    provider: ProviderName = Field(
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


def payout_out(payout: ConnectedPayout) -> PayoutOut:
    return PayoutOut(
        id=payout.id,
        organisation_id=payout.organisation_id,
        amount=payout.amount,
        currency=payout.currency,
        status=payout.status,
        failure_code=payout.failure_code,
        sent_entry_id=payout.sent_entry_id,
        failed_entry_id=payout.failed_entry_id,
        created_at=payout.created_at,
    )


def account_out(account: AccountStatus) -> StripeAccountOut:
    return StripeAccountOut(
        provider=account.provider,
        account_id=account.account_id,
        charges_enabled=account.charges_enabled,
        payouts_enabled=account.payouts_enabled,
        details_submitted=account.details_submitted,
        accepts_donations=account.charges_enabled,
        requirements_due=list(account.requirements_due),
        disabled_reason=account.disabled_reason,
        reconnect_reason=account.reconnect_reason,
    )
