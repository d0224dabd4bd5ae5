"""Stripe Connect onboarding: an organisation's connected account and its status.

Donations are direct charges on the organisation's own account, so an organisation takes
donations only once Stripe says its account can accept charges. ``account.updated`` events
keep that status current, and ``account.application.deauthorized`` says the account's owner
disconnected Amply (``webhooks/stripe_events.py``). An account counts only in the mode (test
or live keys) it was made in, and only until it disconnects; then the organisation's admin
connects a new one with the same ``POST …/stripe-account``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth import security_events
from amply.auth.security_events import Actor, Origin
from amply.kit.db import UnitOfWork
from amply.kit.errors import Conflict
from amply.models import Organisation
from amply.models.enums import SecurityEventType
from amply.models.organisation import ReconnectReason
from amply.organisations import service as organisations
from amply.payments.gateway import AccountLink, AccountState, PaymentGateway

# Who tells Amply that an account disconnected: Stripe's signed webhook.
STRIPE = Origin(client_address=None, user_agent="Stripe webhook")


@dataclass(frozen=True, slots=True)
class AccountStatus:
    provider: str
    account_id: str | None
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    requirements_due: tuple[str, ...] = ()
    disabled_reason: str | None = None
    # The organisation had an account that no longer counts: connect a new one.
    reconnect_reason: ReconnectReason | None = None


def status_of(organisation: Organisation, *, gateway: PaymentGateway) -> AccountStatus:
    """The account as Amply last heard of it. An account of another mode, or one that
    disconnected Amply, counts as none (with the reason)."""
    account_id = organisation.stripe_account_id
    reason = _reconnect_reason(organisation, gateway=gateway)
    if account_id is None or reason is not None:
        return AccountStatus(gateway.provider, None, False, False, False, reconnect_reason=reason)
    return AccountStatus(
        provider=gateway.provider,
        account_id=account_id,
        charges_enabled=organisation.charges_enabled,
        payouts_enabled=organisation.payouts_enabled,
        details_submitted=organisation.details_submitted,
        requirements_due=tuple(organisation.stripe_requirements_due or ()),
        disabled_reason=organisation.stripe_disabled_reason,
    )


def _reconnect_reason(
    organisation: Organisation, *, gateway: PaymentGateway
) -> ReconnectReason | None:
    account_id = organisation.stripe_account_id
    if account_id is None:
        return None
    if not gateway.owns_account(account_id):
        return ReconnectReason.OTHER_PROVIDER
    if organisation.stripe_account_livemode is not gateway.live_mode:
        return ReconnectReason.OTHER_MODE
    if organisation.stripe_account_deauthorized_at is not None:
        return ReconnectReason.DEAUTHORIZED
    return None


async def create_account(
    unit: UnitOfWork, *, organisation: Organisation, gateway: PaymentGateway, actor: Actor
) -> AccountStatus:
    """Create the organisation's connected account, or return the one it has. An account
    that no longer counts (another mode, or disconnected) is replaced by a new one.

    Stripe is asked with no transaction open: its idempotency key names the organisation and
    the account replaced, so two admins asking at once get the same account, and the one who
    records it second finds it recorded."""
    async with unit.step() as session:
        await session.refresh(organisation)
        current = status_of(organisation, gateway=gateway)
        replacing = organisation.stripe_account_id
    if current.account_id is not None:
        return current
    state = await unit.outside(
        lambda: gateway.create_account(
            organisation_id=organisation.id, country=organisation.country, replacing=replacing
        )
    )
    async with unit.step() as session:
        await organisations.lock_organisation(session, organisation_id=organisation.id)
        await session.refresh(organisation)
        current = status_of(organisation, gateway=gateway)
        if current.account_id is not None:
            return current
        _apply(organisation, state)
        organisation.stripe_account_livemode = gateway.live_mode
        organisation.stripe_account_deauthorized_at = None
        organisation.stripe_account_event_at = None
        await session.flush()
        await security_events.record_by(
            session,
            event_type=SecurityEventType.STRIPE_ACCOUNT_CREATED,
            actor=actor,
            organisation_id=organisation.id,
            details={"account_id": state.account_id, "replaces": replacing},
        )
        return status_of(organisation, gateway=gateway)


async def create_onboarding_link(
    unit: UnitOfWork,
    *,
    organisation: Organisation,
    gateway: PaymentGateway,
    refresh_url: str,
    return_url: str,
) -> AccountLink:
    """Onboarding until the admin has submitted the account's details; after that, an update
    of them (what Stripe asks for now and what it will ask for next)."""
    async with unit.step():
        status = _connected(organisation, gateway=gateway)
    account_id = status.account_id
    assert account_id is not None
    return await unit.outside(
        lambda: gateway.create_account_link(
            account_id=account_id,
            refresh_url=refresh_url,
            return_url=return_url,
            purpose="update" if status.details_submitted else "onboarding",
        )
    )


async def refresh_account(
    unit: UnitOfWork, *, organisation: Organisation, gateway: PaymentGateway
) -> AccountStatus:
    """Ask Stripe for the account's status now, rather than wait for its next event."""
    async with unit.step():
        account_id = _connected(organisation, gateway=gateway).account_id
    assert account_id is not None
    state = await unit.outside(lambda: gateway.retrieve_account(account_id=account_id))
    async with unit.step() as session:
        await organisations.lock_organisation(session, organisation_id=organisation.id)
        await session.refresh(organisation)
        # An account replaced while Stripe answered keeps what its own events said.
        if status_of(organisation, gateway=gateway).account_id == account_id:
            _apply(organisation, state)
            # What Stripe said now outdates every event made before: an older one must not win.
            organisation.stripe_account_event_at = func.now()
            await session.flush()
        return status_of(organisation, gateway=gateway)


def _connected(organisation: Organisation, *, gateway: PaymentGateway) -> AccountStatus:
    status = status_of(organisation, gateway=gateway)
    if status.account_id is None:
        raise Conflict(
            "Create the organisation's Stripe account first.", code="stripe_account_missing"
        )
    return status


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


async def apply_deauthorization(session: AsyncSession, *, account_id: str, as_of: datetime) -> bool:
    """Record that the account's owner disconnected Amply (``account.application.
    deauthorized``): it takes no donations from now on. False when no organisation has that
    account (any more)."""
    organisation = await session.scalar(
        select(Organisation).where(Organisation.stripe_account_id == account_id).with_for_update()
    )
    if organisation is None or organisation.stripe_account_deauthorized_at is not None:
        return False
    organisation.stripe_account_deauthorized_at = as_of
    organisation.charges_enabled = False
    organisation.payouts_enabled = False
    await session.flush()
    await security_events.record(
        session,
        event_type=SecurityEventType.STRIPE_ACCOUNT_DEAUTHORIZED,
        origin=STRIPE,
        organisation_id=organisation.id,
        details={"account_id": account_id},
    )
    return True


def _apply(organisation: Organisation, state: AccountState) -> None:
    organisation.stripe_account_id = state.account_id
    organisation.charges_enabled = state.charges_enabled
    organisation.payouts_enabled = state.payouts_enabled
    organisation.details_submitted = state.details_submitted
    organisation.stripe_requirements_due = list(state.requirements_due)
    organisation.stripe_disabled_reason = state.disabled_reason
    organisation.stripe_account_synced_at = func.now()
