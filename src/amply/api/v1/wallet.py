"""The signed-in user's wallet: balance, held and available money, and its own chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from amply.api.errors import error_responses
from amply.deps import CurrentUser, SessionDep
from amply.schemas.public import LedgerPageOut, PublicEntryOut
from amply.schemas.wallets import WalletLedgerOut, WalletOut
from amply.services import ledger, wallets

router = APIRouter(tags=["wallet"])


@router.get(
    "/wallet",
    summary="Your wallet: balance from the ledger, money held for confirmation, available",
    responses=error_responses(401),
)
async def get_wallet(caller: CurrentUser, session: SessionDep) -> WalletOut:
    wallet = await wallets.of_user(session, user_id=caller.user.id)
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
    caller: CurrentUser,
    session: SessionDep,
    after_seq: Annotated[int, Query(ge=0, le=2**62, description="Entries after this seq.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many entries.")] = 100,
) -> LedgerPageOut:
    wallet = await wallets.of_user(session, user_id=caller.user.id)
    page = await ledger.list_entries(session, chain_id=wallet.id, after_seq=after_seq, limit=limit)
    return LedgerPageOut(
        data=[PublicEntryOut(**entry.as_export()) for entry in page.entries],
        has_more=page.has_more,
        next_after_seq=page.entries[-1].seq if page.has_more else None,
    )
