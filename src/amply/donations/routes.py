"""Donations: public checkout, status for donors and organisations, refunds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth.dependencies import Caller, CallerDep, OptionalApiKey, OriginDep, require_caller
from amply.donations import receipts
from amply.donations import service as donations
from amply.donations.schemas import (
    CheckoutOut,
    DonationCreate,
    DonationOut,
    DonationStatus,
    LedgerEntryRef,
    PaymentOut,
    ReceiptCheckpointOut,
    ReceiptCommitmentOut,
    ReceiptDonationOut,
    ReceiptEntryOut,
    ReceiptOut,
    RefundCreate,
    RefundOut,
)
from amply.donations.service import CheckoutRequest
from amply.kit.dependencies import (
    IdempotencyKeyHeader,
    RequiredIdempotencyKey,
    SessionDep,
    SettingsDep,
)
from amply.kit.error_responses import IDEMPOTENCY_ERRORS, PROVIDER_ERRORS, error_responses
from amply.kit.errors import ErrorCode, NotFound
from amply.kit.idempotency import IdempotentRequest
from amply.kit.idempotent_requests import IdempotencyDep
from amply.kit.schemas import Limit, ListResponse, StartingAfter
from amply.ledger import service as ledger
from amply.ledger.dependencies import SignerDep
from amply.models import Donation, DonationRefund
from amply.models.enums import MemberRole
from amply.organisations.access_responses import ORG_ADMIN_ERRORS
from amply.organisations.dependencies import (
    KeyScope,
    OrgAccess,
    OrgMemberOrApiKey,
    authorize_organisation,
)
from amply.organisations.service import Role
from amply.payments.dependencies import GatewayDep
from amply.payments.gateway import CreatedPayment, CreatedRefund

router = APIRouter(tags=["donations"])

DonationId = Annotated[str, Path(max_length=64, description="The donation's id (`don_…`).")]
ReceiptToken = Annotated[
    str | None,
    Header(
        alias="X-Receipt-Token",
        max_length=100,
        description="The receipt token from checkout: lets the donor read their donation.",
    ),
]
Viewer = Annotated[OrgAccess, OrgMemberOrApiKey("viewer", "read")]


async def _donation_admin(
    donation_id: DonationId, caller: CallerDep, session: SessionDep
) -> OrgAccess:
    """An admin (or write key) of the organisation the donation was given to."""
    return await _donation_access(
        session, caller, donation_id=donation_id, role=MemberRole.ADMIN, scope="write"
    )


async def _donation_access(
    session: AsyncSession,
    caller: Caller | None,
    *,
    donation_id: str,
    role: Role,
    scope: KeyScope,
) -> OrgAccess:
    caller = require_caller(caller)  # 401 before the donation is looked up
    organisation_id = await donations.organisation_of(session, donation_id=donation_id)
    try:
        return await authorize_organisation(
            session, caller, organisation_id=organisation_id, role=role, scope=scope
        )
    except NotFound as error:
        # Another organisation's donation is as missing as one that never existed.
        raise NotFound("No such donation.", param="donation_id") from error


DonationAdmin = Annotated[OrgAccess, Depends(_donation_admin)]


async def donation_views(
    session: AsyncSession, items: Sequence[Donation], *, organisation_view: bool
) -> list[DonationOut]:
    """Donations as their donor (or, with ``organisation_view``, their organisation) sees them."""
    entries = await donations.received_entries(session, donations=items)
    refunds = await donations.refunds_of(session, donations=items) if organisation_view else {}
    return [
        _donation_out(
            donation,
            entry=entries.get(donation.received_entry_id or ""),
            refunds=refunds.get(donation.id) if organisation_view else None,
        )
        for donation in items
    ]


async def donation_out(
    session: AsyncSession, donation: Donation, *, organisation_view: bool
) -> DonationOut:
    [out] = await donation_views(session, [donation], organisation_view=organisation_view)
    return out


def _donation_out(
    donation: Donation, *, entry: ledger.Entry | None, refunds: list[DonationRefund] | None
) -> DonationOut:
    out = DonationOut(
        id=donation.id,
        organisation_id=donation.organisation_id,
        fund_id=donation.fund_id,
        amount=donation.amount,
        currency=donation.currency,
        status=donation.status,
        donor_name=donation.donor_name,
        anonymous=donation.anonymous,
        public_name=donation.display_name,
        message=donation.message,
        amount_refunded=donation.amount_refunded,
        created_at=donation.created_at,
        completed_at=donation.completed_at,
        ledger_entry=LedgerEntryRef(
            chain_id=entry.chain_id, seq=entry.seq, entry_id=entry.id, entry_hash=entry.entry_hash
        )
        if entry
        else None,
    )
    if refunds is None:
        return out
    return out.model_copy(
        update={
            "donor_email": donation.donor_email,
            "payment_intent_id": donation.payment_intent_id,
            "processing_fee": donation.processing_fee,
            "processing_fee_currency": donation.processing_fee_currency,
            "amount_disputed": donation.amount_disputed,
            "failure_code": donation.failure_code,
            "failure_message": donation.failure_message,
            "refunds": [refund_out(refund) for refund in refunds],
        }
    )


def refund_out(refund: DonationRefund) -> RefundOut:
    return RefundOut.model_validate(refund, from_attributes=True)


@router.post(
    "/donations",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckoutOut,
    summary="Start a donation: a PaymentIntent on the organisation's own Stripe account",
    description="Public, or with the organisation's API key. Returns what Stripe.js needs "
    "to confirm the payment, and a receipt token. The donation completes when Stripe "
    "reports the payment succeeded (in sandbox mode: `POST /v1/sandbox/payments/{id}/succeed`).",
    responses=error_responses(
        400,
        403,
        404,
        422,
        429,
        *IDEMPOTENCY_ERRORS,
        *PROVIDER_ERRORS,
        ErrorCode.API_KEY_READ_ONLY,
        ErrorCode.ORGANISATION_NOT_ACCEPTING_DONATIONS,
        ErrorCode.FUND_CLOSED,
        ErrorCode.AMOUNT_TOO_SMALL,
        ErrorCode.AMOUNT_TOO_LARGE,
        ErrorCode.CHECKOUT_RATE_LIMITED,
        401,
    ),
)
async def create_donation(
    body: DonationCreate,
    settings: SettingsDep,
    gateway: GatewayDep,
    origin: OriginDep,
    api_key: OptionalApiKey,
    idempotency: IdempotencyDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    scope = f"organisation:{api_key.organisation_id}" if api_key else "public"
    if api_key is not None:
        # Before any replay: a read-only key must not read back a stored checkout.
        donations.check_key_may_checkout(api_key, organisation_id=body.organisation_id)

    async def prepare(
        session: AsyncSession, idempotent: IdempotentRequest | None
    ) -> donations.CheckoutPlan:
        return await donations.prepare_checkout(
            session,
            request=CheckoutRequest(**body.model_dump()),
            gateway=gateway,
            settings=settings,
            origin=origin,
            api_key=api_key,
            idempotency=idempotent,
        )

    async def pay(plan: donations.CheckoutPlan) -> CreatedPayment:
        return await donations.create_checkout_payment(plan, gateway=gateway)

    async def record(
        session: AsyncSession, plan: donations.CheckoutPlan, payment: CreatedPayment
    ) -> CheckoutOut:
        result = await donations.record_checkout(session, plan, payment, gateway=gateway)
        return CheckoutOut(
            donation=await donation_out(session, result.donation, organisation_view=False),
            payment=PaymentOut(
                provider=result.provider,
                payment_intent_id=result.donation.payment_intent_id,
                client_secret=result.client_secret,
                publishable_key=result.publishable_key,
                stripe_account=result.donation.stripe_account_id,
            ),
            receipt_token=result.receipt_token,
        )

    return await idempotency.respond_in_steps(
        key=idempotency_key,
        scope=scope,
        body=body,
        status_code=201,
        prepare=prepare,
        call=pay,
        record=record,
    )


@router.get(
    "/donations/{donation_id}",
    summary="A donation's status, for its donor (receipt token) or its organisation",
    responses=error_responses(401, 403, 404),
)
async def get_donation(
    donation_id: DonationId,
    session: SessionDep,
    caller: CallerDep,
    receipt_token: ReceiptToken = None,
) -> DonationOut:
    if receipt_token is not None:
        donation = await donations.get_for_receipt(
            session, donation_id=donation_id, receipt_token=receipt_token
        )
        return await donation_out(session, donation, organisation_view=False)
    access = await _donation_access(
        session, caller, donation_id=donation_id, role=MemberRole.VIEWER, scope="read"
    )
    donation = await donations.get_for_organisation(
        session, donation_id=donation_id, organisation_id=access.organisation.id
    )
    return await donation_out(session, donation, organisation_view=True)


@router.get(
    "/donations/{donation_id}/receipt",
    summary="The donor's receipt: proof that a public ledger entry is their donation",
    description="For the holder of the receipt token. The donation's public entry carries a "
    "salted commitment instead of the donor's identity; this receipt opens it, and carries a "
    "signed checkpoint covering the entry. Check it against an export of the organisation's "
    "ledger with `amply verify-receipt RECEIPT EXPORT` (docs/ledger-format.md §7).",
    responses=error_responses(
        401,
        404,
        422,
        ErrorCode.DONATION_NOT_COMPLETED,
        503,
        ErrorCode.LEDGER_INTEGRITY_FAILURE,
        ErrorCode.SIGNING_KEY_NOT_INSTALLED,
    ),
)
async def get_receipt(
    donation_id: DonationId,
    response: Response,
    session: SessionDep,
    signer: SignerDep,
    caller: CallerDep,
    receipt_token: ReceiptToken = None,
) -> ReceiptOut:
    if receipt_token is None:
        # Only the donor holds a receipt: an organisation's members and keys see none.
        require_caller(caller)
        raise donations.no_such_donation()
    receipt = await receipts.get_receipt(
        session, donation_id=donation_id, receipt_token=receipt_token, signer=signer
    )
    response.headers["Cache-Control"] = "no-store"  # it opens the donor's commitment
    return ReceiptOut(
        donation=ReceiptDonationOut.model_validate(receipt.donation, from_attributes=True),
        entry=ReceiptEntryOut.model_validate(receipt.entry, from_attributes=True),
        commitment=ReceiptCommitmentOut(
            salt=receipt.salt, secret=receipt.secret, value=receipt.commitment
        ),
        checkpoint=ReceiptCheckpointOut(
            note=receipt.checkpoint.note, key=receipt.checkpoint.verifier_key
        ),
    )


@router.post(
    "/donations/{donation_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    response_model=RefundOut,
    summary="Refund a donation in full or in part (organisation admins, or a write API key)",
    description="Asks Stripe for the refund. The ledger records it when Stripe confirms "
    "(`charge.refunded`). Requires an `Idempotency-Key`.",
    responses=error_responses(
        400,
        401,
        403,
        404,
        422,
        *IDEMPOTENCY_ERRORS,
        *PROVIDER_ERRORS,
        *ORG_ADMIN_ERRORS,
        ErrorCode.API_KEY_READ_ONLY,
        ErrorCode.DONATION_REFUNDED,
        ErrorCode.DONATION_NOT_COMPLETED,
        ErrorCode.DONATION_DISPUTED,
        ErrorCode.REFUND_EXCEEDS_REMAINING,
        ErrorCode.SANDBOX_PAYMENT,
    ),
)
async def refund_donation(
    donation_id: DonationId,
    body: RefundCreate,
    access: DonationAdmin,
    gateway: GatewayDep,
    idempotency: IdempotencyDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    organisation_id = access.organisation.id

    async def prepare(
        session: AsyncSession, idempotent: IdempotentRequest | None
    ) -> donations.RefundPlan:
        assert idempotent is not None  # the key is required
        donation = await donations.get_for_organisation(
            session, donation_id=donation_id, organisation_id=organisation_id
        )
        return await donations.prepare_refund(
            session,
            donation_id=donation.id,
            amount=body.amount,
            reason=body.reason,
            note=body.note,
            idempotency=idempotent,
        )

    async def ask_stripe(plan: donations.RefundPlan) -> CreatedRefund:
        return await donations.create_provider_refund(plan, gateway=gateway)

    async def record(
        session: AsyncSession, plan: donations.RefundPlan, created: CreatedRefund
    ) -> RefundOut:
        return refund_out(await donations.record_refund(session, plan, created, actor=access.actor))

    return await idempotency.respond_in_steps(
        key=idempotency_key,
        scope=f"organisation:{organisation_id}",
        body=body,
        status_code=201,
        prepare=prepare,
        call=ask_stripe,
        record=record,
    )


@router.get(
    "/organisations/{organisation_id}/donations",
    summary="The organisation's donations, newest first",
    responses=error_responses(401, 403, 404, 422),
)
async def list_donations(
    access: Viewer,
    session: SessionDep,
    status: Annotated[DonationStatus | None, Query(description="Only this status.")] = None,
    fund_id: Annotated[str | None, Query(max_length=64, description="Only this fund.")] = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[DonationOut]:
    page = await donations.list_donations(
        session,
        organisation_id=access.organisation.id,
        status=status,
        fund_id=fund_id,
        starting_after=starting_after,
        limit=limit,
    )
    return ListResponse(
        data=await donation_views(session, page.items, organisation_view=True),
        has_more=page.has_more,
    )
