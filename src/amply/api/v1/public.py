"""The public API: anyone may read organisations, their totals and their ledgers."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask

from amply.api.errors import error_responses
from amply.api.page_cache import keep_page
from amply.api.v1.funds import fund_out
from amply.deps import (
    DatabaseDep,
    GatewayDep,
    ReadDatabaseDep,
    ReadSessionDep,
    SessionDep,
    SignerDep,
    VerdictsDep,
)
from amply.errors import NotFound
from amply.lib.verify import VerifierKey
from amply.models import CheckpointKey, LedgerCheckpoint, Organisation
from amply.models.ledger import KeyStatus
from amply.schemas.common import Limit, ListResponse, StartingAfter, as_utc
from amply.schemas.public import (
    ChainHeadOut,
    CheckpointOut,
    LedgerPageOut,
    PublicEntryOut,
    PublicFundOut,
    PublicOrganisationDetail,
    PublicOrganisationOut,
    SigningKeyOut,
    SigningKeysOut,
    TotalsOut,
    VerificationOut,
)
from amply.services import (
    checkpoints,
    connect,
    exports,
    funds,
    ledger,
    organisations,
    transparency,
)
from amply.services.ledger import ChainHead, EntryType
from amply.services.payments import PaymentGateway
from amply.services.transparency import LedgerPage, Totals

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
    session: ReadSessionDep,
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
    organisation_id: OrganisationId,
    response: Response,
    session: ReadSessionDep,
    gateway: GatewayDep,
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
    "checked with the same code as an export. Page with `after_seq`. A page that ends before "
    "the chain's head, unfiltered, never changes: it carries a strong `ETag` (send it back as "
    "`If-None-Match`: 304) and `Cache-Control: public, max-age=86400, immutable`.",
    response_model=LedgerPageOut,
    responses={304: {"description": "The caller holds this page already."}, **ERRORS},
)
async def get_ledger(
    organisation_id: OrganisationId,
    request: Request,
    session: ReadSessionDep,
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
) -> Response:
    # A page kept by keep_page() is answered before routing (amply.api.page_cache).
    page = await transparency.ledger_page(
        session,
        organisation_id=organisation_id,
        after_seq=after_seq,
        limit=limit,
        types=entry_type,
        created_gte=as_utc(created_gte),
        created_lt=as_utc(created_lt),
    )
    if not page.rows:  # an empty page, or no such organisation
        await organisations.require_organisation(session, organisation_id=organisation_id)
    body = _ledger_page_body(page)
    unfiltered = entry_type is None and created_gte is None and created_lt is None
    if unfiltered and page.has_more:  # it ends before the head: it never changes
        return keep_page(request, body)
    return Response(body, media_type="application/json", headers={"Cache-Control": LIST_CACHE})


def _ledger_page_body(page: LedgerPage) -> bytes:
    out = LedgerPageOut(
        data=[PublicEntryOut(**row) for row in page.rows],
        has_more=page.has_more,
        next_after_seq=page.rows[-1]["seq"] if page.has_more else None,
    )
    return out.model_dump_json().encode()


@router.get(
    "/organisations/{organisation_id}/ledger/verify",
    summary="The server's own verification of the organisation's chain",
    description="Recomputes every hash, link, sequence number and balance up to the head it "
    "names. A verdict is served again for `verify_cache_seconds` (10 by default; "
    "`checked_at` says when it was computed). Auditors should verify an export themselves "
    "(`amply verify`); this is the server's word.",
    responses=ERRORS,
)
async def verify_ledger(
    organisation_id: OrganisationId,
    response: Response,
    session: ReadSessionDep,
    verdicts: VerdictsDep,
) -> VerificationOut:
    await organisations.require_organisation(session, organisation_id=organisation_id)
    verdict = await verdicts.verdict(session, chain_id=organisation_id)
    response.headers["Cache-Control"] = VERIFY_CACHE
    return VerificationOut(
        **verdict.result.as_dict(), verdict=verdict.result.verdict(), checked_at=verdict.checked_at
    )


@router.get(
    "/organisations/{organisation_id}/ledger/export",
    summary="The whole chain as a JSON download (docs/ledger-format.md §4), streamed",
    description="One consistent snapshot, however long the chain and whatever is appended "
    "meanwhile, up to a signed checkpoint of its head, which it embeds. Verify it offline "
    "with `amply verify FILE --key KEY`. `ETag` names the head it ends at; send it back as "
    "`If-None-Match` to learn (304) that nothing was appended.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/json": {}}, "description": "The export."},
        304: {"description": "The chain has not grown since the export with this ETag."},
        **ERRORS,
    },
)
async def export_ledger(
    organisation_id: OrganisationId,
    request: Request,
    database: DatabaseDep,
    read_database: ReadDatabaseDep,
    signer: SignerDep,
) -> Response:
    export = await exports.open_export(
        database, chain_id=organisation_id, signer=signer, snapshot_database=read_database
    )
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


@router.get(
    "/organisations/{organisation_id}/checkpoint",
    summary="The latest signed checkpoint of the organisation's chain",
    response_model=CheckpointOut,
    description="Amply's Ed25519 signature on the chain's head, as a c2sp.org/tlog-checkpoint "
    "signed note; signed on the spot if the head moved since the last one. Keep it: a later "
    "export that does not extend it proves the history was rewritten. With `Accept: "
    "text/plain`, the note alone.",
    responses={
        200: {"content": {"text/plain": {}}, "description": "The checkpoint."},
        **error_responses(404, 422, 503),
    },
)
async def get_checkpoint(
    organisation_id: OrganisationId,
    request: Request,
    response: Response,
    session: SessionDep,
    signer: SignerDep,
) -> CheckpointOut | Response:
    await organisations.require_organisation(session, organisation_id=organisation_id)
    checkpoint = await checkpoints.checkpoint_head(session, chain_id=organisation_id, signer=signer)
    if checkpoint is None:
        raise NotFound(
            "The chain is empty: there is nothing to sign yet.", code="checkpoint_missing"
        )
    response.headers["Cache-Control"] = LIST_CACHE
    if "text/plain" in request.headers.get("accept", ""):
        return Response(
            checkpoint.note,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": LIST_CACHE},
        )
    return checkpoint_out(checkpoint)


def checkpoint_out(checkpoint: LedgerCheckpoint) -> CheckpointOut:
    return CheckpointOut(
        chain_id=checkpoint.chain_id,
        origin=checkpoint.note.partition("\n")[0],
        size=checkpoint.size,
        root_hash=checkpoint.root_hash,
        issued_at=checkpoint.issued_at,
        key=checkpoint.verifier_key,
        note=checkpoint.note,
    )


@router.get(
    "/keys",
    summary="The public keys that sign checkpoints",
    description="The active key and every key that signed checkpoints before, with its "
    "status: which checkpoints it vouches for (docs/ledger-format.md §6). Only Amply's "
    "operator installs, retires or revokes a key. Pin the active one, or pass this whole "
    "list: `amply verify --key keys.json`.",
)
async def list_keys(response: Response, session: SessionDep) -> SigningKeysOut:
    keys = await checkpoints.list_keys(session)
    response.headers["Cache-Control"] = "public, max-age=300"
    return SigningKeysOut(data=[_key_out(key) for key in keys])


def _key_out(stored: CheckpointKey) -> SigningKeyOut:
    key = VerifierKey.parse(stored.verifier_key)
    return SigningKeyOut(
        key=stored.verifier_key,
        name=key.name,
        key_id=key.key_id.hex(),
        public_key=base64.b64encode(key.public_key).decode(),
        status=KeyStatus(stored.status),
        activated_at=stored.activated_at,
        retired_at=stored.retired_at,
        revoked_at=stored.revoked_at,
    )
