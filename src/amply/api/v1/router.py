"""Combines the /v1 routers."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/v1")
