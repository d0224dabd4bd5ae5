"""A Stripe-protocol HTTP server for the tests: localstripe, plus what Amply needs and it lacks.

Run it as ``python -m tests.support.stripe_server --port 0`` from the repository root. It
binds 127.0.0.1 (port 0 picks a free one), prints exactly one line, ``LISTENING
<port>``, to stdout, then serves until SIGTERM or SIGINT, or until its parent process goes
away. Everything else it says goes to stderr. Nothing is read from or written to disk: the
store lives in memory only (localstripe's /tmp/localstripe.pickle is never touched), so
parallel runs do not collide.

**localstripe, unchanged**: PaymentMethods, PaymentIntents (create, update, confirm), Charges,
Refunds, Balance Transactions, Events, API-key auth, form and JSON bodies, ``expand[]``, the
webhook registry (``POST /_config/webhooks/{name}``) and ``DELETE /_config/data``.

**Recorded** (``recorded/*.json``, shapes from Stripe's API reference): the Connect account
and account link bodies, which localstripe has no notion of.

**Extended here**, by patching localstripe before the app starts:

a. Connect: ``POST /v1/accounts``, ``GET /v1/accounts/{id}``, ``POST /v1/account_links``, and
   the control route ``POST /_config/accounts/{id}`` (``charges_enabled``, ``payouts_enabled``,
   ``details_submitted``), which updates the account and emits a signed ``account.updated``;
   with ``deauthorize``, the account disconnects the platform: the server emits
   ``account.application.deauthorized`` and answers every later request on that account
   (``Stripe-Account``) with 403 ``account_invalid``, as Stripe does.
b. Every event carries ``account`` (the ``Stripe-Account`` header of the request that caused
   it, or null), ``api_version``, ``livemode``, ``pending_webhooks`` and ``request`` (``id``,
   ``idempotency_key``). Webhooks are delivered one at a time in the order the events were
   created, after a short delay (``--webhook-delay``, default 0.05 s; localstripe waits 1 s),
   and signed at delivery time.
c. Refunds accept ``reason`` and refuse to refund more than is left on the charge; an omitted
   ``amount`` refunds what is left. Each refund emits ``charge.refunded`` whose object is the
   charge with its cumulative ``amount_refunded``.
d. A charge's balance transaction carries Stripe's card fee: 2.9% rounded half up, plus 30.
e. ``Idempotency-Key``: a POST repeated with the same key (per ``Stripe-Account``) replays the
   saved status and body without executing again; other parameters give 400
   ``idempotency_error``. As at Stripe, requests that fail validation are not saved.
f. Control routes for the harness: ``GET`` and ``DELETE /_config/requests`` (a log of every
   ``/v1`` request), and ``DELETE /_config/webhooks``, which drops the registered webhooks and
   the events still waiting to be delivered; ``POST /_config/latency`` (``seconds``, optional
   ``path_prefix``, ``after``) makes matching ``/v1`` requests wait that long before they
   run, or with ``after`` before they answer (a slow Stripe), until set back to 0.
h. Parameters: a request with a parameter the pinned API version does not accept (read from
   the stripe library's own ``stripe.params`` types, tests/support/stripe_params.py) gets
   Stripe's 400 ``parameter_unknown`` before anything runs; ``payment_method_types`` on
   PaymentIntents and SetupIntents gets ``payment_method_types_no_longer_supported``
   (removed in 2026-09-30.endive), and ``allowed_payment_method_types`` is refused beside
   the parameters Stripe says it excludes.
g. Objects belong to the account that created them (the ``Stripe-Account`` header, or the
   platform): any other account gets Stripe's 404 ``resource_missing``, and lists are filtered.
   Connect accounts themselves belong to the platform and are visible to all.
p. Payouts of connected accounts with their balance transactions, and the balance
   transactions list's filters and ``expand[]=data.source``: ``tests/support/stripe_payouts.py``.
i. Disputes (open, counter, close won or lost; inquiries), their balance transactions and
   ``charge.dispute.*`` events, ``GET /v1/disputes/{id}``, and refunds refused with
   ``charge_disputed``: ``tests/support/stripe_disputes.py``.
j. A strict Stripe.js stand-in with the Payment Element (``GET /js.stripe.com/payment-element/v3/``)
   and the publishable-key requests it makes: ``tests/support/stripe_js.py``.

Exports follow current API versions: a PaymentIntent's ``latest_charge`` is an expandable id
and it has no ``charges`` list; errors and unknown URLs answer in Stripe's error shape.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import copy
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web
from localstripe import resources, webhooks
from localstripe import server as localstripe
from localstripe.errors import UserError
from localstripe.resources import (
    BalanceTransaction,
    Charge,
    Event,
    PaymentIntent,
    Refund,
    SetupIntent,
    StripeObject,
    random_id,
    store,
    try_convert_to_bool,
    try_convert_to_int,
)

from tests.support import stripe_disputes, stripe_js, stripe_payouts
from tests.support.stripe_params import params_type, unknown_params

API_VERSION = "2026-10-28.endive"
RECORDED = Path(__file__).resolve().parent / "recorded"
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
# Responses Stripe does not save under an idempotency key: the endpoint never began executing.
UNSAVED_STATUSES = frozenset({400, 401, 404, 409, 429})

log = logging.getLogger("stripe_server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- Errors in Stripe's shape -----------------------------------------------------------------


class StripeError(UserError):
    """A localstripe ``UserError`` whose body has Stripe's fields (code, param, doc_url)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        contents: dict[str, Any] = {}
        if code:
            contents["code"] = code
            contents["doc_url"] = "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
        if param:
            contents["param"] = param
        super().__init__(status, message, contents)
        self.body["error"]["type"] = error_type


def error_response(status: int, message: str, **fields: Any) -> web.Response:
    response: web.Response = StripeError(status, message, **fields).to_response()
    return response


def json_response(body: Any, status: int = 200) -> web.Response:
    response: web.Response = localstripe.json_response(body, status=status)
    return response


# --- The request being served, for events and ownership ---------------------------------------


@dataclasses.dataclass(frozen=True)
class RequestContext:
    account: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None


PLATFORM = RequestContext()
current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "stripe_request", default=PLATFORM
)


def visible(obj: Any) -> bool:
    """Whether the current request's account owns ``obj`` (objects without an owner: platform)."""
    return getattr(obj, "_account", None) == current.get().account


# --- Patches to localstripe's resources -------------------------------------------------------


def _no_disk(self: Any) -> None:
    """localstripe pickles its store to /tmp on every write; the tests keep it in memory."""


def _patch_store() -> None:
    resources.Store.dump_to_disk = _no_disk
    resources.Store.try_load_from_disk = _no_disk


def _patch_ownership() -> None:
    original_init = StripeObject.__init__
    original_list_all = StripeObject.__dict__["_api_list_all"].__func__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self._account = current.get().account

    def api_retrieve(cls: Any, object_id: str) -> Any:
        obj = store.get(f"{cls.object}:{object_id}")
        if obj is None or not visible(obj):
            raise StripeError(
                404, f"No such {cls.object}: '{object_id}'", code="resource_missing", param="id"
            )
        return obj

    def api_list_all(cls: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        listed = original_list_all(cls, url, *args, **kwargs)
        listed._list = [obj for obj in listed._list if visible(obj)]
        return listed

    StripeObject.__init__ = init
    StripeObject._api_retrieve = classmethod(api_retrieve)
    StripeObject._api_list_all = classmethod(api_list_all)


def _patch_events() -> None:
    original_init = Event.__init__

    def init(self: Any, event_type: str, data: Any) -> None:
        original_init(self, event_type, data)
        context = current.get()
        self.account = context.account
        self.api_version = API_VERSION
        self.livemode = False
        self.pending_webhooks = sum(
            1
            for hook in webhooks._webhooks.values()
            if hook.events is None or event_type in hook.events
        )
        self.request = {"id": context.request_id, "idempotency_key": context.idempotency_key}

    Event.__init__ = init
    resources.schedule_webhook = schedule_webhook
    webhooks.schedule_webhook = schedule_webhook


def _expanded(field: str, expand: list[str] | None) -> bool:
    return any(path == field or path.startswith(field + ".") for path in expand or [])


def _patch_payment_intents() -> None:
    original_init = PaymentIntent.__init__
    original_export = PaymentIntent._export

    def init(
        self: Any, *args: Any, allowed_payment_method_types: Any = None, **kwargs: Any
    ) -> None:
        _check_method_types(allowed_payment_method_types)
        original_init(self, *args, **kwargs)
        self.payment_method_types = allowed_payment_method_types or ["card"]

    def export(self: Any, expand: list[str] | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = original_export(self, expand=expand)
        obj.pop("charges", None)  # removed in API version 2022-11-15
        if self.latest_charge is not None and not _expanded("latest_charge", expand):
            obj["latest_charge"] = self.latest_charge.id
        obj["amount_received"] = self.amount if obj["status"] == "succeeded" else 0
        return obj

    PaymentIntent.__init__ = init
    PaymentIntent._export = export


def _check_method_types(allowed: Any) -> None:
    if allowed is not None and not (
        isinstance(allowed, list) and all(isinstance(kind, str) for kind in allowed)
    ):
        raise StripeError(400, "Invalid array", param="allowed_payment_method_types")


def _patch_setup_intents() -> None:
    original_init = SetupIntent.__init__

    def init(
        self: Any, *args: Any, allowed_payment_method_types: Any = None, **kwargs: Any
    ) -> None:
        _check_method_types(allowed_payment_method_types)
        original_init(self, *args, payment_method_types=allowed_payment_method_types, **kwargs)

    SetupIntent.__init__ = init


def _patch_charges() -> None:
    original_export = Charge._export

    # localstripe already exports ``payment_intent`` as an id (expandable) and ``refunds`` as a
    # list object with the cumulative ``amount_refunded`` and ``refunded``; add what it lacks.
    def export(self: Any, expand: list[str] | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = original_export(self, expand=expand)
        obj["amount_captured"] = self.amount if self.captured and self.paid else 0
        obj.setdefault("disputed", False)
        return obj

    Charge._export = export


def stripe_fee(amount: int) -> int:
    """Stripe's US card fee in minor units: 2.9% rounded half up, plus 30."""
    return (amount * 29 + 500) // 1000 + 30


def _patch_balance_transactions() -> None:
    original_init = BalanceTransaction.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        self.balance_type = "payments"
        if self.type == "charge":
            self.fee = stripe_fee(self.amount)
            self.fee_details = [
                {
                    "amount": self.fee,
                    "application": None,
                    "currency": self.currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]

    BalanceTransaction.__init__ = init


def _money(amount: int, currency: str) -> str:
    return f"${amount / 100:.2f}" if currency == "usd" else f"{amount / 100:.2f} {currency.upper()}"


def _charge_to_refund(charge: Any, payment_intent: Any) -> Any:
    """The charge a refund's parameters name, or None to let localstripe report the problem."""
    with contextlib.suppress(UserError):
        if isinstance(charge, str) and charge.startswith("ch_"):
            return Charge._api_retrieve(charge)
        if isinstance(payment_intent, str) and payment_intent.startswith("pi_"):
            return PaymentIntent._api_retrieve(payment_intent).latest_charge
    return None


def _patch_refunds() -> None:
    original_init = Refund.__init__

    def init(
        self: Any,
        charge: Any = None,
        payment_intent: Any = None,
        amount: Any = None,
        metadata: Any = None,
        reason: Any = None,
        **kwargs: Any,
    ) -> None:
        if reason is not None and reason not in REFUND_REASONS:
            raise StripeError(
                400,
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                param="reason",
            )
        charge_obj = _charge_to_refund(charge, payment_intent)
        if charge_obj is not None and charge_obj.status == "succeeded":
            left = charge_obj.amount - charge_obj.amount_refunded
            if left <= 0:
                raise StripeError(
                    400,
                    f"Charge {charge_obj.id} has already been refunded.",
                    code="charge_already_refunded",
                )
            if amount is None:
                amount = left
            requested = try_convert_to_int(amount)
            if isinstance(requested, int) and requested > left:
                raise StripeError(
                    400,
                    f"Refund amount ({_money(requested, charge_obj.currency)}) is greater than "
                    f"unrefunded amount on charge ({_money(left, charge_obj.currency)})",
                    param="amount",
                )
        original_init(
            self,
            charge=charge,
            payment_intent=payment_intent,
            amount=amount,
            metadata=metadata,
            **kwargs,
        )
        self.reason = reason
        if self.payment_intent is None:
            self.payment_intent = Charge._api_retrieve(self.charge).payment_intent

    def api_create(cls: Any, **data: Any) -> Any:
        refund = cls(**data)
        schedule_webhook(Event("charge.refunded", Charge._api_retrieve(refund.charge)))
        return refund

    Refund.__init__ = init
    Refund._api_create = classmethod(api_create)


# --- Connect accounts (recorded) --------------------------------------------------------------


def recorded(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return body


PLACEHOLDER_ACCOUNT = "acct_0000000000000000"
DEFAULT_CURRENCIES = {"US": "usd", "GB": "gbp", "CA": "cad", "AU": "aud", "NZ": "nzd"}
EURO_COUNTRIES = frozenset(
    {"AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR"}
    | {"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PT", "SI", "SK"}
)


CONTROLLER_VALUES: Final = {
    ("fees", "payer"): ("account", "application"),
    ("losses", "payments"): ("application", "stripe"),
    ("stripe_dashboard", "type"): ("express", "full", "none"),
}


def _check_controller(params: dict[str, Any]) -> None:
    """Stripe's rules for ``controller``: never beside the legacy ``type``, known values only,
    and the combinations Stripe allows."""
    controller = params.get("controller")
    if controller is None:
        return
    if "type" in params:
        raise StripeError(
            400,
            "You cannot specify `type` when `controller` is specified.",
            code="parameter_invalid",
            param="type",
        )
    if not isinstance(controller, dict):
        raise StripeError(400, "Invalid hash", code="parameter_invalid", param="controller")
    chosen = _controller(controller)
    for (group, field), allowed in CONTROLLER_VALUES.items():
        if chosen[group][field] not in allowed:
            raise StripeError(
                400,
                f"Invalid {group}[{field}]: must be one of {', '.join(allowed)}",
                code="parameter_invalid",
                param=f"controller[{group}][{field}]",
            )
    if chosen["requirement_collection"] not in ("application", "stripe"):
        raise StripeError(
            400,
            "Invalid requirement_collection: must be one of application or stripe",
            code="parameter_invalid",
            param="controller[requirement_collection]",
        )
    if chosen["losses"]["payments"] == "application" and chosen["fees"]["payer"] != "application":
        raise StripeError(
            400,
            "Setting controller[losses][payments]=application requires "
            "controller[fees][payer]=application.",
            code="parameter_invalid",
            param="controller[fees][payer]",
        )
    if chosen["stripe_dashboard"]["type"] != "none" and (
        chosen["requirement_collection"] == "application"
    ):
        raise StripeError(
            400,
            "Accounts with access to a Stripe-hosted Dashboard must have "
            "controller[requirement_collection]=stripe.",
            code="parameter_invalid",
            param="controller[requirement_collection]",
        )


def _controller(params: dict[str, Any]) -> dict[str, Any]:
    """The account's ``controller``: what was asked, with Stripe's defaults."""

    def value(group: str, field: str, default: str) -> Any:
        section = params.get(group)
        return section.get(field, default) if isinstance(section, dict) else default

    return {
        "fees": {"payer": value("fees", "payer", "account")},
        "is_controller": True,
        "losses": {"payments": value("losses", "payments", "stripe")},
        "requirement_collection": params.get("requirement_collection", "stripe"),
        "stripe_dashboard": {"type": value("stripe_dashboard", "type", "full")},
        "type": "application",
    }


class Account(StripeObject):
    """A Standard connected account: the recorded body, with what the platform sent."""

    object = "account"
    _id_prefix = "acct_"

    def __init__(self, **params: Any) -> None:
        account_id = "acct_" + random_id(16)
        body = json.loads(json.dumps(recorded("account")).replace(PLACEHOLDER_ACCOUNT, account_id))
        _check_controller(params)
        for field in ("type", "email"):
            if isinstance(params.get(field), str):
                body[field] = params[field]
        if isinstance(params.get("controller"), dict):
            body["controller"] = _controller(params["controller"])
        country = params.get("country")
        if isinstance(country, str) and country:
            body["country"] = country.upper()
            body["default_currency"] = DEFAULT_CURRENCIES.get(
                body["country"], "eur" if body["country"] in EURO_COUNTRIES else "usd"
            )
        if isinstance(params.get("metadata"), dict):
            body["metadata"] = {key: str(value) for key, value in params["metadata"].items()}
        if isinstance(params.get("business_profile"), dict):
            body["business_profile"].update(params["business_profile"])
        if isinstance(params.get("capabilities"), dict) and params["capabilities"]:
            body["capabilities"] = dict.fromkeys(params["capabilities"], "inactive")
        # All exceptions must be raised before this point (localstripe's rule: it stores now).
        super().__init__(id=account_id)
        body["created"] = self.created
        self._body = body
        self._onboarding_requirements = copy.deepcopy(body["requirements"])

    @classmethod
    def _api_retrieve(cls, object_id: str) -> Account:
        account = store.get(f"account:{object_id}")
        if not isinstance(account, Account):
            raise StripeError(
                404, f"No such account: '{object_id}'", code="resource_missing", param="account"
            )
        return account

    def _export(self, expand: list[str] | None = None) -> dict[str, Any]:
        return copy.deepcopy(self._body)

    def _set_status(
        self, *, charges_enabled: bool, payouts_enabled: bool, details_submitted: bool
    ) -> dict[str, Any]:
        """Apply onboarding progress; returns the previous values of what changed."""
        before = copy.deepcopy(self._body)
        body = self._body
        body["charges_enabled"] = charges_enabled
        body["payouts_enabled"] = payouts_enabled
        body["details_submitted"] = details_submitted
        # Transfers follow payouts; card payments (and anything else requested) follow charges.
        body["capabilities"] = {
            name: "active"
            if (payouts_enabled if name == "transfers" else charges_enabled)
            else "inactive"
            for name in body["capabilities"]
        }
        requirements = copy.deepcopy(self._onboarding_requirements)
        if details_submitted:
            pending = requirements["currently_due"]
            requirements.update(currently_due=[], eventually_due=[], past_due=[])
            if charges_enabled and payouts_enabled:
                requirements.update(disabled_reason=None, pending_verification=[])
            else:
                requirements.update(
                    disabled_reason="requirements.pending_verification",
                    pending_verification=pending,
                )
        body["requirements"] = requirements
        return {key: value for key, value in before.items() if body.get(key) != value}


async def request_params(request: web.Request) -> dict[str, Any]:
    """A request's parameters as localstripe parses them: form or JSON body, or the query."""
    if request.method == "POST":
        data = await localstripe.get_post_data(request, remove_auth=False)
    else:
        data = localstripe.unflatten_data(request.query)
    return dict(data) if isinstance(data, Mapping) else {}


async def create_account(request: web.Request) -> web.Response:
    params = await request_params(request)
    params.pop("expand", None)
    return json_response(Account(**params)._export())


async def retrieve_account(request: web.Request) -> web.Response:
    return json_response(Account._api_retrieve(request.match_info["id"])._export())


async def create_account_link(request: web.Request) -> web.Response:
    params = await request_params(request)
    for required in ("account", "type"):
        if not isinstance(params.get(required), str) or not params[required]:
            raise StripeError(
                400,
                f"Missing required param: {required}.",
                code="parameter_missing",
                param=required,
            )
    account_id = params["account"]
    if not isinstance(store.get(f"account:{account_id}"), Account):
        raise StripeError(
            400, f"No such account: '{account_id}'", code="resource_missing", param="account"
        )
    if params["type"] not in ("account_onboarding", "account_update"):
        raise StripeError(
            400,
            "Invalid type: must be one of account_onboarding or account_update",
            param="type",
        )
    controller = store.get(f"account:{account_id}")._body["controller"]
    if params["type"] == "account_update" and (
        controller["stripe_dashboard"]["type"] != "none"
        or controller["requirement_collection"] != "application"
    ):
        raise StripeError(
            400,
            "You can create Account Links of type `account_update` only for connected "
            "accounts where your platform is responsible for collecting requirements, and "
            "not for accounts that have access to a Stripe-hosted Dashboard.",
            param="type",
        )
    _check_collection_options(params.get("collection_options"))
    now = int(time.time())
    link = recorded("account_link")
    link.update(
        created=now,
        expires_at=now + 300,
        url=f"https://connect.stripe.com/setup/s/{account_id}/{random_id(12)}",
    )
    return json_response(link)


def _check_collection_options(options: object) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        raise StripeError(400, "Invalid hash", param="collection_options")
    for field, allowed in (
        ("fields", ("currently_due", "eventually_due")),
        ("future_requirements", ("include", "omit")),
    ):
        if field in options and options[field] not in allowed:
            raise StripeError(
                400,
                f"Invalid collection_options[{field}]: must be one of {' or '.join(allowed)}",
                param=f"collection_options[{field}]",
            )


async def control_account(request: web.Request) -> web.Response:
    """``POST /_config/accounts/{id}``: move an account through onboarding, as Stripe would."""
    account = Account._api_retrieve(request.match_info["id"])
    params = await request_params(request)
    status: dict[str, bool] = {}
    for flag in ("charges_enabled", "payouts_enabled", "details_submitted"):
        value = try_convert_to_bool(params.get(flag, account._body[flag]))
        if not isinstance(value, bool):
            raise StripeError(400, f"Invalid boolean: {flag}", param=flag)
        status[flag] = value
    if try_convert_to_bool(params.get("deauthorize", False)) is True:
        return _deauthorize(account)
    previous = account._set_status(**status)
    token = current.set(RequestContext(account=account.id))
    try:
        event = Event("account.updated", account)
    finally:
        current.reset(token)
    event.data["previous_attributes"] = previous
    schedule_webhook(event)
    return json_response(account._export())


class Application(StripeObject):
    """The platform's Connect application, as ``account.application.deauthorized`` names it."""

    object = "application"
    _id_prefix = "ca_"

    def __init__(self) -> None:
        super().__init__()
        self.name = "Amply"


def _deauthorize(account: Account) -> web.Response:
    """The account's owner disconnects the platform: Stripe sends
    ``account.application.deauthorized`` (``account`` set, the application as its object), and
    from then on refuses the platform's requests on that account."""
    deauthorized.add(account.id)
    token = current.set(RequestContext(account=account.id))
    try:
        schedule_webhook(Event("account.application.deauthorized", Application()))
    finally:
        current.reset(token)
    return json_response(account._export())


deauthorized: set[str] = set()


def refused_account(account: str | None) -> web.Response | None:
    """Stripe's answer to a request on an account that disconnected the platform."""
    if account is None or account not in deauthorized:
        return None
    return error_response(
        403,
        f"The provided key does not have access to account '{account}' (or that account does "
        "not exist). Application access may have been revoked.",
        code="account_invalid",
    )


# --- Webhook delivery -------------------------------------------------------------------------


@dataclasses.dataclass
class Delivery:
    delay: float
    generation: int = 0  # bumped when webhooks are dropped: queued events then go nowhere
    queue: asyncio.Queue[tuple[int, float, Any]] | None = None
    session: aiohttp.ClientSession | None = None
    worker: asyncio.Task[None] | None = None


delivery = Delivery(delay=0.05)


def schedule_webhook(event: Any) -> None:
    """Replaces localstripe's: queue the event, to be sent in order after ``delivery.delay``."""
    assert delivery.queue is not None, "the server is not running"
    delivery.queue.put_nowait((delivery.generation, time.monotonic() + delivery.delay, event))


async def _deliver(event: Any) -> None:
    assert delivery.session is not None
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode()
    for name, hook in list(webhooks._webhooks.items()):
        if hook.events is not None and event.type not in hook.events:
            continue
        timestamp = int(time.time())
        signed = b"%d.%s" % (timestamp, payload)
        signature = hmac.new(hook.secret.encode(), signed, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": f"t={timestamp},v1={signature}",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        }
        try:
            async with delivery.session.post(hook.url, data=payload, headers=headers) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("webhook %s %s to %s failed: %r", event.id, event.type, name, error)
        else:
            log.info("webhook %s %s to %s: %d", event.id, event.type, name, response.status)


async def _deliver_forever() -> None:
    assert delivery.queue is not None
    while True:
        generation, due, event = await delivery.queue.get()
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if generation != delivery.generation:
            continue
        try:
            await _deliver(event)
        except Exception:
            log.exception("webhook %s could not be delivered", event.id)


async def _start_delivery(app: web.Application) -> None:
    delivery.queue = asyncio.Queue()
    delivery.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=30),
    )
    delivery.worker = asyncio.create_task(_deliver_forever())


async def _stop_delivery(app: web.Application) -> None:
    if delivery.worker is not None:
        delivery.worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivery.worker
    if delivery.session is not None:
        await delivery.session.close()


# --- Request log, idempotency and Stripe's envelope -------------------------------------------


@dataclasses.dataclass
class Saved:
    """What Stripe keeps for an idempotency key; ``status`` is None while the first executes."""

    fingerprint: str
    request_id: str
    status: int | None = None
    body: bytes = b""


request_log: list[dict[str, Any]] = []
idempotency: dict[tuple[str | None, str], Saved] = {}


async def _run(handler: Handler, request: web.Request) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            return error_response(
                404,
                f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            )
        return error_response(exc.status, exc.reason)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        response = error_response(500, "An unknown error occurred", error_type="api_error")
        response.headers["Stripe-Should-Retry"] = "false"
        return response


async def _run_idempotently(
    handler: Handler, request: web.Request, context: RequestContext, params: dict[str, Any]
) -> web.StreamResponse:
    assert context.idempotency_key is not None
    assert context.request_id is not None
    key = (context.account, context.idempotency_key)
    fingerprint = json.dumps([request.method, request.path, params], sort_keys=True, default=str)
    saved = idempotency.get(key)
    if saved is not None and saved.fingerprint != fingerprint:
        return error_response(
            400,
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{context.idempotency_key}' if you "
            "meant to execute a different request.",
            error_type="idempotency_error",
        )
    if saved is not None and saved.status is None:
        return error_response(
            409,
            "There is currently another in-progress request using this Idempotent Key (that "
            "probably means you submitted twice, and the other request is still going "
            f"through): '{context.idempotency_key}'. Please try again later.",
            code="idempotency_key_in_use",
        )
    if saved is not None:
        return web.Response(
            body=saved.body,
            status=saved.status,
            content_type="application/json",
            headers={"Idempotent-Replayed": "true", "Original-Request": saved.request_id},
        )
    idempotency[key] = pending = Saved(fingerprint, context.request_id)
    try:
        response = await _run(handler, request)
    except BaseException:
        idempotency.pop(key, None)
        raise
    if (
        response.status not in UNSAVED_STATUSES
        and isinstance(response, web.Response)
        and isinstance(response.body, bytes)
    ):
        pending.status, pending.body = response.status, response.body
    else:
        idempotency.pop(key, None)
    return response


@web.middleware
async def stripe_protocol(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: request log, context for events, idempotency, Stripe headers."""
    if request.method == "DELETE" and request.path == "/_config/data":
        idempotency.clear()
        deauthorized.clear()
    if not request.path.startswith("/v1/"):
        return await handler(request)
    params = await request_params(request)
    request_log.append(
        {
            "method": request.method,
            "path": request.path,
            "headers": {name.lower(): value for name, value in request.headers.items()},
            "params": params,
        }
    )
    context = RequestContext(
        account=request.headers.get("Stripe-Account") or None,
        request_id="req_" + random_id(14),
        idempotency_key=request.headers.get("Idempotency-Key") or None,
    )
    current.set(context)
    refused = refused_account(context.account) or refused_params(
        request.method, request.path, params
    )
    if refused is not None:
        return refused
    if request.method == "POST" and context.idempotency_key:
        response = await _run_idempotently(handler, request, context, params)
        response.headers["Idempotency-Key"] = context.idempotency_key
    else:
        response = await _run(handler, request)
    assert context.request_id is not None
    response.headers["Request-Id"] = context.request_id
    response.headers["Stripe-Version"] = API_VERSION
    return response


# Removed in 2026-09-30.endive: "Passing payment_method_types on this API version returns a 400
# error with the code payment_method_types_no_longer_supported" (Stripe's changelog).
_NO_LONGER_SUPPORTED: Final = {"payment_method_types": "payment_method_types_no_longer_supported"}
# "allowed_payment_method_types ... is mutually exclusive with payment_method_types,
# excluded_payment_method_types, automatic_payment_methods, and payment_method_configuration"
# (2026-07-29.dahlia changelog).
_EXCLUSIVE_WITH_ALLOWED: Final = (
    "excluded_payment_method_types",
    "automatic_payment_methods",
    "payment_method_configuration",
)


def refused_params(method: str, path: str, params: dict[str, Any]) -> web.Response | None:
    """Stripe's 400 for a parameter the pinned API version does not accept (the stripe
    library's own parameter types say which), before anything runs or is saved."""
    typed = params_type(method, path)
    if typed is None:
        return None
    for name in unknown_params(params, typed):
        code = _NO_LONGER_SUPPORTED.get(name, "parameter_unknown")
        return error_response(
            400,
            f"Received unknown parameter: {name}",
            code=code,
            param=name,
            error_type="invalid_request_error",
        )
    if "allowed_payment_method_types" in params:
        for name in _EXCLUSIVE_WITH_ALLOWED:
            if name in params:
                return error_response(
                    400,
                    f"You cannot pass both allowed_payment_method_types and {name}.",
                    code="parameter_invalid",
                    param=name,
                )
    return None


async def get_requests(request: web.Request) -> web.Response:
    return json_response(request_log)


async def clear_requests(request: web.Request) -> web.Response:
    request_log.clear()
    return web.Response()


async def clear_webhooks(request: web.Request) -> web.Response:
    webhooks._webhooks.clear()
    delivery.generation += 1
    return web.Response()


@dataclasses.dataclass
class Latency:
    """How long matching ``/v1`` requests wait before they run (``POST /_config/latency``)."""

    seconds: float = 0.0
    path_prefix: str = "/v1/"
    after: bool = False  # wait after running the request (its events go out first)


latency = Latency()


@web.middleware
async def slow_stripe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A slow Stripe: matching ``/v1`` requests are logged at once, then wait ``latency``
    before they run (inside the idempotency middleware, so a retry waits too), or, with
    ``after``, run at once and wait before answering (their events are delivered first)."""
    slow = latency.seconds > 0 and request.path.startswith(latency.path_prefix)
    if slow and not latency.after:
        await asyncio.sleep(latency.seconds)
    response = await handler(request)
    if slow and latency.after:
        await asyncio.sleep(latency.seconds)
    return response


async def set_latency(request: web.Request) -> web.Response:
    """``POST /_config/latency`` ``{"seconds": 3, "path_prefix": "/v1/refunds"}``: delay the
    ``/v1`` requests whose path starts with the prefix (all of them when omitted); 0 ends it.
    With ``"after": true`` the request runs first and its answer is delayed."""
    body = await request.json()
    seconds, prefix = body.get("seconds", 0), body.get("path_prefix") or "/v1/"
    latency.after = body.get("after") is True
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        return error_response(400, "seconds must be a number >= 0", code="parameter_invalid")
    if not isinstance(prefix, str) or not prefix.startswith("/v1/"):
        return error_response(400, "path_prefix must start with /v1/", code="parameter_invalid")
    latency.seconds, latency.path_prefix = float(seconds), prefix
    return json_response(
        {"seconds": latency.seconds, "path_prefix": latency.path_prefix, "after": latency.after}
    )


# --- Assembly and main ------------------------------------------------------------------------


def build_app(*, webhook_delay: float = 0.05) -> web.Application:
    """Patch localstripe and return its app with the extensions' routes. Call once."""
    _patch_store()
    _patch_ownership()
    _patch_events()
    _patch_payment_intents()
    _patch_setup_intents()
    _patch_charges()
    _patch_balance_transactions()
    _patch_refunds()
    delivery.delay = webhook_delay

    app: web.Application = localstripe.app
    app.middlewares.insert(0, stripe_protocol)
    app.middlewares.insert(1, slow_stripe)
    app.router.add_post("/v1/accounts", create_account)
    app.router.add_get("/v1/accounts/{id}", retrieve_account)
    app.router.add_post("/v1/account_links", create_account_link)
    app.router.add_post("/_config/accounts/{id}", control_account)
    app.router.add_get("/_config/requests", get_requests)
    app.router.add_delete("/_config/requests", clear_requests)
    app.router.add_delete("/_config/webhooks", clear_webhooks)
    app.router.add_post("/_config/latency", set_latency)
    stripe_payouts.install(app, server=sys.modules[__name__])
    stripe_disputes.register(app, host=sys.modules[__name__])
    stripe_js.install(app)
    app.on_startup.append(_start_delivery)
    app.on_cleanup.append(_stop_delivery)
    return app


async def _watch_parent(stop: asyncio.Event) -> None:
    """Stop if the process that started us goes away, so a killed test run leaks nothing."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            break
    log.warning("parent process %d went away; stopping", parent)
    stop.set()


async def serve(port: int, webhook_delay: float) -> None:
    runner = web.AppRunner(build_app(webhook_delay=webhook_delay), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    await web.SockSite(runner, sock).start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(_watch_parent(stop))

    print(f"LISTENING {sock.getsockname()[1]}", flush=True)
    sys.stdout = sys.stderr  # the LISTENING line is the only thing on stdout
    try:
        await stop.wait()
    finally:
        watcher.cancel()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--webhook-delay", type=float, default=0.05, help="seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="stripe-server %(levelname)s %(message)s"
    )
    asyncio.run(serve(args.port, args.webhook_delay))


if __name__ == "__main__":
    main()
