"""Responses shared by every route that serves a chain: a page of entries, the server's
verification, a streamed signed export and a signed checkpoint. An organisation's chain and
the platform's chains are served publicly (``public.py``); a wallet's only to its owner
(``wallet.py``), with the same bodies and private caching."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

from fastapi import Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.background import BackgroundTask

from amply.kit.db import Database
from amply.kit.errors import ErrorCode, NotFound
from amply.kit.page_cache import keep_page
from amply.kit.schemas import as_utc
from amply.ledger import checkpoints, exports
from amply.ledger.signing import NoteSigner
from amply.ledger.verdicts import VerdictCache
from amply.models import LedgerCheckpoint
from amply.models.enums import ChainKind, EntryType
from amply.organisations import service as organisations
from amply.transparency import service as transparency
from amply.transparency.schemas import CheckpointOut, LedgerPageOut, PublicEntryOut, VerificationOut
from amply.transparency.service import LedgerPage, PublicKind

# Pages and profiles change as entries arrive: shared caches may keep them briefly.
LIST_CACHE: Final = "public, max-age=30, stale-while-revalidate=60"
VERIFY_CACHE: Final = "public, max-age=60"
# A wallet's chain is its owner's alone: no cache, shared or not, keeps it.
PRIVATE_CACHE: Final = "private, no-store"

# A page of a chain, public or a wallet's: where it starts and how long it may be.
AfterSeq = Annotated[int, Query(ge=0, le=2**62, description="Entries after this seq.")]
PageLimit = Annotated[int, Query(ge=1, le=1000, description="At most this many entries.")]
# What an export or a checkpoint may answer besides its chain's own errors (and 503).
SIGNING_ERRORS: Final = (
    ErrorCode.LEDGER_INTEGRITY_FAILURE,
    ErrorCode.SIGNING_KEY_NOT_INSTALLED,
)


async def ledger_page(
    request: Request,
    session: AsyncSession,
    *,
    chain_id: str,
    kind: PublicKind,
    after_seq: int,
    limit: int,
    entry_type: list[EntryType] | None,
    created_gte: datetime | None,
    created_lt: datetime | None,
) -> Response:
    """A page of a public chain (404 if there is no such chain of this kind). An unfiltered
    page that ends before the head never changes: it is kept and served immutable
    (``amply.kit.page_cache``)."""
    page = await transparency.ledger_page(
        session,
        chain_id=chain_id,
        kind=kind,
        after_seq=after_seq,
        limit=limit,
        types=entry_type,
        created_gte=as_utc(created_gte),
        created_lt=as_utc(created_lt),
    )
    if not page.rows:  # an empty page, or no such chain
        await require_public_chain(session, chain_id=chain_id, kind=kind)
    body = ledger_page_body(page)
    unfiltered = entry_type is None and created_gte is None and created_lt is None
    if unfiltered and page.has_more:  # it ends before the head: it never changes
        return keep_page(request, body)
    return Response(body, media_type="application/json", headers={"Cache-Control": LIST_CACHE})


async def require_public_chain(session: AsyncSession, *, chain_id: str, kind: PublicKind) -> None:
    """404 unless the organisation, or the platform chain, exists."""
    if kind == "organisation":
        await organisations.require_organisation(session, organisation_id=chain_id)
    else:
        await transparency.require_platform_chain(session, chain_id=chain_id)


def ledger_page_body(page: LedgerPage) -> bytes:
    out = LedgerPageOut(
        data=[PublicEntryOut(**row) for row in page.rows],
        has_more=page.has_more,
        next_after_seq=page.rows[-1]["seq"] if page.has_more else None,
    )
    return out.model_dump_json().encode()


async def verification(
    response: Response, session: AsyncSession, *, verdicts: VerdictCache, chain_id: str
) -> VerificationOut:
    """The server's (briefly cached) verdict on a public chain the caller checked exists."""
    verdict = await verdicts.verdict(session, chain_id=chain_id)
    response.headers["Cache-Control"] = VERIFY_CACHE
    return VerificationOut(
        **verdict.result.as_dict(), verdict=verdict.result.verdict(), checked_at=verdict.checked_at
    )


async def export(
    request: Request,
    database: Database,
    *,
    chain_id: str,
    kind: ChainKind,
    signer: NoteSigner,
    read_database: Database,
    cache_control: str,
) -> Response:
    """The chain's streamed export up to a signed checkpoint of its head (or 304 if the
    caller's ``If-None-Match`` names that head); 404 if there is no chain of this kind."""
    opened = await exports.open_export(
        database, chain_id=chain_id, kind=kind, signer=signer, snapshot_database=read_database
    )
    headers = {
        "ETag": opened.etag,
        "Cache-Control": cache_control,
        "Content-Disposition": f'attachment; filename="{chain_id}.ledger.json"',
    }
    if opened.etag in request.headers.get("if-none-match", ""):
        await opened.close()
        return Response(status_code=304, headers=headers)
    # The body closes the snapshot when it ends; the background task, if it never starts.
    return StreamingResponse(
        opened.body(),
        media_type="application/json",
        headers=headers,
        background=BackgroundTask(opened.close),
    )


async def checkpoint(
    request: Request,
    response: Response,
    session: AsyncSession,
    *,
    chain_id: str,
    signer: NoteSigner,
    cache_control: str,
) -> CheckpointOut | Response:
    """The checkpoint of the chain's head, signed now if need be (the request's session
    commits it before the response is sent); with ``Accept: text/plain``, the note alone.
    404 ``checkpoint_missing`` while the chain is empty."""
    signed = await checkpoints.checkpoint_head(session, chain_id=chain_id, signer=signer)
    if signed is None:
        raise NotFound(
            "The chain is empty: there is nothing to sign yet.", code="checkpoint_missing"
        )
    response.headers["Cache-Control"] = cache_control
    if "text/plain" in request.headers.get("accept", ""):
        return Response(
            signed.note,
            media_type="text/plain; charset=utf-8",
            headers={"Cache-Control": cache_control},
        )
    return checkpoint_out(signed)


def checkpoint_out(signed: LedgerCheckpoint) -> CheckpointOut:
    return CheckpointOut(
        chain_id=signed.chain_id,
        origin=signed.note.partition("\n")[0],
        size=signed.size,
        root_hash=signed.root_hash,
        issued_at=signed.issued_at,
        key=signed.verifier_key,
        note=signed.note,
    )
