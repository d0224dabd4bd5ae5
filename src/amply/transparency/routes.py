"""The public API: anyone may read organisations, their totals and their ledgers."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import Database
from amply.kit.dependencies import DatabaseDep, ReadDatabaseDep, ReadSessionDep, SessionDep
from amply.kit.error_responses import error_responses
from amply.kit.errors import ErrorCode
from amply.kit.schemas import Limit, ListResponse, StartingAfter, as_literal
from amply.ledger import checkpoints
from amply.ledger import service as ledger
from amply.ledger.dependencies import SignerDep, VerdictsDep
from amply.ledger.service import ChainHead
from amply.ledger.signing import NoteSigner
from amply.ledger.verdicts import VerdictCache
from amply.models import CheckpointKey, Organisation, enums
from amply.models.enums import ChainKind
from amply.models.ledger import KeyStatus
from amply.organisations import funds
from amply.organisations import service as organisations
from amply.organisations.schemas import fund_out
from amply.payments import connect
from amply.payments.dependencies import GatewayDep
from amply.payments.gateway import PaymentGateway
from amply.transparency import chain_responses
from amply.transparency import service as transparency
from amply.transparency.chain_responses import (
    LIST_CACHE,
    SIGNING_ERRORS,
    AfterSeq,
    PageLimit,
)
from amply.transparency.schemas import (
    ChainHeadOut,
    CheckpointOut,
    LedgerPageOut,
    PlatformChainOut,
    PlatformTotalsOut,
    PublicFundOut,
    PublicOrganisationDetail,
    PublicOrganisationOut,
    SigningKeyOut,
    SigningKeysOut,
    TotalsOut,
    VerificationOut,
)
from amply.transparency.service import PublicKind, Totals
from amply.verify import VerifierKey

router = APIRouter(prefix="/public", tags=["public"])

OrganisationId = Annotated[
    str,
    Path(pattern=r"^org_[0-9A-Za-z]{24}$", description="The organisation's id (`org_…`)."),
]
PlatformChainId = Annotated[
    str,
    Path(
        pattern=r"^plat_[0-9a-z_]{1,40}$",
        description="The platform chain's id (`plat_…`, as listed by /v1/public/platform/chains).",
    ),
]
ERRORS: Final = error_responses(404, 422)
if TYPE_CHECKING:
    EntryType = enums.EntryType
else:
    EntryType = as_literal(enums.EntryType)
EntryTypes = Annotated[
    list[EntryType] | None, Query(alias="type", description="Only these entry types.")
]
CreatedGte = Annotated[
    datetime | None, Query(description="Only entries created at or after this time.")
]
CreatedLt = Annotated[datetime | None, Query(description="Only entries created before this time.")]
LEDGER_DESCRIPTION: Final = (
    "Entries exactly as exported (docs/ledger-format.md §4), so each page can be checked with "
    "the same code as an export. Page with `after_seq`. A page that ends before the chain's "
    "head, unfiltered, never changes: it carries a strong `ETag` (send it back as "
    "`If-None-Match`: 304) and `Cache-Control: public, max-age=86400, immutable`."
)
LEDGER_ROUTE: Final[dict[str, Any]] = {
    "description": LEDGER_DESCRIPTION,
    "response_model": LedgerPageOut,
    "responses": {304: {"description": "The caller holds this page already."}, **ERRORS},
}
VERIFY_DESCRIPTION: Final = (
    "Recomputes every hash, link, sequence number and balance up to the head it names. A "
    "verdict is served again for `verify_cache_seconds` (10 by default; `checked_at` says "
    "when it was computed). Auditors should verify an export themselves (`amply verify`); "
    "this is the server's word."
)
VERIFY_ROUTE: Final[dict[str, Any]] = {"description": VERIFY_DESCRIPTION, "responses": ERRORS}
EXPORT_DESCRIPTION: Final = (
    "One consistent snapshot, however long the chain and whatever is appended meanwhile, up "
    "to a signed checkpoint of its head, which it embeds. Verify it offline with `amply "
    "verify FILE --key KEY`. `ETag` names the head it ends at; send it back as "
    "`If-None-Match` to learn (304) that nothing was appended."
)
EXPORT_ROUTE: Final[dict[str, Any]] = {
    "description": EXPORT_DESCRIPTION,
    "response_class": StreamingResponse,
    "responses": {
        200: {"content": {"application/json": {}}, "description": "The export."},
        304: {"description": "The chain has not grown since the export with this ETag."},
        **error_responses(404, 422, 503, *SIGNING_ERRORS),
    },
}
CHECKPOINT_DESCRIPTION: Final = (
    "Amply's Ed25519 signature on the chain's head, as a c2sp.org/tlog-checkpoint signed "
    "note; signed on the spot if the head moved since the last one. Keep it: a later export "
    "that does not extend it proves the history was rewritten. With `Accept: text/plain`, "
    "the note alone."
)
CHECKPOINT_ROUTE: Final[dict[str, Any]] = {
    "description": CHECKPOINT_DESCRIPTION,
    "response_model": CheckpointOut,
    "responses": {
        200: {"content": {"text/plain": {}}, "description": "The checkpoint."},
        **error_responses(404, 422, ErrorCode.CHECKPOINT_MISSING, 503, *SIGNING_ERRORS),
    },
}


@dataclass(frozen=True)
class _Chain:
    """The public chain a route's path names: an organisation's, or one of the platform's."""

    id: str
    kind: PublicKind


async def _organisation_chain(organisation_id: OrganisationId) -> _Chain:
    return _Chain(organisation_id, "organisation")


async def _platform_chain(chain_id: PlatformChainId) -> _Chain:
    return _Chain(chain_id, "platform")


OrganisationChain = Annotated[_Chain, Depends(_organisation_chain)]
PlatformChain = Annotated[_Chain, Depends(_platform_chain)]


@dataclass(frozen=True)
class _PageQuery:
    after_seq: int
    limit: int
    entry_type: list[EntryType] | None
    created_gte: datetime | None
    created_lt: datetime | None


async def _page_query(
    after_seq: AfterSeq = 0,
    limit: PageLimit = 100,
    entry_type: EntryTypes = None,
    created_gte: CreatedGte = None,
    created_lt: CreatedLt = None,
) -> _PageQuery:
    return _PageQuery(after_seq, limit, entry_type, created_gte, created_lt)


PageQuery = Annotated[_PageQuery, Depends(_page_query)]


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
            payouts=t.payouts,
            net=t.net,
            donations=t.donations,
        )
        for t in totals
    ]


async def _organisations_out(
    session: AsyncSession, items: Sequence[Organisation], *, gateway: PaymentGateway
) -> list[PublicOrganisationOut]:
    """Each organisation with its totals per currency and its chain's head."""
    ids = [organisation.id for organisation in items]
    totals = await transparency.totals_by_chain(session, chain_ids=ids)
    heads = await ledger.get_heads(session, chain_ids=ids)
    return [
        _organisation_out(o, totals=totals[o.id], head=heads[o.id], gateway=gateway) for o in items
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
    data = await _organisations_out(session, page.items, gateway=gateway)
    response.headers["Cache-Control"] = LIST_CACHE
    return ListResponse(data=data, has_more=page.has_more)


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
    [summary] = await _organisations_out(session, [organisation], gateway=gateway)
    response.headers["Cache-Control"] = LIST_CACHE
    return PublicOrganisationDetail(
        **summary.model_dump(), funds=await _fund_views(session, organisation.id)
    )


@router.get(
    "/organisations/{organisation_id}/ledger",
    summary="The organisation's ledger entries, in chain order",
    **LEDGER_ROUTE,
)
async def get_ledger(
    chain: OrganisationChain, request: Request, session: ReadSessionDep, query: PageQuery
) -> Response:
    return await _ledger_page(request, session, chain, query)


@router.get(
    "/organisations/{organisation_id}/ledger/verify",
    summary="The server's own verification of the organisation's chain",
    **VERIFY_ROUTE,
)
async def verify_ledger(
    chain: OrganisationChain, response: Response, session: ReadSessionDep, verdicts: VerdictsDep
) -> VerificationOut:
    return await _verification(response, session, chain, verdicts)


@router.get(
    "/organisations/{organisation_id}/ledger/export",
    summary="The whole chain as a JSON download (docs/ledger-format.md §4), streamed",
    **EXPORT_ROUTE,
)
async def export_ledger(
    chain: OrganisationChain,
    request: Request,
    database: DatabaseDep,
    read_database: ReadDatabaseDep,
    signer: SignerDep,
) -> Response:
    return await _export(request, database, chain, read_database=read_database, signer=signer)


@router.get(
    "/organisations/{organisation_id}/checkpoint",
    summary="The latest signed checkpoint of the organisation's chain",
    **CHECKPOINT_ROUTE,
)
async def get_checkpoint(
    chain: OrganisationChain,
    request: Request,
    response: Response,
    session: SessionDep,
    signer: SignerDep,
) -> CheckpointOut | Response:
    return await _checkpoint(request, response, session, chain, signer=signer)


# --- One chain's routes, whoever's it is ------------------------------------------------------


async def _ledger_page(
    request: Request, session: AsyncSession, chain: _Chain, query: _PageQuery
) -> Response:
    # A page kept by keep_page() is answered before routing (amply.kit.page_cache).
    return await chain_responses.ledger_page(
        request,
        session,
        chain_id=chain.id,
        kind=chain.kind,
        after_seq=query.after_seq,
        limit=query.limit,
        entry_type=query.entry_type,
        created_gte=query.created_gte,
        created_lt=query.created_lt,
    )


async def _verification(
    response: Response, session: AsyncSession, chain: _Chain, verdicts: VerdictCache
) -> VerificationOut:
    await chain_responses.require_public_chain(session, chain_id=chain.id, kind=chain.kind)
    return await chain_responses.verification(
        response, session, verdicts=verdicts, chain_id=chain.id
    )


async def _export(
    request: Request,
    database: Database,
    chain: _Chain,
    *,
    read_database: Database,
    signer: NoteSigner,
) -> Response:
    return await chain_responses.export(
        request,
        database,
        chain_id=chain.id,
        kind=ChainKind(chain.kind),
        signer=signer,
        read_database=read_database,
        cache_control=LIST_CACHE,
    )


async def _checkpoint(
    request: Request,
    response: Response,
    session: AsyncSession,
    chain: _Chain,
    *,
    signer: NoteSigner,
) -> CheckpointOut | Response:
    await chain_responses.require_public_chain(session, chain_id=chain.id, kind=chain.kind)
    return await chain_responses.checkpoint(
        request, response, session, chain_id=chain.id, signer=signer, cache_control=LIST_CACHE
    )


# --- The platform's own chains ----------------------------------------------------------------


async def _platform_chains(session: AsyncSession, chain_ids: list[str]) -> list[PlatformChainOut]:
    totals = await transparency.totals_by_chain(session, chain_ids=chain_ids)
    heads = await ledger.get_heads(session, chain_ids=chain_ids)
    return [
        PlatformChainOut(
            id=chain_id,
            description=transparency.PLATFORM_CHAINS.get(chain_id, ""),
            totals=[
                PlatformTotalsOut(
                    currency=t.currency, by_type=t.by_type, entries=t.entries, balance=t.net
                )
                for t in totals[chain_id]
            ],
            head=ChainHeadOut(
                chain_id=chain_id, seq=heads[chain_id].seq, entry_hash=heads[chain_id].entry_hash
            ),
        )
        for chain_id in chain_ids
    ]


@router.get(
    "/platform/chains",
    summary="The platform's own chains (fees it collects, money it gives away), with totals",
    description="Every chain Amply itself holds, by id, with the sum of each entry type per "
    "currency and the chain's head. Each is served like an organisation's: a page of "
    "entries, the server's verification, a signed export and a checkpoint "
    "(docs/public-api.md: what an auditor can prove, with which downloads).",
)
async def list_platform_chains(
    response: Response, session: ReadSessionDep
) -> ListResponse[PlatformChainOut]:
    chain_ids = await transparency.platform_chains(session)
    response.headers["Cache-Control"] = LIST_CACHE
    return ListResponse(data=await _platform_chains(session, chain_ids), has_more=False)


@router.get(
    "/platform/chains/{chain_id}",
    summary="A platform chain: what it records, totals per currency, and its head",
    responses=ERRORS,
)
async def get_platform_chain(
    chain_id: PlatformChainId, response: Response, session: ReadSessionDep
) -> PlatformChainOut:
    await transparency.require_platform_chain(session, chain_id=chain_id)
    [chain] = await _platform_chains(session, [chain_id])
    response.headers["Cache-Control"] = LIST_CACHE
    return chain


@router.get(
    "/platform/chains/{chain_id}/ledger",
    summary="A platform chain's entries, in chain order",
    **LEDGER_ROUTE,
)
async def get_platform_ledger(
    chain: PlatformChain, request: Request, session: ReadSessionDep, query: PageQuery
) -> Response:
    return await _ledger_page(request, session, chain, query)


@router.get(
    "/platform/chains/{chain_id}/ledger/verify",
    summary="The server's own verification of a platform chain",
    **VERIFY_ROUTE,
)
async def verify_platform_ledger(
    chain: PlatformChain, response: Response, session: ReadSessionDep, verdicts: VerdictsDep
) -> VerificationOut:
    return await _verification(response, session, chain, verdicts)


@router.get(
    "/platform/chains/{chain_id}/ledger/export",
    summary="A whole platform chain as a JSON download (docs/ledger-format.md §4), streamed",
    **EXPORT_ROUTE,
)
async def export_platform_ledger(
    chain: PlatformChain,
    request: Request,
    database: DatabaseDep,
    read_database: ReadDatabaseDep,
    signer: SignerDep,
) -> Response:
    return await _export(request, database, chain, read_database=read_database, signer=signer)


@router.get(
    "/platform/chains/{chain_id}/checkpoint",
    summary="The latest signed checkpoint of a platform chain",
    **CHECKPOINT_ROUTE,
)
async def get_platform_checkpoint(
    chain: PlatformChain,
    request: Request,
    response: Response,
    session: SessionDep,
    signer: SignerDep,
) -> CheckpointOut | Response:
    return await _checkpoint(request, response, session, chain, signer=signer)


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
