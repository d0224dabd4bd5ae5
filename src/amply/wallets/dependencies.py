"""The signed-in user's wallet, as a route dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from amply.auth.dependencies import CurrentUser
from amply.kit.dependencies import SessionDep
from amply.models import Wallet
from amply.wallets import service as wallets


async def get_current_wallet(user: CurrentUser, session: SessionDep) -> Wallet:
    """The signed-in user's wallet (every user has one); authentication is checked first."""
    return await wallets.of_user(session, user_id=user.user.id)


CurrentWallet = Annotated[Wallet, Depends(get_current_wallet)]
