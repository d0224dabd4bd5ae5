"""The payment gateway a route talks to (Stripe, or the sandbox), and the sandbox guard."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from amply.kit.dependencies import SettingsDep
from amply.kit.errors import NotFound
from amply.payments.gateway import PaymentGateway


def get_gateway(request: Request) -> PaymentGateway:
    gateway: PaymentGateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[PaymentGateway, Depends(get_gateway)]


def require_sandbox(settings: SettingsDep) -> None:
    """404 ``sandbox_disabled`` with Stripe keys, whoever calls (checked before credentials)."""
    if not settings.sandbox_mode:
        raise NotFound("The sandbox is off: this server has Stripe keys.", code="sandbox_disabled")
