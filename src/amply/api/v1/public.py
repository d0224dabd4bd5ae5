"""The public API: anyone may read organisations, their totals and their ledgers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask

from amply.api.errors import error_responses
from amply.api.v1.funds import fund_out
from amply.deps import DatabaseDep, GatewayDep, SessionDep
from amply.models import Organisation
from amply.schemas.common import Limit, ListResponse, StartingAfter
from amply.schemas.public import (
    ChainHeadOut,
    LedgerPageOut,
    PublicEntryOut,
    PublicFundOut,
    PublicOrganisationDetail,
    PublicOrganisationOut,
    TotalsOut,
    VerificationOut,
)
from amply.services import connect, exports, funds, ledger, organisations, transparency
from amply.services.ledger import ChainHead, EntryType
from amply.services.payments import PaymentGateway
from amply.services.transparency import Totals

router = APIRouter(prefix="/public", tags=["public"])

OrganisationId = Annotated[
    str,
    Path(pattern=r"^org_[0-9A-Za-z]{24}$", description="The organisation's id (`org_…`)."),
]
# Pages and profiles change as donations arrive: shared caches may keep them briefly.
LIST_CACHE: Final = "public, max-age=30, stale-while-revalidate=60"
VERIFY_CACHE: Final = "public, max-age=60"
ERRORS = error_responses(404, 422)


def _totals_out(totals: list[Totals]) -> list[TotalsOut]:
    return [
        TotalsOut(
            currency=t.currency,
            received=t.received,
            refunded=t.refunded,
            processing_fees=t.processing_fees,
            platform_fee=0,
            disputed=t.disputed,
            dispute_fees=t.dispute_fees,
            net=t.net,
            donations=t.donations,
        )
        for t in totals
    ]


def _organisation_out(
    organisation: Organisation,
    *,
    totals: list[Totals],
    head: ChainHead,
    gateway: PaymentGateway,
) -> PublicOrganisationOut:
    return PublicOrganisationOut(
        id=organisation.id,
        name=organisation.name,
        slug=organisation.slug,
        description=organisation.description,
        website=organisation.website,
        country=organisation.country,
        accepts_donations=connect.status_of(organisation, gateway=gateway).charges_enabled,
        totals=_totals_out(totals),
        head=ChainHeadOut(chain_id=organisation.id, seq=head.seq, entry_hash=head.entry_hash),
    )


@router.get(
    "/organisations",
    summary="Organisations, by name, with their totals and chain heads",
    responses=error_responses(422),
)
async def list_organisations(
    response: Response,
    session: SessionDep,
    gateway: GatewayDep,
    search: Annotated[
        str | None, Query(max_length=100, description="Part of the name or slug.")
    ] = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> ListResponse[PublicOrganisationOut]:
    page = await transparency.list_organisations(
        session, search=search, starting_after=starting_after, limit=limit
    )
    ids = [organisation.id for organisation in page.items]
    totals = await transparency.totals_by_chain(session, chain_ids=ids)
    heads = await ledger.get_heads(session, chain_ids=ids)
    response.headers["Cache-Control"] = LIST_CACHE
    return ListResponse(
        data=[
            _organisation_out(o, totals=totals[o.id], head=heads[o.id], gateway=gateway)
            for o in page.items
        ],
        has_more=page.has_more,
    )


async def _fund_views(session: AsyncSession, organisation_id: str) -> list[PublicFundOut]:
    page = await funds.list_funds(
        session, organisation_id=organisation_id, starting_after=None, limit=100
    )
    fund_totals = await funds.totals(session, fund_ids=[fund.id for fund in page.items])
    return [
        PublicFundOut.model_validate(
            fund_out(fund, fund_totals[fund.id]).model_dump(), from_attributes=False
        )
        for fund in page.items
    ]


@router.get(
    "/organisations/{organisation_id}",
    summary="An organisation: profile, funds, and totals per currency",
    responses=ERRORS,
)
async def get_organisation(
    organisation_id: OrganisationId, response: Response, session: SessionDep, gateway: GatewayDep
) -> PublicOrganisationDetail:
    organisation = await organisations.require_organisation(
        session, organisation_id=organisation_id
    )
    totals = await transparency.totals_by_chain(session, chain_ids=[organisation.id])
    heads = await ledger.get_heads(session, chain_ids=[organisation.id])
    summary = _organisation_out(
        organisation, totals=totals[organisation.id], head=heads[organisation.id], gateway=gateway
    )
    response.headers["Cache-Control"] = LIST_CACHE
    return PublicOrganisationDetail(
        **summary.model_dump(), funds=await _fund_views(session, organisation.id)
    )


@router.get(
    "/organisations/{organisation_id}/ledger",
    summary="The organisation's ledger entries, in chain order",
    description="Entries exactly as exported (docs/ledger-format.md §4), so each page can be "
    "checked with the same code as an export. Page with `after_seq`.",
    responses=ERRORS,
)
async def get_ledger(
    organisation_id: OrganisationId,
    response: Response,
    session: SessionDep,
    after_seq: Annotated[int, Query(ge=0, le=2**62, description="Entries after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many entries.")] = 100,
    entry_type: Annotated[
        list[EntryType] | None, Query(alias="type", description="Only these entry types.")
    ] = None,
    created_gte: Annotated[
        datetime | None, Query(description="Only entries created at or after this time.")
    ] = None,
    created_lt: Annotated[
        datetime | None, Query(description="Only entries created before this time.")
    ] = None,
) -> LedgerPageOut:
    await organisations.require_organisation(session, organisation_id=organisation_id)
    page = await ledger.list_entries(
        session,
        chain_id=organisation_id,
        after_seq=after_seq,
        limit=limit,
        types=entry_type,
        created_gte=_aware(created_gte),
        created_lt=_aware(created_lt),
    )
    response.headers["Cache-Control"] = LIST_CACHE
    return LedgerPageOut(
        data=[PublicEntryOut(**entry.as_export()) for entry in page.entries],
        has_more=page.has_more,
        next_after_seq=page.entries[-1].seq if page.has_more else None,
    )


def _aware(moment: datetime | None) -> datetime | None:
    """Times without a zone are read as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


@router.get(
    "/organisations/{organisation_id}/ledger/verify",
    summary="The server's own verification of the organisation's chain",
    description="Recomputes every hash, link, sequence number and balance. Auditors should "
    "verify an export themselves (`amply verify`); this is the server's word.",
    responses=ERRORS,
)
async def verify_ledger(
    organisation_id: OrganisationId, response: Response, session: SessionDep
) -> VerificationOut:
    await organisations.require_organisation(session, organisation_id=organisation_id)
    result = await ledger.verify_chain(session, chain_id=organisation_id)
    response.headers["Cache-Control"] = VERIFY_CACHE
    return VerificationOut(
        **result.as_dict(), verdict=result.verdict(), checked_at=datetime.now(UTC)
    )


@router.get(
    "/organisations/{organisation_id}/ledger/export",
    summary="The whole chain as a JSON download (docs/ledger-format.md §4), streamed",
    description="One consistent snapshot, however long the chain and whatever is appended "
    "meanwhile. Verify it offline with `amply verify FILE`. `ETag` names the head it ends "
    "at; send it back as `If-None-Match` to learn (304) that nothing was appended.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/json": {}}, "description": "The export."},
        304: {"description": "The chain has not grown since the export with this ETag."},
        **ERRORS,
    },
)
async def export_ledger(
    organisation_id: OrganisationId, request: Request, database: DatabaseDep
) -> Response:
    export = await exports.open_export(database, chain_id=organisation_id)
    headers = {
        "ETag": export.etag,
        "Cache-Control": LIST_CACHE,
        "Content-Disposition": f'attachment; filename="{organisation_id}.ledger.json"',
    }
    if export.etag in request.headers.get("if-none-match", ""):
        await export.close()
        return Response(status_code=304, headers=headers)
    # The body closes the snapshot when it ends; the background task, if it never starts.
    return StreamingResponse(
        export.body(),
        media_type="application/json",
        headers=headers,
        background=BackgroundTask(export.close),
    )
