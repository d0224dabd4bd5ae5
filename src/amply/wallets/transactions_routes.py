"""The wallet's history: transfers sent and received, deposits, withdrawals and their fees,
request payments, gifts and bonuses, each linked to its ledger entries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from amply.kit.dependencies import SessionDep
from amply.kit.error_responses import error_responses
from amply.kit.errors import ErrorCode
from amply.kit.schemas import Limit, ListResponse, StartingAfter, as_utc
from amply.wallets import history
from amply.wallets.dependencies import CurrentWallet
from amply.wallets.schemas import HistoryFilter, HistoryStatus, TransactionOut
from amply.wallets.views import Views

router = APIRouter(tags=["transactions"])


@router.get(
    "/transactions",
    summary="Your wallet's history, newest first",
    description="Filter by `type` (repeatable: sent, received, deposit, withdrawal, fee, "
    "request, donation, bonus), `status` and creation time; page with `starting_after`. "
    "Each item lists the ledger entries of the journals that moved its money.",
    responses=error_responses(401, 422),
)
async def list_transactions(
    wallet: CurrentWallet,
    session: SessionDep,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
    types: Annotated[
        list[HistoryFilter] | None, Query(alias="type", description="Only these types.")
    ] = None,
    status: Annotated[HistoryStatus | None, Query(description="Only this status.")] = None,
    created_gte: Annotated[
        datetime | None, Query(description="Created at or after this time.")
    ] = None,
    created_lt: Annotated[datetime | None, Query(description="Created before this time.")] = None,
) -> ListResponse[TransactionOut]:
    page = await history.list_history(
        session,
        wallet=wallet,
        types=types,
        status=status,
        created_gte=as_utc(created_gte),
        created_lt=as_utc(created_lt),
        starting_after=starting_after,
        limit=limit,
    )
    views = await Views.load(session, viewer_wallet_id=wallet.id, items=page.items)
    return ListResponse.of(page, views.history_item)


@router.get(
    "/transactions/{transaction_id}",
    summary="One item of your history",
    responses=error_responses(401, ErrorCode.TRANSACTION_NOT_FOUND),
)
async def get_transaction(
    transaction_id: Annotated[str, Path(max_length=64, description="`txn_…`")],
    wallet: CurrentWallet,
    session: SessionDep,
) -> TransactionOut:
    item = await history.get_item(session, wallet=wallet, transaction_id=transaction_id)
    views = await Views.load(session, viewer_wallet_id=wallet.id, items=[item])
    return views.history_item(item)
