"""The signed-in user's wallet: balance, held and available money, its own chain (pages, a
signed export, a checkpoint), and giving from it to an organisation."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from amply.auth.dependencies import CurrentUser
from amply.kit.dependencies import (
    DatabaseDep,
    ReadDatabaseDep,
    RequiredIdempotencyKey,
    SessionDep,
)
from amply.kit.error_responses import IDEMPOTENCY_ERRORS, error_responses
from amply.kit.errors import ErrorCode
from amply.kit.idempotency import IdempotentRequest
from amply.kit.idempotent_requests import IdempotencyDep
from amply.ledger import service as ledger
from amply.ledger.dependencies import SignerDep
from amply.models.enums import ChainKind
from amply.transparency import chain_responses
from amply.transparency.chain_responses import (
    PRIVATE_CACHE,
    SIGNING_ERRORS,
    AfterSeq,
    PageLimit,
)
from amply.transparency.schemas import CheckpointOut, LedgerPageOut, PublicEntryOut
from amply.wallets import giving
from amply.wallets import service as wallets
from amply.wallets.dependencies import CurrentWallet
from amply.wallets.schemas import (
    WalletDonationCreate,
    WalletDonationOut,
    WalletLedgerOut,
    WalletOut,
)
from amply.wallets.views import Views

router = APIRouter(tags=["wallet"])


@router.get(
    "/wallet",
    summary="Your wallet: balance from the ledger, money held for confirmation, available",
    responses=error_responses(401),
)
async def get_wallet(wallet: CurrentWallet, session: SessionDep) -> WalletOut:
    balance = await wallets.balance_of(session, wallet=wallet)
    head = await ledger.get_head(session, chain_id=wallet.id)
    return WalletOut(
        id=wallet.id,
        currency=wallet.currency,
        balance=balance.balance,
        held=balance.held,
        available=balance.available,
        ledger=WalletLedgerOut(chain_id=wallet.id, head_seq=head.seq, head_hash=head.entry_hash),
        created_at=wallet.created_at,
    )


@router.get(
    "/wallet/ledger",
    summary="Your wallet's own chain, in order (the same entry shape as public ledgers)",
    description="Page with `after_seq`. Each page can be checked with the code that checks "
    "an export (docs/ledger-format.md).",
    responses=error_responses(401, 422),
)
async def get_wallet_ledger(
    wallet: CurrentWallet,
    session: SessionDep,
    after_seq: AfterSeq = 0,
    limit: PageLimit = 100,
) -> LedgerPageOut:
    page = await ledger.list_entries(session, chain_id=wallet.id, after_seq=after_seq, limit=limit)
    return LedgerPageOut(
        data=[PublicEntryOut(**entry.as_export()) for entry in page.entries],
        has_more=page.has_more,
        next_after_seq=page.entries[-1].seq if page.has_more else None,
    )


@router.get(
    "/wallet/ledger/export",
    summary="Your wallet's whole chain as a signed JSON download (docs/ledger-format.md §4)",
    description="Exactly the format of a public export, streamed from one snapshot up to a "
    "checkpoint of your chain's head, signed on the spot by Amply's published key "
    "(/v1/public/keys) and embedded. Verify it offline with `amply verify FILE --key KEY`; "
    "with the platform's and organisations' exports, match its journals' legs "
    "(docs/public-api.md). Only you can download it: it is never cached "
    "(`Cache-Control: private, no-store`). `ETag` names the head it ends at.",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/json": {}}, "description": "The export."},
        304: {"description": "Your chain has not grown since the export with this ETag."},
        **error_responses(401, 503, *SIGNING_ERRORS),
    },
)
async def export_wallet_ledger(
    wallet: CurrentWallet,
    request: Request,
    session: SessionDep,
    database: DatabaseDep,
    read_database: ReadDatabaseDep,
    signer: SignerDep,
) -> Response:
    return await chain_responses.export(
        request,
        database,
        chain_id=wallet.id,
        kind=ChainKind.WALLET,
        signer=signer,
        read_database=read_database,
        cache_control=PRIVATE_CACHE,
    )


@router.get(
    "/wallet/checkpoint",
    summary="A signed checkpoint of your wallet's chain head",
    response_model=CheckpointOut,
    description="Amply's Ed25519 signature on your chain's head (c2sp.org/tlog-checkpoint), "
    "signed on the spot if the head moved since the last one. Keep it: a later export of "
    "your chain that does not extend it proves your history was rewritten. Wallet chains "
    "are signed only when their owner asks (this route, or an export). With `Accept: "
    "text/plain`, the note alone. 404 `checkpoint_missing` while your chain is empty.",
    responses={
        200: {"content": {"text/plain": {}}, "description": "The checkpoint."},
        **error_responses(401, 503, ErrorCode.CHECKPOINT_MISSING, *SIGNING_ERRORS),
    },
)
async def get_wallet_checkpoint(
    wallet: CurrentWallet,
    request: Request,
    response: Response,
    session: SessionDep,
    signer: SignerDep,
) -> CheckpointOut | Response:
    return await chain_responses.checkpoint(
        request, response, session, chain_id=wallet.id, signer=signer, cache_control=PRIVATE_CACHE
    )


@router.post(
    "/wallet/donations",
    status_code=status.HTTP_201_CREATED,
    response_model=WalletDonationOut,
    summary="Give from your wallet to an organisation (optionally to one of its funds)",
    description="One balanced journal from your wallet's chain to the organisation's public "
    "chain, at once. The public ledger names you only if `anonymous` is false; it never "
    "shows your username or email. Requires an `Idempotency-Key`.",
    responses=error_responses(
        400,
        401,
        403,
        404,
        422,
        *IDEMPOTENCY_ERRORS,
        ErrorCode.FUND_CLOSED,
        ErrorCode.WALLET_RESTRICTED,
        ErrorCode.CURRENCY_MISMATCH,
        ErrorCode.INSUFFICIENT_FUNDS,
    ),
)
async def give(
    body: WalletDonationCreate,
    caller: CurrentUser,
    wallet: CurrentWallet,
    session: SessionDep,
    idempotency: IdempotencyDep,
    idempotency_key: RequiredIdempotencyKey,
) -> JSONResponse:
    async def run(_: IdempotentRequest | None) -> WalletDonationOut:
        gift = await giving.give(
            session,
            wallet=wallet,
            donor=caller.user,
            organisation_id=body.organisation_id,
            fund_id=body.fund_id,
            amount=body.amount,
            currency=body.currency,
            anonymous=body.anonymous,
            description=body.description,
        )
        views = await Views.load(session, viewer_wallet_id=wallet.id, items=[gift])
        assert gift.organisation_id is not None
        return WalletDonationOut(
            id=gift.id,
            status="completed",
            organisation_id=gift.organisation_id,
            fund_id=gift.fund_id,
            amount=gift.amount,
            currency=gift.currency,
            public_name=gift.public_name or "Anonymous",
            created_at=gift.created_at,
            ledger_entries=views.legs(gift),
        )

    return await idempotency.respond(
        key=idempotency_key, scope=f"user:{caller.user.id}", body=body, status_code=201, run=run
    )
