"""Combines the /v1 routers."""

from __future__ import annotations

from fastapi import APIRouter

from amply.donations import routes as donations
from amply.identity import api_keys_routes as api_keys
from amply.identity import auth_routes as auth
from amply.kit.error_responses import declare_request_errors
from amply.organisations import funds_routes as funds
from amply.organisations import members_routes as members
from amply.organisations import routes as organisations
from amply.payments import connect_routes as stripe_accounts
from amply.transparency import routes as public
from amply.wallets import cards_routes as cards
from amply.wallets import deposits_routes as deposits
from amply.wallets import money_requests_routes as money_requests
from amply.wallets import routes as wallet
from amply.wallets import transactions_routes as transactions
from amply.wallets import transfers_routes as transfers
from amply.wallets import withdrawals_routes as withdrawals
from amply.webhooks import routes as webhooks
from amply.webhooks import sandbox_routes as sandbox

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
for sandbox_router in (sandbox.payouts_router, sandbox.setup_intents_router):
    declare_request_errors(sandbox_router.routes)
    router.include_router(sandbox_router)
