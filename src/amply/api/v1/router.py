"""Combines the /v1 routers."""

from __future__ import annotations

from fastapi import APIRouter

from amply.api.v1 import api_keys, auth, members, organisations

router = APIRouter(prefix="/v1")
for module in (auth, organisations, members, api_keys):
    router.include_router(module.router)
