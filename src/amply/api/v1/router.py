"""Combines the /v1 routers."""

from __future__ import annotations

from fastapi import APIRouter

from amply.api.errors import declare_request_errors
from amply.api.v1 import (
    api_keys,
    auth,
    cards,
    deposits,
    donations,
    funds,
    members,
    money_requests,
    organisations,
    public,
    sandbox,
    stripe_accounts,
    transactions,
    transfers,
    wallet,
    webhooks,
    withdrawals,
)

router = APIRouter(prefix="/v1")
for module in (
    auth,
    organisations,
    members,
    api_keys,
    stripe_accounts,
    funds,
    donations,
    webhooks,
    sandbox,
    public,
    wallet,
    transfers,
    money_requests,
    transactions,
    cards,
    deposits,
    withdrawals,
):
    declare_request_errors(module.router.routes)
    router.include_router(module.router)
declare_request_errors(sandbox.payouts_router.routes)
router.include_router(sandbox.payouts_router)
