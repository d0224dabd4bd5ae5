"""Donations: checkout, what donors and organisations see, refunds, and the ledger effects
of what Stripe (or the sandbox) reports.

A donation is created ``pending`` with a PaymentIntent on the organisation's connected
account. Only events move it on: ``payment_intent.succeeded`` completes it and appends
``donation_received`` (and Stripe's ``payment_processing_fee``) to the organisation's chain;
refunds and disputes append their own entries. Every effect is keyed to state held under the
donation's row lock (``received_entry_id``, ``amount_refunded``, the record of each dispute
balance transaction), so an event delivered twice, late or out of order never moves money
twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth import security_events, tokens
from amply.auth.security_events import Actor, Origin
from amply.kit import rate_limits
from amply.kit.errors import (
    AmplyError,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
)
from amply.kit.idempotency import IdempotentRequest
from amply.kit.ids import derived_id, generate_id
from amply.kit.money import Money, minimum_charge_amount
from amply.kit.pagination import Page, keyset_page
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.ledger.service import JSONValue, Leg
from amply.models import (
    ApiKey,
    ChargeBalanceTransaction,
    Donation,
    DonationDispute,
    DonationRefund,
    Organisation,
)
from amply.models.enums import DonationStatus, EntryType, RefundStatus, SecurityEventType
from amply.organisations import funds
from amply.organisations import service as organisations
from amply.payments import connect
from amply.payments.gateway import (
    CreatedPayment,
    CreatedRefund,
    PaymentGateway,
    PaymentRefused,
    RefundReason,
)
from amply.payments.stripe_objects import BalanceMove, DisputeState
from amply.verify import receipt_commitment

RECEIPT_TOKEN_PREFIX = "rcpt_"  # noqa: S105 - a prefix, not a secret
View = Literal["donor", "organisation"]


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    organisation_id: str
    amount: int
    currency: str
    fund_id: str | None = None
    donor_name: str | None = None
    donor_email: str | None = None
    anonymous: bool = False
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Checkout:
    donation: Donation
    provider: str
    client_secret: str | None
    publishable_key: str | None
    receipt_token: str


class OrganisationNotAccepting(AmplyError):
    status_code = 409
    default_code = "organisation_not_accepting_donations"


# --- Checkout -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckoutPlan:
    """A checkout that passed its checks, with its donation id, before Stripe is asked."""

    donation_id: str
    stripe_account_id: str
    request: CheckoutRequest


async def prepare_checkout(
    session: AsyncSession,
    *,
    request: CheckoutRequest,
    gateway: PaymentGateway,
    settings: Settings,
    origin: Origin,
    api_key: ApiKey | None,
    idempotency: IdempotentRequest | None,
) -> CheckoutPlan:
    """Step 1 of a checkout (a short transaction): the checks, the velocity counts, and the
    donation's id (derived from the Idempotency-Key, so a retry names the same PaymentIntent).
    Nothing is recorded as a donation yet: see :func:`record_checkout`."""
    _check_amount(request.amount, request.currency, maximum=settings.donation_max_amount)
    if api_key is not None:
        check_key_may_checkout(api_key, organisation_id=request.organisation_id)
    await _enforce_velocity(
        session, request=request, settings=settings, origin=origin, api_key=api_key
    )
    organisation = await _accepting_organisation(
        session, organisation_id=request.organisation_id, gateway=gateway
    )
    if request.fund_id is not None:
        await require_open_fund(session, organisation_id=organisation.id, fund_id=request.fund_id)
    donation_id = derived_id("don", seed=idempotency.seed) if idempotency else generate_id("don")
    await _refuse_reused_id(session, donation_id=donation_id)
    assert organisation.stripe_account_id is not None
    return CheckoutPlan(
        donation_id=donation_id,
        stripe_account_id=organisation.stripe_account_id,
        request=request,
    )


async def create_checkout_payment(plan: CheckoutPlan, *, gateway: PaymentGateway) -> CreatedPayment:
    """Step 2, with no transaction open: the PaymentIntent, a direct charge on the
    organisation's own account with no platform fee, under Stripe's idempotency key
    ``donation:<id>``."""
    return await gateway.create_payment(
        account_id=plan.stripe_account_id,
        amount=plan.request.amount,
        currency=plan.request.currency,
        metadata=_payment_metadata(plan.donation_id, request=plan.request),
        idempotency_key=f"donation:{plan.donation_id}",
    )


async def record_checkout(
    session: AsyncSession, plan: CheckoutPlan, payment: CreatedPayment, *, gateway: PaymentGateway
) -> Checkout:
    """Step 3 (a short transaction): the pending donation, paid by ``payment``.

    The row is written only now, once its PaymentIntent exists: no event can overtake it,
    since the donor confirms the payment with the client secret this step returns. A
    request that dies between steps 2 and 3 leaves an unconfirmed PaymentIntent and no
    donation; its retry gets the same PaymentIntent from Stripe and records it here.
    """
    await _refuse_reused_id(session, donation_id=plan.donation_id)
    request = plan.request
    receipt_token = tokens.new_secret(RECEIPT_TOKEN_PREFIX)
    donation = Donation(
        id=plan.donation_id,
        organisation_id=request.organisation_id,
        fund_id=request.fund_id,
        amount=request.amount,
        currency=request.currency,
        status="pending",
        donor_name=request.donor_name,
        donor_email=request.donor_email,
        anonymous=request.anonymous,
        message=request.message,
        receipt_token_hash=tokens.digest(receipt_token),
        receipt_salt=secrets.token_hex(32),
        provider=gateway.provider,
        stripe_account_id=plan.stripe_account_id,
        payment_intent_id=payment.payment_intent_id,
    )
    session.add(donation)
    await session.flush()
    await session.refresh(donation)
    return Checkout(
        donation=donation,
        provider=gateway.provider,
        client_secret=payment.client_secret,
        publishable_key=gateway.publishable_key,
        receipt_token=receipt_token,
    )


def _check_amount(amount: int, currency: str, *, maximum: int) -> None:
    minimum = minimum_charge_amount(currency)
    if amount < minimum:
        raise InvalidInput(
            f"The smallest donation in {currency} is {Money(minimum, currency).format()} "
            f"({minimum} minor units).",
            code="amount_too_small",
            param="amount",
        )
    if amount > maximum:
        raise InvalidInput(
            f"The largest donation is {maximum} minor units.",
            code="amount_too_large",
            param="amount",
        )


def check_key_may_checkout(api_key: ApiKey, *, organisation_id: str) -> None:
    """An API key checks out only for its own organisation, and only if it may write."""
    if api_key.organisation_id != organisation_id:
        raise NotFound("No such organisation.", param="organisation_id")
    if api_key.read_only:
        raise PermissionDenied("This API key is read-only.", code="api_key_read_only")


async def _enforce_velocity(
    session: AsyncSession,
    *,
    request: CheckoutRequest,
    settings: Settings,
    origin: Origin,
    api_key: ApiKey | None,
) -> None:
    """Card-testing defence: checkouts per client address and per donor email per window.

    Integrators' servers (API keys) check out for many donors from one address, so only
    public checkouts count against the address limit.
    """
    limits: list[tuple[str, int]] = []
    if api_key is None and origin.client_address:
        limits.append(
            (f"checkout:address:{origin.client_address}", settings.checkout_max_per_address)
        )
    if request.donor_email:
        email = hashlib.sha256(request.donor_email.lower().encode()).hexdigest()
        limits.append((f"checkout:email:{email}", settings.checkout_max_per_email))
    for key, limit in limits:
        window = await rate_limits.hit(
            session, key=key, window_seconds=settings.checkout_window_seconds
        )
        if window.exceeds(limit):
            raise RateLimited(
                "Too many donation attempts; try again later.",
                retry_after=window.seconds_left,
                code="checkout_rate_limited",
            )


async def _accepting_organisation(
    session: AsyncSession, *, organisation_id: str, gateway: PaymentGateway
) -> Organisation:
    organisation = await organisations.require_organisation(
        session, organisation_id=organisation_id
    )
    if not connect.status_of(organisation, gateway=gateway).charges_enabled:
        raise OrganisationNotAccepting(
            "This organisation cannot accept donations yet: its Stripe account is not "
            "set up to take payments.",
            param="organisation_id",
        )
    return organisation


async def require_open_fund(session: AsyncSession, *, organisation_id: str, fund_id: str) -> None:
    fund = await funds.get_fund(session, organisation_id=organisation_id, fund_id=fund_id)
    if fund.status != "open":
        raise Conflict("This fund is closed to new donations.", code="fund_closed", param="fund_id")


async def _refuse_reused_id(session: AsyncSession, *, donation_id: str) -> None:
    # A derived id exists already only if its idempotency key expired and came back.
    if await session.get(Donation, donation_id) is not None:
        raise Conflict(
            "This Idempotency-Key was used for an earlier donation; use a new key.",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )


def _payment_metadata(donation_id: str, *, request: CheckoutRequest) -> dict[str, str]:
    """What the PaymentIntent carries: our ids, nothing about the donor. The request under the
    idempotency key ``donation:<id>`` must be the same whenever it is retried (from another
    network or browser too), or Stripe refuses the retry; Radar gets the donor's device
    signals from Stripe.js, which confirms the payment in the donor's browser."""
    metadata = {"donation_id": donation_id, "organisation_id": request.organisation_id}
    if request.fund_id:
        metadata["fund_id"] = request.fund_id
    return metadata


# --- Reading --------------------------------------------------------------------------------


async def get_for_receipt(
    session: AsyncSession, *, donation_id: str, receipt_token: str
) -> Donation:
    """The donation a receipt token belongs to; any mismatch is a plain 404."""
    donation = await session.get(Donation, donation_id)
    if donation is None or not hmac.compare_digest(
        donation.receipt_token_hash, tokens.digest(receipt_token)
    ):
        raise no_such_donation()
    return donation


async def get_for_organisation(
    session: AsyncSession, *, donation_id: str, organisation_id: str
) -> Donation:
    donation = await session.get(Donation, donation_id)
    if donation is None or donation.organisation_id != organisation_id:
        raise no_such_donation()
    return donation


async def organisation_of(session: AsyncSession, *, donation_id: str) -> str:
    """The organisation a donation was given to (404 when there is no such donation)."""
    organisation_id = await session.scalar(
        select(Donation.organisation_id).where(Donation.id == donation_id)
    )
    if organisation_id is None:
        raise no_such_donation()
    return organisation_id


def no_such_donation() -> NotFound:
    return NotFound("No such donation.", param="donation_id")


async def list_donations(
    session: AsyncSession,
    *,
    organisation_id: str,
    status: DonationStatus | None,
    fund_id: str | None,
    starting_after: str | None,
    limit: int,
) -> Page[Donation]:
    statement = select(Donation).where(Donation.organisation_id == organisation_id)
    if status is not None:
        statement = statement.where(Donation.status == status)
    if fund_id is not None:
        statement = statement.where(Donation.fund_id == fund_id)
    return await keyset_page(
        session,
        statement,
        key=[Donation.created_at, Donation.id],
        id_column=Donation.id,
        starting_after=starting_after,
        limit=limit,
        descending=True,
    )


async def refunds_of(
    session: AsyncSession, *, donations: Sequence[Donation]
) -> dict[str, list[DonationRefund]]:
    """The refunds asked for through Amply, per donation, oldest first."""
    result: dict[str, list[DonationRefund]] = {donation.id: [] for donation in donations}
    rows = await session.scalars(
        select(DonationRefund)
        .where(DonationRefund.donation_id.in_(list(result)))
        .order_by(DonationRefund.created_at, DonationRefund.id)
    )
    for refund in rows:
        result[refund.donation_id].append(refund)
    return result


async def received_entries(
    session: AsyncSession, *, donations: Sequence[Donation]
) -> dict[str, ledger.Entry]:
    """The ``donation_received`` entries of those donations that are on the ledger, by id."""
    ids = [d.received_entry_id for d in donations if d.received_entry_id is not None]
    return await ledger.get_entries(session, entry_ids=ids)


# --- Refunds asked for through Amply ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """A refund that passed its checks, with its id, before Stripe is asked."""

    refund_id: str
    donation_id: str
    stripe_account_id: str
    payment_intent_id: str
    amount: int
    reason: RefundReason
    note: str | None
    refunds_as_of: datetime | None  # the donation's, when the refund was asked for


async def prepare_refund(
    session: AsyncSession,
    *,
    donation_id: str,
    amount: int | None,
    reason: RefundReason,
    note: str | None,
    idempotency: IdempotentRequest,
) -> RefundPlan:
    """Step 1 of a refund (a short transaction): what may be refunded, under the donation's
    row lock for this step only, and the refund's id (derived from the Idempotency-Key, so
    a retry asks Stripe for the same refund)."""
    donation = await _locked(session, donation_id)
    if donation.status == "refunded":
        raise Conflict("This donation is refunded in full already.", code="donation_refunded")
    if donation.status != "completed":
        raise Conflict(
            f"Only completed donations can be refunded; this one is {donation.status}.",
            code="donation_not_completed",
        )
    refundable = await _refundable(session, donation)
    amount = refundable if amount is None else amount
    if refundable <= 0 or amount > refundable:
        raise InvalidInput(
            f"At most {max(refundable, 0)} minor units of this donation can be refunded.",
            code="refund_exceeds_remaining",
            param="amount",
        )
    refund_id = derived_id("rfd", seed=idempotency.seed)
    await _refuse_reused_refund_id(session, refund_id=refund_id)
    return RefundPlan(
        refund_id=refund_id,
        donation_id=donation.id,
        stripe_account_id=donation.stripe_account_id,
        payment_intent_id=donation.payment_intent_id,
        amount=amount,
        reason=reason,
        note=note,
        refunds_as_of=donation.refunds_as_of,
    )


async def _refuse_reused_refund_id(session: AsyncSession, *, refund_id: str) -> None:
    if await session.get(DonationRefund, refund_id) is not None:
        # Only when the key expired and came back: Stripe might still replay its refund.
        raise Conflict(
            "This Idempotency-Key was used for an earlier refund; use a new key.",
            code="idempotency_key_reused",
            param="Idempotency-Key",
        )


async def create_provider_refund(plan: RefundPlan, *, gateway: PaymentGateway) -> CreatedRefund:
    """Step 2, with no transaction open and no lock held: ask Stripe for the refund, under
    its idempotency key ``refund:<id>``. Stripe refuses more than is left on the charge, so
    two refunds that passed step 1 together cannot refund more than was given."""
    try:
        return await gateway.create_refund(
            account_id=plan.stripe_account_id,
            payment_intent_id=plan.payment_intent_id,
            amount=plan.amount,
            reason=plan.reason,
            metadata={"donation_id": plan.donation_id, "refund_id": plan.refund_id},
            idempotency_key=f"refund:{plan.refund_id}",
        )
    except PaymentRefused as error:
        if error.code != "charge_disputed":
            raise
        # Stripe refuses refunds while a dispute is open or lost (an inquiry can be refunded).
        raise Conflict(
            "This donation's payment is disputed; it cannot be refunded while the dispute is "
            "open or after it was lost.",
            code="donation_disputed",
        ) from error


async def record_refund(
    session: AsyncSession, plan: RefundPlan, created: CreatedRefund, *, actor: Actor
) -> DonationRefund:
    """Step 3 (a short transaction): the refund Stripe accepted, under the donation's lock.
    The ledger moves when Stripe confirms it (``charge.refunded``).

    That event may have overtaken this step: if a refund event was applied since step 1
    and the chain records at least this refund's amount that no refund row accounts for,
    the refund is marked as recorded, so it no longer counts against what is refundable.
    """
    donation = await _locked(session, plan.donation_id)
    await _refuse_reused_refund_id(session, refund_id=plan.refund_id)
    refund = DonationRefund(
        id=plan.refund_id,
        donation_id=donation.id,
        amount=plan.amount,
        reason=plan.reason,
        note=plan.note,
        status=_refund_status(created.status),
        provider_refund_id=created.refund_id,
        requested_by_user_id=actor.user_id,
        requested_by_api_key_id=actor.api_key_id,
    )
    session.add(refund)
    await session.flush()
    if donation.refunds_as_of != plan.refunds_as_of and refund.status in ("pending", "succeeded"):
        accounted = await session.scalar(
            select(func.coalesce(func.sum(DonationRefund.amount), 0)).where(
                DonationRefund.donation_id == donation.id,
                DonationRefund.recorded.is_(True),
                DonationRefund.reversed_entry_id.is_(None),
            )
        )
        if donation.amount_refunded - int(accounted or 0) >= refund.amount:
            refund.recorded = True
            await session.flush()
    await security_events.record_by(
        session,
        event_type=SecurityEventType.REFUND_REQUESTED,
        actor=actor,
        organisation_id=donation.organisation_id,
        details={"donation_id": donation.id, "refund_id": refund.id, "amount": refund.amount},
    )
    await session.refresh(refund)
    return refund


async def _refundable(session: AsyncSession, donation: Donation) -> int:
    """What may still be refunded: the gross, less what the ledger records as refunded
    (through Amply or Stripe's dashboard), less refunds Stripe accepted that the ledger does
    not cover yet, less disputed funds.
    """
    unrecorded = await session.scalar(
        select(func.coalesce(func.sum(DonationRefund.amount), 0)).where(
            DonationRefund.donation_id == donation.id,
            DonationRefund.status.in_(("pending", "succeeded")),
            DonationRefund.recorded.is_(False),
        )
    )
    committed = donation.amount_refunded + int(unrecorded or 0)
    return donation.amount - committed - donation.amount_disputed


def _refund_status(status: str | None) -> str:
    return status if status in ("pending", "succeeded", "failed", "canceled") else "pending"


async def update_refund_status(
    session: AsyncSession, *, provider_refund_id: str, status: str | None, as_of: datetime
) -> None:
    """Stripe's news of a refund asked for through Amply (``as_of``: when Stripe said it).

    A refund the ledger recorded that then fails (a closed card) returns the money to the
    organisation: it is reversed on the chain, once.
    """
    refund = await session.scalar(
        select(DonationRefund)
        .where(DonationRefund.provider_refund_id == provider_refund_id)
        .with_for_update()
    )
    if refund is None or refund.status == (new := _refund_status(status)):
        return
    refund.status = RefundStatus(new)
    refund.updated_at = func.now()
    if new in ("failed", "canceled") and refund.recorded and refund.reversed_entry_id is None:
        await _reverse(session, refund, as_of=as_of)
    await session.flush()


async def _reverse(session: AsyncSession, refund: DonationRefund, *, as_of: datetime) -> None:
    donation = await _locked(session, refund.donation_id)
    [entry] = await ledger.append_journal(
        session,
        legs=[
            Leg(
                chain_id=donation.organisation_id,
                entry_type=EntryType.DONATION_REFUND_REVERSED,
                amount=refund.amount,
                currency=donation.currency,
                metadata=_public(
                    donation,
                    payment_intent=donation.payment_intent_id,
                    refund=refund.provider_refund_id,
                    refunded_total=donation.amount_refunded - refund.amount,
                ),
            )
        ],
    )
    refund.reversed_entry_id = entry.id
    donation.amount_refunded -= refund.amount
    donation.status = DonationStatus.COMPLETED
    donation.refunds_as_of = max(as_of, donation.refunds_as_of or as_of)


# --- Effects of events ----------------------------------------------------------------------


async def find_by_payment_intent(
    session: AsyncSession, *, payment_intent_id: str
) -> Donation | None:
    """The donation paid by this PaymentIntent, locked for the rest of the transaction."""
    return await session.scalar(
        select(Donation)
        .where(Donation.payment_intent_id == payment_intent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _locked(session: AsyncSession, donation_id: str) -> Donation:
    """The donation, locked for the rest of the transaction and read afresh under the lock."""
    donation = await session.get(
        Donation, donation_id, with_for_update=True, populate_existing=True
    )
    assert donation is not None
    return donation


def _public(donation: Donation, **extra: JSONValue) -> dict[str, JSONValue]:
    """Public metadata of a donation's entries: never an email, address, card or message."""
    return {"donation_id": donation.id, "fund_id": donation.fund_id, **extra}


def commitment_of(donation: Donation) -> str | None:
    """The salted commitment to the donor's receipt that the public entry carries: the public
    learns nothing from it; the receipt opens it (docs/ledger-format.md §7)."""
    if donation.receipt_salt is None:
        return None
    return receipt_commitment(
        donation_id=donation.id, salt=donation.receipt_salt, secret=receipt_secret(donation)
    )


def receipt_secret(donation: Donation) -> str:
    """The receipt secret: the SHA-256 of the donor's receipt token, in hex. Revealing it
    proves the receipt without handing over the token, which still reads the donation."""
    return donation.receipt_token_hash.hex()


async def complete(
    session: AsyncSession, donation: Donation, *, charge_id: str | None, gateway: PaymentGateway
) -> bool:
    """Record the donation as received (once): +gross, and -Stripe's fee when known."""
    if donation.received_entry_id is not None:
        return False
    received = Leg(
        chain_id=donation.organisation_id,
        entry_type=EntryType.DONATION_RECEIVED,
        amount=donation.amount,
        currency=donation.currency,
        metadata=_public(
            donation,
            donor=donation.display_name,
            payment_intent=donation.payment_intent_id,
            charge=charge_id,
            platform_fee=0,
            receipt_commitment=commitment_of(donation),
        ),
    )
    legs = [received]
    fee_leg = await _fee_leg(donation, charge_id=charge_id, gateway=gateway)
    if fee_leg is not None:
        legs.append(fee_leg)
    entries = await ledger.append_journal(session, legs=legs)
    donation.received_entry_id = next(e.id for e in entries if e.type == "donation_received")
    donation.processing_fee_entry_id = next(
        (e.id for e in entries if e.type == "payment_processing_fee"), None
    )
    donation.status = DonationStatus.COMPLETED
    donation.completed_at = func.now()
    donation.charge_id = charge_id
    donation.failure_code = donation.failure_message = None
    await session.flush()
    return True


async def _fee_leg(
    donation: Donation, *, charge_id: str | None, gateway: PaymentGateway
) -> Leg | None:
    if charge_id is None or donation.processing_fee is not None:
        return None
    fee = await gateway.processing_fee(
        account_id=donation.stripe_account_id,
        charge_id=charge_id,
        amount=donation.amount,
        currency=donation.currency,
    )
    if fee is None:
        return None
    donation.processing_fee, donation.processing_fee_currency = fee.fee, fee.currency
    if fee.fee == 0:
        return None
    # In the currency Stripe charged it, which is the account's settlement currency: a
    # donation in USD to an account that settles in EUR pays its fee in EUR.
    return Leg(
        chain_id=donation.organisation_id,
        entry_type=EntryType.PAYMENT_PROCESSING_FEE,
        amount=-fee.fee,
        currency=fee.currency,
        metadata=_public(
            donation, charge=charge_id, balance_transaction=fee.balance_transaction_id
        ),
    )


async def record_fee(
    session: AsyncSession, donation: Donation, *, charge_id: str, gateway: PaymentGateway
) -> bool:
    """Record Stripe's fee of a completed donation, if Stripe reported none before."""
    if donation.received_entry_id is None or donation.processing_fee is not None:
        return False
    leg = await _fee_leg(donation, charge_id=charge_id, gateway=gateway)
    if leg is not None:
        [entry] = await ledger.append_journal(session, legs=[leg])
        donation.processing_fee_entry_id = entry.id
    await session.flush()
    return leg is not None


async def mark_failed(
    session: AsyncSession, donation: Donation, *, code: str | None, message: str | None
) -> bool:
    if donation.status != "pending":
        return False
    donation.status = DonationStatus.FAILED
    donation.failure_code = (code or "payment_failed")[:100]
    donation.failure_message = (message or "The payment failed.")[:500]
    await session.flush()
    return True


async def record_refunded_total(
    session: AsyncSession,
    donation: Donation,
    *,
    amount_refunded: int,
    charge_id: str,
    refund_ids: Sequence[str] | None,
    as_of: datetime,
) -> bool:
    """Stripe said at ``as_of`` that ``amount_refunded`` of the charge is refunded in all, by
    the refunds ``refund_ids`` (when the event lists them): append what the ledger has not
    recorded yet. A stale total (an older event arriving late) adds nothing.
    """
    if donation.refunds_as_of is not None and as_of < donation.refunds_as_of:
        return False
    donation.refunds_as_of = as_of
    delta = min(amount_refunded, donation.amount) - donation.amount_refunded
    await _mark_recorded(session, donation, refund_ids=refund_ids, delta=max(delta, 0))
    if delta <= 0:
        return False
    [entry] = await ledger.append_journal(
        session,
        legs=[
            Leg(
                chain_id=donation.organisation_id,
                entry_type=EntryType.DONATION_REFUNDED,
                amount=-delta,
                currency=donation.currency,
                metadata=_public(
                    donation,
                    payment_intent=donation.payment_intent_id,
                    charge=charge_id,
                    refunded_total=donation.amount_refunded + delta,
                ),
            )
        ],
    )
    donation.amount_refunded += delta
    donation.refunded_entry_id = entry.id
    if donation.amount_refunded == donation.amount:
        donation.status = DonationStatus.REFUNDED
    await session.flush()
    return True


async def _mark_recorded(
    session: AsyncSession, donation: Donation, *, refund_ids: Sequence[str] | None, delta: int
) -> None:
    """Mark the refunds asked for through Amply that the ledger now covers: those Stripe
    listed, or (when it listed none) the oldest ones that fit in what was just recorded.
    """
    rows = await session.scalars(
        select(DonationRefund)
        .where(DonationRefund.donation_id == donation.id, DonationRefund.recorded.is_(False))
        .order_by(DonationRefund.created_at, DonationRefund.id)
        .with_for_update()
    )
    for refund in rows:
        if refund_ids is not None:
            covered = refund.provider_refund_id in refund_ids and refund.status in (
                "pending",
                "succeeded",
            )
        else:
            covered = refund.status in ("pending", "succeeded") and refund.amount <= delta
            delta -= refund.amount if covered else 0
        if covered:
            refund.recorded = True
            refund.updated_at = func.now()


async def record_dispute(
    session: AsyncSession,
    donation: Donation,
    *,
    dispute: DisputeState,
) -> bool:
    """Record a dispute's balance transactions on the organisation's chain, each exactly once.

    Every dispute event lists all the balance transactions Stripe has made for the dispute so
    far (``dispute.moves``), so each is appended once, keyed by its id, whatever order the events
    arrive in: its amount as ``dispute_funds_withdrawn`` (< 0) or ``dispute_funds_reinstated``
    (> 0), its fee as ``dispute_fee`` (-fee) or ``dispute_fee_refunded`` (a fee Stripe
    returned), in one journal. Inquiries have no balance transactions and append nothing.
    The dispute's row keeps its status and reason for display. ``amount_disputed`` is what
    the disputes hold of the donation net of reinstatements, in the donation's currency.
    """
    row = await _dispute_row(session, donation, dispute=dispute)
    moved = False
    for move in sorted(dispute.moves, key=lambda move: move.amount):
        if move.amount == 0 and move.fee == 0:
            continue
        if await session.get(ChargeBalanceTransaction, move.id) is not None:
            continue
        await _record_dispute_move(session, donation, row, move=move, dispute=dispute)
        moved = True
    await session.flush()
    return moved


async def _record_dispute_move(
    session: AsyncSession,
    donation: Donation,
    row: DonationDispute,
    *,
    move: BalanceMove,
    dispute: DisputeState,
) -> None:
    # The dispute's reason ("fraudulent") stays private: it would be about a named donor.
    metadata = _public(
        donation,
        dispute=row.id,
        charge=dispute.charge_id or donation.charge_id,
        balance_transaction=move.id,
    )
    legs: list[Leg] = []
    if move.amount != 0:
        legs.append(
            Leg(
                chain_id=donation.organisation_id,
                entry_type=(
                    EntryType.DISPUTE_FUNDS_WITHDRAWN
                    if move.amount < 0
                    else EntryType.DISPUTE_FUNDS_REINSTATED
                ),
                amount=move.amount,
                currency=move.currency,
                metadata=metadata,
            )
        )
    if move.fee != 0:
        legs.append(
            Leg(
                chain_id=donation.organisation_id,
                entry_type=EntryType.DISPUTE_FEE
                if move.fee > 0
                else EntryType.DISPUTE_FEE_REFUNDED,
                amount=-move.fee,
                currency=move.currency,
                metadata=metadata,
            )
        )
    entries = await ledger.append_journal(session, legs=legs)
    by_type = {entry.type: entry for entry in entries}
    chain_entry = by_type.get("dispute_funds_withdrawn") or by_type.get("dispute_funds_reinstated")
    fee_entry = by_type.get("dispute_fee") or by_type.get("dispute_fee_refunded")
    session.add(
        ChargeBalanceTransaction(
            id=move.id,
            kind="donation_dispute",
            dispute_id=row.id,
            donation_id=donation.id,
            chain_id=donation.organisation_id,
            currency=move.currency,
            amount=move.amount,
            fee=move.fee,
            chain_amount=move.amount,
            loss_amount=0,
            journal_id=entries[0].journal_id,
            chain_entry_id=chain_entry.id if chain_entry else None,
            fee_entry_id=fee_entry.id if fee_entry else None,
        )
    )
    if move.currency == donation.currency:
        donation.amount_disputed = max(0, donation.amount_disputed - move.amount)
    await session.flush()


async def _dispute_row(
    session: AsyncSession, donation: Donation, *, dispute: DisputeState
) -> DonationDispute:
    row = await session.get(DonationDispute, dispute.id, with_for_update=True)
    if row is None:
        row = DonationDispute(
            id=dispute.id,
            donation_id=donation.id,
            amount=dispute.amount,
            currency=donation.currency,
            status=(dispute.status or "unknown")[:40],
            reason=dispute.reason[:60] if dispute.reason else None,
        )
        session.add(row)
        await session.flush()
    else:
        row.status = (dispute.status or row.status)[:40]
        row.updated_at = func.now()
    return row
