"""Disputes for the Stripe test server (``tests/support/stripe_server.py``), as Stripe makes them.

What is emulated, from Stripe's docs (disputes, dispute fees, balance transactions, the
``charge.dispute.*`` events):

- ``POST /_config/charges/{id}/dispute`` (``amount``: default the charge's; ``inquiry``;
  ``reason``): the cardholder disputes the charge. Refused (400 ``charge_already_refunded``)
  if the charge is fully refunded, or already disputed. An inquiry
  (``warning_needs_response``) moves nothing: ``charge.dispute.created`` only. A dispute
  (``needs_response``) makes a balance transaction of type ``adjustment``, reporting category
  ``dispute``, amount ``-amount``, fee ``DISPUTE_FEE`` (the "dispute received" fee, never
  returned since 2025-06-17): ``charge.dispute.created`` then ``charge.dispute.funds_withdrawn``.
  The charge becomes ``disputed: true``. The amount may exceed the charge (Stripe's dispute
  amount follows the cardholder's currency).
- ``POST /_config/disputes/{id}/counter``: evidence submitted. For a dispute, Stripe's
  "dispute countered" fee is one more ``dispute`` balance transaction of amount 0 and fee
  ``COUNTER_FEE``; the status becomes ``under_review`` (an inquiry's
  ``warning_under_review``, at no cost): ``charge.dispute.updated``.
- ``POST /_config/disputes/{id}/close`` (``outcome``: ``won`` or ``lost``): a won dispute
  gets a ``dispute_reversal`` balance transaction of ``+amount`` whose fee is ``-COUNTER_FEE``
  if it was countered (the countered fee is returned, the received fee is not), then
  ``charge.dispute.funds_reinstated`` and ``charge.dispute.closed``. A lost dispute of a
  charge that was partly refunded reinstates the refunded amount (Stripe's "partially won":
  ``+amount_refunded``, ``charge.dispute.funds_reinstated``), then ``charge.dispute.closed``
  with status ``lost``. An inquiry closes as ``warning_closed``.
- Every dispute event carries the dispute with all its balance transactions expanded
  (``balance_transactions``), ``charge``, ``payment_intent``, ``status``, ``amount``,
  ``currency``, ``reason`` and ``is_charge_refundable``, on the charge's account (the events'
  ``account``). The balance transactions belong to that account, so ``GET
  /v1/balance_transactions`` with its ``Stripe-Account`` lists them (``source``: the dispute).
- Refunds of a charge with an open or lost dispute are refused with 400 ``charge_disputed``;
  a refund of a charge under inquiry succeeds and closes the inquiry (``warning_closed``,
  ``charge.dispute.closed``).
- ``GET /v1/disputes/{id}`` retrieves a dispute (on its account only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Final

from aiohttp import web
from localstripe.resources import (
    BalanceTransaction,
    Charge,
    Event,
    Refund,
    StripeObject,
    store,
    try_convert_to_bool,
    try_convert_to_int,
)

DISPUTE_FEE: Final = 1500  # Stripe's "dispute received" fee (USD 15.00)
COUNTER_FEE: Final = 1500  # Stripe's "dispute countered" fee (USD 15.00)
OPEN_INQUIRY: Final = ("warning_needs_response", "warning_under_review")

# The running server's module (``tests.support.stripe_server``, or ``__main__`` when it runs
# as ``python -m``): its request context, errors and webhook queue. Set by :func:`register`.
server: ModuleType


class Dispute(StripeObject):
    object = "dispute"
    _id_prefix = "dp_"

    def __init__(self, charge: Any, *, amount: int, inquiry: bool, reason: str) -> None:
        super().__init__()
        self.amount = amount
        self.currency = charge.currency
        self.charge = charge.id
        self.payment_intent = charge.payment_intent
        self.reason = reason
        self.status = "warning_needs_response" if inquiry else "needs_response"
        self.balance_transactions: list[Any] = []
        self.metadata: dict[str, str] = {}
        self._inquiry = inquiry
        self._countered = False

    @property
    def is_charge_refundable(self) -> bool:
        charge = store.get(f"charge:{self.charge}")
        left = charge is not None and charge.amount_refunded < charge.amount
        return bool(left and (self._inquiry or self.status == "won"))

    def _export(self, expand: list[str] | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = super()._export(expand=expand)
        obj["balance_transactions"] = [move._export() for move in self.balance_transactions]
        obj["is_charge_refundable"] = self.is_charge_refundable
        return obj


def _move(dispute: Dispute, *, amount: int, fee: int, category: str) -> Any:
    """A balance transaction of the dispute, owned by the dispute's account (the current
    context's): localstripe's constructor knows only charges and refunds, so it is built
    directly."""
    move = BalanceTransaction.__new__(BalanceTransaction)
    StripeObject.__init__(move)
    move.amount = amount
    move.available_on = move.created
    move.currency = dispute.currency
    move.description = "Chargeback withdrawal" if amount < 0 else "Chargeback reversal"
    move.exchange_rate = None
    move.fee = fee
    move.fee_details = (
        [
            {
                "amount": fee,
                "application": None,
                "currency": dispute.currency,
                "description": "Dispute fee",
                "type": "stripe_fee",
            }
        ]
        if fee
        else []
    )
    move.reporting_category = category
    move.source = dispute.id
    move.status = "available"
    move.type = "adjustment"
    move.balance_type = "payments"
    dispute.balance_transactions.append(move)
    return move


def _emit(dispute: Dispute, *types: str) -> None:
    for event_type in types:
        server.schedule_webhook(Event(event_type, dispute))


@contextlib.contextmanager
def _on_account(obj: Any) -> Iterator[None]:
    """Act as the object's account: what is created belongs to it, events name it, and what
    it owns (the charge's refunds) is visible."""
    token = server.current.set(server.RequestContext(account=getattr(obj, "_account", None)))
    try:
        yield
    finally:
        server.current.reset(token)


def _charge(charge_id: str) -> Any:
    charge = store.get(f"charge:{charge_id}")
    if not isinstance(charge, Charge):
        raise server.StripeError(404, f"No such charge: '{charge_id}'", code="resource_missing")
    return charge


def _dispute(dispute_id: str) -> Dispute:
    dispute = store.get(f"dispute:{dispute_id}")
    if not isinstance(dispute, Dispute):
        raise server.StripeError(404, f"No such dispute: '{dispute_id}'", code="resource_missing")
    return dispute


def disputes_of(charge_id: str) -> list[Dispute]:
    return [
        obj
        for key, obj in list(store.items())
        if key.startswith("dispute:") and isinstance(obj, Dispute) and obj.charge == charge_id
    ]


async def open_dispute(request: web.Request) -> web.Response:
    """``POST /_config/charges/{id}/dispute``."""
    charge = _charge(request.match_info["id"])
    params = await server.request_params(request)
    amount = try_convert_to_int(params.get("amount", charge.amount))
    inquiry = try_convert_to_bool(params.get("inquiry", False))
    reason = params.get("reason", "fraudulent")
    if not isinstance(amount, int) or amount <= 0:
        raise server.StripeError(400, "Invalid amount", param="amount")
    if not isinstance(inquiry, bool) or not isinstance(reason, str):
        raise server.StripeError(400, "Invalid inquiry or reason", param="inquiry")
    with _on_account(charge):
        if charge.amount_refunded >= charge.amount:
            raise server.StripeError(
                400,
                f"Charge {charge.id} has been fully refunded: it cannot be disputed.",
                code="charge_already_refunded",
            )
        if disputes_of(charge.id):
            raise server.StripeError(400, f"Charge {charge.id} is disputed already.")
        dispute = Dispute(charge, amount=amount, inquiry=inquiry, reason=reason)
        if inquiry:
            _emit(dispute, "charge.dispute.created")
        else:
            charge.disputed = True
            _move(dispute, amount=-amount, fee=DISPUTE_FEE, category="dispute")
            _emit(dispute, "charge.dispute.created", "charge.dispute.funds_withdrawn")
        return server.json_response(dispute._export())


async def counter_dispute(request: web.Request) -> web.Response:
    """``POST /_config/disputes/{id}/counter``: evidence submitted."""
    dispute = _dispute(request.match_info["id"])
    if dispute.status not in ("needs_response", "warning_needs_response"):
        raise server.StripeError(400, f"Dispute {dispute.id} is {dispute.status}.")
    with _on_account(dispute):
        if dispute._inquiry:
            dispute.status = "warning_under_review"
        else:
            dispute._countered = True
            dispute.status = "under_review"
            _move(dispute, amount=0, fee=COUNTER_FEE, category="dispute")
        _emit(dispute, "charge.dispute.updated")
        return server.json_response(dispute._export())


async def close_dispute(request: web.Request) -> web.Response:
    """``POST /_config/disputes/{id}/close`` with ``outcome`` ``won`` or ``lost``."""
    dispute = _dispute(request.match_info["id"])
    params = await server.request_params(request)
    outcome = params.get("outcome")
    if outcome not in ("won", "lost"):
        raise server.StripeError(400, "Invalid outcome: won or lost", param="outcome")
    if dispute.status in ("won", "lost", "warning_closed"):
        raise server.StripeError(400, f"Dispute {dispute.id} is closed already.")
    charge = _charge(dispute.charge)
    with _on_account(dispute):
        if dispute._inquiry:
            dispute.status = "warning_closed"
            _emit(dispute, "charge.dispute.closed")
        elif outcome == "won":
            dispute.status = "won"
            returned = -COUNTER_FEE if dispute._countered else 0
            _move(dispute, amount=dispute.amount, fee=returned, category="dispute_reversal")
            _emit(dispute, "charge.dispute.funds_reinstated", "charge.dispute.closed")
        else:
            dispute.status = "lost"
            if charge.amount_refunded > 0:
                # "Partially won": Stripe returns what the merchant had refunded already.
                _move(dispute, amount=charge.amount_refunded, fee=0, category="dispute_reversal")
                _emit(dispute, "charge.dispute.funds_reinstated")
            _emit(dispute, "charge.dispute.closed")
        return server.json_response(dispute._export())


async def retrieve_dispute(request: web.Request) -> web.Response:
    """``GET /v1/disputes/{id}``, on the dispute's account only."""
    return server.json_response(Dispute._api_retrieve(request.match_info["id"])._export())


def _refused_refund(charge: Any) -> None:
    for dispute in disputes_of(charge.id):
        if not dispute._inquiry and dispute.status != "won":
            raise server.StripeError(
                400,
                f"Charge {charge.id} has been charged back; cannot issue a refund.",
                code="charge_disputed",
            )


def _patch_refunds() -> None:
    """Refunds of a disputed charge are refused; a refund closes an open inquiry."""
    original_init = Refund.__init__
    original_create = Refund.__dict__["_api_create"].__func__

    def init(self: Any, charge: Any = None, payment_intent: Any = None, **kwargs: Any) -> None:
        charge_obj = server._charge_to_refund(charge, payment_intent)
        if charge_obj is not None:
            _refused_refund(charge_obj)
        original_init(self, charge=charge, payment_intent=payment_intent, **kwargs)

    def api_create(cls: Any, **data: Any) -> Any:
        refund = original_create(cls, **data)
        for dispute in disputes_of(refund.charge):
            if dispute.status in OPEN_INQUIRY:
                dispute.status = "warning_closed"
                _emit(dispute, "charge.dispute.closed")
        return refund

    Refund.__init__ = init
    Refund._api_create = classmethod(api_create)


def register(app: web.Application, *, host: ModuleType) -> None:
    """Install the dispute emulation: the refund patch and the routes. Call once, from
    ``host``'s ``build_app`` (the server module as it runs), after its own refund patch."""
    global server
    server = host
    _patch_refunds()
    app.router.add_post("/_config/charges/{id}/dispute", open_dispute)
    app.router.add_post("/_config/disputes/{id}/counter", counter_dispute)
    app.router.add_post("/_config/disputes/{id}/close", close_dispute)
    app.router.add_get("/v1/disputes/{id}", retrieve_dispute)
