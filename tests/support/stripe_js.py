"""A strict stand-in for Stripe.js (``stripe_js.js``) on the Stripe-protocol test server, and
the publishable-key requests it makes, for the give page's browser test in Stripe mode.

localstripe's own ``localstripe-v3.js`` imitates only the Card Element (``elements()``
without ``clientSecret``, ``create('card')``, ``confirmCardPayment``): no Payment Element,
no ``confirmPayment``. The stand-in implements exactly the surface the give page uses and
refuses anything else (see the script's header).

``install(app)`` serves the script at :data:`SCRIPT_PATH` and accepts, as Stripe does, two
requests authenticated by a publishable key in the form body (``key=pk_…``, the connected
account as ``_stripe_account``) rather than a secret key:

- ``POST /v1/payment_methods`` with ``type=card`` and ``card[…]`` only;
- ``POST /v1/payment_intents/{id}/confirm`` with the PaymentIntent's own ``client_secret``
  (anything else is Stripe's 400 ``payment_intent_invalid_parameter``), ``payment_method``
  and ``return_url``.

Each is re-sent to this same server's ``/v1`` routes with a secret key and the
``Stripe-Account`` header, so it goes through every extension (request log, parameter
checks, ownership, events carrying ``account``, signed webhooks). localstripe confirms a
PaymentIntent only without parameters, so the confirm becomes an update with the payment
method and a bare confirm; ``return_url`` is dropped (a card payment never redirects).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

# Under /js.stripe.com/, which localstripe serves without an API key (beside its own v3/).
SCRIPT_PATH: Final = "/js.stripe.com/payment-element/v3/"
SCRIPT: Final = (Path(__file__).parent / "stripe_js.js").read_bytes()
# The server's own key for re-sent requests: localstripe accepts any secret key.
_SECRET: Final = "sk_test_stripe_js_standin"
_PAYMENT_METHODS: Final = "/v1/payment_methods"
_CONFIRM: Final = re.compile(r"^/v1/payment_intents/(pi_\w+)/confirm$")
_CARD_FIELDS: Final = frozenset({"card[number]", "card[exp_month]", "card[exp_year]", "card[cvc]"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, *, code: str, param: str | None = None) -> web.Response:
    error: dict[str, Any] = {"type": "invalid_request_error", "code": code, "message": message}
    if param is not None:
        error["param"] = param
    return web.json_response({"error": error}, status=status)


async def serve_script(_: web.Request) -> web.Response:
    return web.Response(
        body=SCRIPT,
        content_type="text/javascript",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"},
    )


async def _resend(
    request: web.Request, method: str, path: str, account: str | None, data: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {_SECRET}"}
    if account is not None:
        headers["Stripe-Account"] = account
    async with (
        aiohttp.ClientSession(base_url=str(request.url.origin())) as session,
        session.request(method, path, data=data or None, headers=headers) as response,
    ):
        body: dict[str, Any] = await response.json()
        return response.status, body


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


@web.middleware
async def publishable_key_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The two requests Stripe.js makes with the publishable key (outermost middleware)."""
    confirm = _CONFIRM.match(request.path)
    if (
        request.method != "POST"
        or (request.path != _PAYMENT_METHODS and confirm is None)
        or "Authorization" in request.headers
    ):
        return await handler(request)
    form = {name: str(value) for name, value in (await request.post()).items()}
    key = form.pop("key", "")
    account = form.pop("_stripe_account", None)
    if not re.fullmatch(r"pk_(test|live)_\w+", key):
        return _error(401, "Invalid API Key provided.", code="api_key_invalid")
    if confirm is None:
        unknown = sorted(set(form) - _CARD_FIELDS - {"type"})
        if form.get("type") != "card" or unknown:
            name = unknown[0] if unknown else "type"
            return _error(400, f"Received unknown parameter: {name}", code="parameter_unknown")
        return _answer(*await _resend(request, "POST", _PAYMENT_METHODS, account, form))
    intent = confirm.group(1)
    client_secret = form.pop("client_secret", "")
    payment_method = form.pop("payment_method", "")
    form.pop("return_url", None)
    if form:
        name = sorted(form)[0]
        return _error(400, f"Received unknown parameter: {name}", code="parameter_unknown")
    status, found = await _resend(request, "GET", f"/v1/payment_intents/{intent}", account, {})
    if status != 200:
        return _answer(status, found)
    if not client_secret or client_secret != found.get("client_secret"):
        return _error(
            400,
            "The client_secret provided does not match the client_secret associated with "
            "the PaymentIntent.",
            code="payment_intent_invalid_parameter",
            param="client_secret",
        )
    path = f"/v1/payment_intents/{intent}"
    status, updated = await _resend(
        request, "POST", path, account, {"payment_method": payment_method}
    )
    if status != 200:
        return _answer(status, updated)
    return _answer(*await _resend(request, "POST", f"{path}/confirm", account, {}))


def install(app: web.Application) -> None:
    """Serve the stand-in and accept its publishable-key requests."""
    app.middlewares.insert(0, publishable_key_requests)
    app.router.add_get(SCRIPT_PATH, serve_script)
