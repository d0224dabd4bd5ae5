"""Payouts of connected accounts and the balance transactions list, for the Stripe test server.

Registered by ``tests/support/stripe_server.py`` (:func:`install`). What it adds to
localstripe, after Stripe's API reference (Payouts; Balance Transactions; "Payouts for
connected accounts"):

- ``POST /_config/accounts/{id}/payouts`` (``amount``, optional ``currency``, ``outcome``:
  ``paid`` (default), ``failed`` or ``pending``; ``fail: true`` is ``outcome=failed``): the
  account's automatic payout. As at Stripe, the payout's balance transaction (type
  ``payout``, ``-amount``, source the payout) is made when the payout is created, and
  ``payout.created`` is sent; then ``payout.paid``, or ``payout.failed`` with a second
  balance transaction (type ``payout_failure``, ``+amount``) that returns the money. Both
  belong to the account (``Stripe-Account`` scoping applies) and every event carries
  ``account``. A payout larger than the account's balance in that currency is refused (400
  ``balance_insufficient``). ``POST /_config/accounts/{id}/payouts/{payout}/fail`` fails a
  payout later (one that was paid may still fail, as at Stripe).
- ``GET /v1/balance_transactions`` (localstripe's list) also takes Stripe's ``type``,
  ``source``, ``payout`` and ``currency`` filters, and ``expand[]=data.source`` expands each
  source it knows (charge, refund, payout; a source it does not know stays an id rather
  than failing the list). Pagination is localstripe's: ``limit``, ``starting_after``,
  ``has_more``, newest first.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from aiohttp import web
from localstripe.resources import (
    BalanceTransaction,
    Charge,
    Event,
    List,
    Payout,
    Refund,
    StripeObject,
    random_id,
    store,
    try_convert_to_bool,
    try_convert_to_int,
)

PAYOUT_OUTCOMES = ("paid", "failed", "pending")
# The running server's module (``__main__`` when run with ``-m``: importing it by name would
# make a second copy, with its own request context and webhook queue).
_installed: list[ModuleType] = []


def _server() -> Any:
    return _installed[0]


def _balance_transaction(
    *, amount: int, currency: str, type_: str, source: str, category: str, description: str
) -> Any:
    """A balance transaction of the current request's account (localstripe's own constructor
    knows only charges and refunds)."""
    txn: Any = BalanceTransaction.__new__(BalanceTransaction)
    StripeObject.__init__(txn)  # an id, ``created``, the store and the owning account
    txn.amount = amount
    txn.available_on = txn.created
    txn.currency = currency
    txn.description = description
    txn.exchange_rate = None
    txn.fee = 0
    txn.fee_details = []
    txn.reporting_category = category
    txn.source = source
    txn.status = "available"
    txn.type = type_
    txn.balance_type = "payments"
    return txn


def _owned(account: str) -> list[Any]:
    return [
        obj
        for key, obj in list(store.items())
        if key.startswith("balance_transaction:") and getattr(obj, "_account", None) == account
    ]


def balance(account: str, currency: str) -> int:
    """The account's balance in ``currency``: the sum of its balance transactions' net."""
    return sum(txn.amount - txn.fee for txn in _owned(account) if txn.currency == currency)


def _new_payout(*, amount: int, currency: str) -> Any:
    payout: Any = Payout.__new__(Payout)
    StripeObject.__init__(payout)
    payout.amount = amount
    payout.currency = currency
    payout.description = "STRIPE PAYOUT"
    payout.destination = f"ba_{random_id(24)}"
    payout.metadata = {}
    payout.method = "standard"
    payout.source_type = "card"
    payout.statement_descriptor = ""
    payout.arrival_date = int(time.time()) + 2 * 24 * 3600
    payout.automatic = True
    payout.failure_balance_transaction = None
    payout.failure_code = None
    payout.failure_message = None
    payout.original_payout = None
    payout.reversed_by = None
    payout.status = "pending"
    payout.type = "bank_account"
    txn = _balance_transaction(
        amount=-amount,
        currency=currency,
        type_="payout",
        source=payout.id,
        category="payout",
        description="STRIPE PAYOUT",
    )
    payout.balance_transaction = txn.id
    return payout


def _fail(payout: Any) -> None:
    txn = _balance_transaction(
        amount=payout.amount,
        currency=payout.currency,
        type_="payout_failure",
        source=payout.id,
        category="payout_reversal",
        description="Payout failure",
    )
    payout.status = "failed"
    payout.failure_balance_transaction = txn.id
    payout.failure_code = "account_closed"
    payout.failure_message = "The bank account has been closed."


async def control_payout(request: web.Request) -> web.Response:
    """``POST /_config/accounts/{id}/payouts``: the account pays its balance out."""
    server = _server()
    account = server.Account._api_retrieve(request.match_info["id"])
    params = await server.request_params(request)
    amount = try_convert_to_int(params.get("amount"))
    currency = str(params.get("currency") or account._body.get("default_currency") or "usd")
    outcome = str(params.get("outcome") or "paid")
    if try_convert_to_bool(params.get("fail", False)) is True:
        outcome = "failed"
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise server.StripeError(400, "Invalid positive integer", param="amount")
    if outcome not in PAYOUT_OUTCOMES:
        raise server.StripeError(400, "Invalid outcome", param="outcome")
    token = server.current.set(server.RequestContext(account=account.id))
    try:
        available = balance(account.id, currency)
        if amount > available:
            raise server.StripeError(
                400,
                "You have insufficient funds in your Stripe account for this transfer.",
                code="balance_insufficient",
                param="amount",
            )
        payout = _new_payout(amount=amount, currency=currency)
        server.schedule_webhook(Event("payout.created", payout))
        if outcome == "paid":
            payout.status = "paid"
            server.schedule_webhook(Event("payout.paid", payout))
        elif outcome == "failed":
            _fail(payout)
            server.schedule_webhook(Event("payout.failed", payout))
    finally:
        server.current.reset(token)
    return server.json_response(payout._export())


async def control_payout_failure(request: web.Request) -> web.Response:
    """``POST /_config/accounts/{id}/payouts/{payout}/fail``: a payout fails, even a paid one."""
    server = _server()
    account = server.Account._api_retrieve(request.match_info["id"])
    token = server.current.set(server.RequestContext(account=account.id))
    try:
        payout = Payout._api_retrieve(request.match_info["payout"])
        if payout.status == "failed":
            raise server.StripeError(400, "The payout has failed already.", param="payout")
        _fail(payout)
        server.schedule_webhook(Event("payout.failed", payout))
    finally:
        server.current.reset(token)
    return server.json_response(payout._export())


class _BalanceTransactions(List):  # type: ignore[misc]
    """localstripe's list, exporting ``data.source`` expanded where the source is known."""

    def _export(self, expand: list[str] | None = None) -> dict[str, Any]:
        wanted = [path for path in expand or [] if path != "data.source"]
        obj: dict[str, Any] = super()._export(expand=wanted)
        if "data.source" in (expand or []):
            for item in obj["data"]:
                item["source"] = _expanded_source(item.get("source"))
        return obj


def _expanded_source(source: Any) -> Any:
    if not isinstance(source, str):
        return source
    for cls in (Charge, Refund, Payout):
        if source.startswith(cls._id_prefix):
            found = store.get(f"{cls.object}:{source}")
            return found._export() if found is not None else source
    return source  # a source this server does not model (a dispute, say): its id


def _patch_list() -> None:
    def api_list_all(
        cls: Any,
        url: str,
        limit: Any = None,
        starting_after: Any = None,
        type: Any = None,  # noqa: A002 - Stripe's parameter
        source: Any = None,
        payout: Any = None,
        currency: Any = None,
        **kwargs: Any,
    ) -> Any:
        listed = StripeObject._api_list_all.__func__(cls, url, limit, starting_after, **kwargs)
        page = _BalanceTransactions(url, limit=limit, starting_after=starting_after)
        items = [
            txn
            for txn in listed._list
            if (type is None or txn.type == type)
            and (source is None or txn.source == source)
            and (currency is None or txn.currency == currency)
            and (payout is None or txn.source == payout)
        ]
        items.sort(key=lambda txn: txn.created, reverse=True)
        page._list = items
        return page

    BalanceTransaction._api_list_all = classmethod(api_list_all)


def install(app: web.Application, *, server: ModuleType) -> None:
    """Patch the balance transactions list and add the payout control routes to ``server``'s
    app (the ``stripe_server`` module that is running)."""
    _installed[:] = [server]
    _patch_list()
    app.router.add_post("/_config/accounts/{id}/payouts", control_payout)
    app.router.add_post("/_config/accounts/{id}/payouts/{payout}/fail", control_payout_failure)
