"""Combines the /v1 routers."""

from __future__ import annotations

from fastapi import APIRouter

from amply.api.v1 import (
    api_keys,
    auth,
    donations,
    funds,
    members,
    organisations,
    public,
    sandbox,
    stripe_accounts,
    webhooks,
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
):
    router.include_router(module.router)
