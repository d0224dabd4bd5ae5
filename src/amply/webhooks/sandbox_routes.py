"""Sandbox payments (only without Stripe keys): say what happened to a payment (a donation's,
or a wallet's card deposit), and the same event handlers as Stripe's webhook take it from
there. (The sandbox's SetupIntents are confirmed in ``wallets/cards_routes.py``.)

Each action answers only to a caller who could have done the real one: anyone may confirm
or fail a donation's payment (its donor has no account: Stripe.js confirms it with the client
secret), only the wallet's owner a card deposit's, and only the donation's organisation (an
admin, or a write API key, as for ``POST /v1/donations/{id}/refunds``) may have Stripe
confirm refunds. Another's payment answers 404, as one that does not exist.

Payouts (``/v1/sandbox/organisations/{id}/payouts``): Stripe pays an organisation's sandbox
balance out to its bank, and the payout is paid or fails; only the organisation's admins (or
its write API key) may say so.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth.dependencies import (
    CallerDep,
    CurrentUser,
    OriginDep,
    SignedIn,
    get_caller,
    get_current_user,
    require_caller,
)
from amply.donations import service as donations
from amply.donations.schemas import LedgerEntryRef, SandboxDonationOut, SandboxRefund
from amply.kit.dependencies import SessionDep, SettingsDep
from amply.kit.error_responses import at, error_responses
from amply.kit.errors import ErrorCode, NotFound
from amply.models import Donation, Transaction
from amply.models.enums import MemberRole
from amply.organisations.dependencies import authorize_organisation
from amply.payments.dependencies import GatewayDep, require_sandbox
from amply.payments.schemas import PayoutOut, SandboxPayoutIn, payout_out
from amply.wallets.cards_schemas import SandboxSetupIntentOut, SandboxSetupIntentSucceed
from amply.wallets.deposits_schemas import DepositOut
from amply.wallets.views import deposit_out
from amply.webhooks import sandbox

PaymentId = Annotated[
    str,
    Path(
        max_length=100,
        description="The sandbox PaymentIntent id (`pi_sandbox_…`) of a donation or a card "
        "deposit.",
    ),
]


async def _payer(
    payment_id: PaymentId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> None:
    """Who may say how a payment went: anyone for a donation's, its wallet's owner (a
    signed-in user) for a card deposit's. A donor's credentials are not even read (as
    Stripe.js does not read Amply's), so a stale session cookie cannot stop their payment."""
    owner = await sandbox.owner_of(session, payment_intent_id=payment_id)
    if owner.user_id is None:
        return
    caller = await get_caller(request, session, settings, origin)
    user = await get_current_user(caller)  # 401 for anonymous callers and API keys
    if user.user.id != owner.user_id:
        raise sandbox.no_such_payment()


async def _refunder(payment_id: PaymentId, caller: CallerDep, session: SessionDep) -> None:
    """Who may have Stripe confirm a payment's refunds: an admin (or write key) of the
    donation's organisation; for a card deposit, its wallet's owner (who learns that deposits
    are not refunded)."""
    caller = require_caller(caller)  # 401 before the payment is looked up
    owner = await sandbox.owner_of(session, payment_intent_id=payment_id)
    if owner.organisation_id is None:
        if not isinstance(caller, SignedIn) or caller.user.id != owner.user_id:
            raise sandbox.no_such_payment()
        return
    try:
        await authorize_organisation(
            session,
            caller,
            organisation_id=owner.organisation_id,
            role=MemberRole.ADMIN,
            scope="write",
        )
    except NotFound as error:
        # Another organisation's payment is as missing as one that never existed.
        raise sandbox.no_such_payment() from error


# What every sandbox route may answer, and what those an organisation's admins call may too.
_SANDBOX_ERRORS: Final = (401, 403, 404, 422, ErrorCode.SANDBOX_DISABLED)
_ADMIN_ERRORS: Final = (
    *_SANDBOX_ERRORS,
    ErrorCode.ROLE_INSUFFICIENT,
    ErrorCode.SESSION_REQUIRED,
    ErrorCode.API_KEY_READ_ONLY,
)
_PAYOUT_ERRORS: Final = (*_ADMIN_ERRORS, at(409, ErrorCode.PAYOUTS_UNAVAILABLE))

router = APIRouter(
    prefix="/sandbox/payments/{payment_id}",
    tags=["sandbox"],
    dependencies=[Depends(require_sandbox)],
)


async def _payment_out(
    session: AsyncSession, payment: Donation | Transaction
) -> SandboxDonationOut | DepositOut:
    if isinstance(payment, Transaction):
        return await deposit_out(session, payment)  # its owner's own deposit
    return await _donation_out(session, payment)


async def _donation_out(session: AsyncSession, donation: Donation) -> SandboxDonationOut:
    entries = await donations.received_entries(session, donations=[donation])
    entry = entries.get(donation.received_entry_id or "")
    return SandboxDonationOut(
        id=donation.id,
        organisation_id=donation.organisation_id,
        amount=donation.amount,
        currency=donation.currency,
        status=donation.status,
        amount_refunded=donation.amount_refunded,
        completed_at=donation.completed_at,
        ledger_entry=LedgerEntryRef(
            chain_id=entry.chain_id, seq=entry.seq, entry_id=entry.id, entry_hash=entry.entry_hash
        )
        if entry
        else None,
    )


@router.post(
    "/succeed",
    dependencies=[Depends(_payer)],
    summary="The payment succeeds (a donor's, or a card deposit's)",
    description="A donation's payment: anyone (the donor has no account). Answers with the "
    "donation's status and ledger entry, never its donor. A card deposit's: its wallet's "
    "owner only (401 without a session, 404 for another's); answers with the deposit, "
    "credited to the wallet.",
    responses=error_responses(
        *_SANDBOX_ERRORS, ErrorCode.PAYMENT_ALREADY_SUCCEEDED, ErrorCode.PAYMENT_NOT_PENDING
    ),
)
async def succeed(
    payment_id: PaymentId, session: SessionDep, gateway: GatewayDep
) -> SandboxDonationOut | DepositOut:
    payment = await sandbox.succeed(session, payment_intent_id=payment_id, gateway=gateway)
    return await _payment_out(session, payment)


@router.post(
    "/fail",
    dependencies=[Depends(_payer)],
    summary="The payment fails (a donor's, or a card deposit's)",
    description="Who may: as for `…/succeed`. Answers with the donation's status (never its "
    "donor), or with the deposit.",
    responses=error_responses(
        *_SANDBOX_ERRORS, ErrorCode.PAYMENT_ALREADY_SUCCEEDED, ErrorCode.PAYMENT_NOT_PENDING
    ),
)
async def fail(
    payment_id: PaymentId, session: SessionDep, gateway: GatewayDep
) -> SandboxDonationOut | DepositOut:
    payment = await sandbox.fail(session, payment_intent_id=payment_id, gateway=gateway)
    return await _payment_out(session, payment)


@router.post(
    "/refund",
    dependencies=[Depends(_refunder)],
    summary="Stripe confirms refunds of the payment (the organisation's admins, or a write "
    "API key)",
    description="Who may: as for `POST /v1/donations/{id}/refunds`: an admin of the "
    "donation's organisation or its write API key (401 without credentials, 403 for a "
    "viewer or a read-only key, 404 for another organisation's payment). Answers with the "
    "donation's status and amount refunded, never its donor.",
    responses=error_responses(
        *_ADMIN_ERRORS,
        ErrorCode.DEPOSIT_NOT_REFUNDABLE,
        ErrorCode.DONATION_NOT_COMPLETED,
        ErrorCode.REFUND_EXCEEDS_REMAINING,
    ),
)
async def refund(
    payment_id: PaymentId,
    session: SessionDep,
    gateway: GatewayDep,
    body: SandboxRefund | None = None,
) -> SandboxDonationOut:
    donation = await sandbox.refund(
        session,
        payment_intent_id=payment_id,
        amount=body.amount if body else None,
        gateway=gateway,
    )
    return await _donation_out(session, donation)


# --- Payouts of an organisation's sandbox Stripe balance ---------------------------------------

PayoutId = Annotated[
    str, Path(max_length=120, description="The sandbox payout's id (`po_sandbox_…`).")
]
OrganisationPath = Annotated[str, Path(max_length=100, description="The organisation's id.")]


async def _payout_admin(
    organisation_id: OrganisationPath, caller: CallerDep, session: SessionDep
) -> None:
    """Who may have Stripe pay out: an admin (or write API key) of the organisation, as for
    refunds; another organisation answers 404."""
    await authorize_organisation(
        session, caller, organisation_id=organisation_id, role=MemberRole.ADMIN, scope="write"
    )


payouts_router = APIRouter(
    prefix="/sandbox/organisations/{organisation_id}/payouts",
    tags=["sandbox"],
    dependencies=[Depends(require_sandbox), Depends(_payout_admin)],
)


@payouts_router.post(
    "",
    status_code=201,
    summary="Stripe pays out the organisation's sandbox balance to its bank",
    description="As Stripe's automatic payouts do: the payout's balance transaction takes "
    "`amount` from the organisation's simulated Stripe balance (422 `payout_exceeds_balance` "
    "beyond it) and `payout.created` puts a `payout_sent` entry on its public chain. Then "
    "`…/{payout_id}/paid` or `…/{payout_id}/fail`. An admin of the organisation, or its write "
    "API key.",
    responses=error_responses(*_PAYOUT_ERRORS, ErrorCode.PAYOUT_EXCEEDS_BALANCE),
)
async def create_payout(
    organisation_id: OrganisationPath,
    body: SandboxPayoutIn,
    session: SessionDep,
    gateway: GatewayDep,
) -> PayoutOut:
    payout = await sandbox.create_payout(
        session,
        organisation_id=organisation_id,
        amount=body.amount,
        currency=body.currency,
        gateway=gateway,
    )
    return payout_out(payout)


@payouts_router.post(
    "/{payout_id}/paid",
    summary="The sandbox payout reaches the organisation's bank",
    description="`payout.paid`: the status becomes `paid`; the chain does not move (the "
    "balance was debited when the payout was created).",
    responses=error_responses(*_PAYOUT_ERRORS, ErrorCode.PAYOUT_SETTLED),
)
async def payout_paid(
    organisation_id: OrganisationPath, payout_id: PayoutId, session: SessionDep, gateway: GatewayDep
) -> PayoutOut:
    payout = await sandbox.settle_payout(
        session, organisation_id=organisation_id, payout_id=payout_id, paid=True, gateway=gateway
    )
    return payout_out(payout)


@payouts_router.post(
    "/{payout_id}/fail",
    summary="The sandbox payout fails (even after it was paid)",
    description="`payout.failed` with its `payout_failure` balance transaction: the amount "
    "returns to the balance, and a `payout_failed` entry to the chain.",
    responses=error_responses(*_PAYOUT_ERRORS, ErrorCode.PAYOUT_SETTLED),
)
async def payout_failed(
    organisation_id: OrganisationPath, payout_id: PayoutId, session: SessionDep, gateway: GatewayDep
) -> PayoutOut:
    payout = await sandbox.settle_payout(
        session, organisation_id=organisation_id, payout_id=payout_id, paid=False, gateway=gateway
    )
    return payout_out(payout)


SetupIntentPath = Annotated[
    str, Path(max_length=100, description="The sandbox SetupIntent (`seti_sandbox_…`).")
]

setup_intents_router = APIRouter(
    prefix="/sandbox/setup-intents", tags=["sandbox"], dependencies=[Depends(require_sandbox)]
)


@setup_intents_router.post(
    "/{setup_intent_id}/succeed",
    summary="Your card's SetupIntent succeeds with a test card (sandbox only)",
    description="Stands in for Stripe.js confirming the SetupIntent: the test card is saved "
    "to your wallet as Stripe's `setup_intent.succeeded` event would save it. Only the "
    "wallet's owner, signed in (401 otherwise; another user's SetupIntent is 404).",
    responses=error_responses(*_SANDBOX_ERRORS, ErrorCode.SETUP_INTENT_ALREADY_SUCCEEDED),
)
async def succeed_sandbox_setup_intent(
    setup_intent_id: SetupIntentPath,
    session: SessionDep,
    user: CurrentUser,
    gateway: GatewayDep,
    body: SandboxSetupIntentSucceed | None = None,
) -> SandboxSetupIntentOut:
    payment_method_id = await sandbox.succeed_setup_intent(
        session,
        user_id=user.user.id,
        setup_intent_id=setup_intent_id,
        card=body.card if body else "visa",
        gateway=gateway,
    )
    return SandboxSetupIntentOut(id=setup_intent_id, payment_method_id=payment_method_id)
