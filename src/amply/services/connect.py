"""Stripe Connect onboarding: an organisation's connected account and its status.

Donations are direct charges on the organisation's own account, so an organisation takes
donations only once Stripe says its account can accept charges. ``account.updated`` events
keep that status current (``services/stripe_events.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.errors import Conflict
from amply.models import Organisation
from amply.services import organisations, security_events
from amply.services.payments import AccountLink, AccountState, PaymentGateway
from amply.services.security_events import Actor


@dataclass(frozen=True, slots=True)
class AccountStatus:
    provider: str
    account_id: str | None
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool


def status_of(organisation: Organisation, *, gateway: PaymentGateway) -> AccountStatus:
    """The account as Amply last heard of it (a foreign-mode account counts as none)."""
    account_id = organisation.stripe_account_id
    if account_id is None or not gateway.owns_account(account_id):
        return AccountStatus(gateway.provider, None, False, False, False)
    return AccountStatus(
        provider=gateway.provider,
        account_id=account_id,
        charges_enabled=organisation.charges_enabled,
        payouts_enabled=organisation.payouts_enabled,
        details_submitted=organisation.details_submitted,
    )


async def create_account(
    session: AsyncSession, *, organisation: Organisation, gateway: PaymentGateway, actor: Actor
) -> AccountStatus:
    """Create the organisation's connected account, or return the one it has."""
    await organisations.lock_organisation(session, organisation_id=organisation.id)
    await session.refresh(organisation)
    current = status_of(organisation, gateway=gateway)
    if current.account_id is not None:
        return current
    state = await gateway.create_account(
        organisation_id=organisation.id, country=organisation.country
    )
    _apply(organisation, state)
    await session.flush()
    await security_events.record_by(
        session,
        event_type="stripe_account_created",
        actor=actor,
        organisation_id=organisation.id,
        details={"account_id": state.account_id},
    )
    return status_of(organisation, gateway=gateway)


async def create_onboarding_link(
    session: AsyncSession,
    *,
    organisation: Organisation,
    gateway: PaymentGateway,
    refresh_url: str,
    return_url: str,
) -> AccountLink:
    account_id = status_of(organisation, gateway=gateway).account_id
    if account_id is None:
        raise Conflict(
            "Create the organisation's Stripe account first.", code="stripe_account_missing"
        )
    return await gateway.create_account_link(
        account_id=account_id, refresh_url=refresh_url, return_url=return_url
    )


async def refresh_account(
    session: AsyncSession, *, organisation: Organisation, gateway: PaymentGateway
) -> AccountStatus:
    """Ask Stripe for the account's status now, rather than wait for its next event."""
    account_id = status_of(organisation, gateway=gateway).account_id
    if account_id is None:
        raise Conflict(
            "Create the organisation's Stripe account first.", code="stripe_account_missing"
        )
    _apply(organisation, await gateway.retrieve_account(account_id=account_id))
    await session.flush()
    return status_of(organisation, gateway=gateway)


async def apply_account_update(
    session: AsyncSession, *, state: AccountState, as_of: datetime
) -> bool:
    """Record an ``account.updated`` event made at ``as_of``; False when no organisation has
    that account or a newer event was applied already."""
    organisation = await session.scalar(
        select(Organisation)
        .where(Organisation.stripe_account_id == state.account_id)
        .with_for_update()
    )
    if organisation is None:
        return False
    last = organisation.stripe_account_event_at
    if last is not None and as_of < last:
        return False
    _apply(organisation, state)
    organisation.stripe_account_event_at = as_of
    await session.flush()
    return True


def _apply(organisation: Organisation, state: AccountState) -> None:
    organisation.stripe_account_id = state.account_id
    organisation.charges_enabled = state.charges_enabled
    organisation.payouts_enabled = state.payouts_enabled
    organisation.details_submitted = state.details_submitted
    organisation.stripe_account_synced_at = func.now()
