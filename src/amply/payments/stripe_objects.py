"""Stripe's objects as Amply reads them: parsed once, at the boundary, into typed values.

They come from two places: the JSON of an event (the signed webhook's body, or an event the
sandbox makes in Stripe's shape), read by each value's ``parse``; and the library's own typed
objects (``stripe.PaymentIntent``, ``stripe.Account``, ``stripe.SetupIntent``,
``stripe.PaymentMethod.Card``) that the gateway's calls return, read by ``from_stripe``.
Either way the fields Amply relies on are checked here, once: a field present with the wrong
type, or missing where Stripe always sends it, is :class:`MalformedStripeObject` (400, so the
event is neither applied nor stored, and Stripe delivers it again). A reference Stripe may
expand (``"ch_1"`` or ``{"id": "ch_1", …}``) is read either way. The donations and wallets
code sees only these values, never Stripe's JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypeAlias

import stripe

from amply.kit.errors import AmplyError

# An object of Stripe's JSON, not yet read (an event's ``data.object``, or the event itself).
JSONObject: TypeAlias = Mapping[str, object]
# Any JSON document, before it is known to be an object.
JSONDocument: TypeAlias = object

DISPUTE_ID: Final = re.compile(r"^(dp|du)_[0-9A-Za-z_]{1,64}$")
_EVENT_ID_MAX: Final = 104
_EVENT_TYPE_MAX: Final = 100


class MalformedStripeObject(AmplyError):
    """A Stripe object lacks a field Stripe always sends, or has one of the wrong type."""

    status_code = 400
    default_code = "webhook_payload_invalid"


def reference(value: object) -> str | None:
    """A Stripe reference, expanded (an object with an id) or not (the id itself)."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def _expandable(
    value: str | stripe.Charge | stripe.Customer | stripe.PaymentMethod | None,
) -> str | None:
    """A reference in one of the library's objects, expanded or not."""
    if value is None or isinstance(value, str):
        return value
    return value.id


def _json_object(value: object) -> JSONObject | None:
    return value if isinstance(value, dict) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _metadata(obj: JSONObject, key: str) -> str | None:
    """A value Amply wrote in an object's ``metadata``."""
    metadata = _json_object(obj.get("metadata"))
    return _text(metadata.get(key)) if metadata is not None else None


def _amount(obj: JSONObject, key: str, *, what: str) -> int | None:
    """An amount in minor units (signed), or None when Stripe sent none."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedStripeObject(f"The {what}'s `{key}` is not an amount in minor units.")
    return value


def _count(value: object) -> int:
    """A non-negative amount in minor units (none is 0)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedStripeObject("An amount in the event is not a count of minor units.")
    return value


def _currency(obj: JSONObject, *, what: str) -> str | None:
    """A currency as Stripe writes it (lower case), or None when Stripe sent none."""
    value = obj.get("currency")
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedStripeObject(f"The {what}'s `currency` is not a currency code.")
    return value


# --- The event ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """An event's envelope, checked for the fields every handler relies on. ``object`` is its
    ``data.object``, which each handler parses into the value it is about; ``payload`` is the
    whole event, stored as Stripe sent it."""

    id: str
    type: str
    account: str | None
    livemode: bool
    created: int
    object: JSONObject
    payload: JSONObject

    @classmethod
    def parse(cls, payload: JSONDocument) -> StripeEvent:
        if not isinstance(payload, dict):
            raise _lacks("an object")
        event_id, event_type = payload.get("id"), payload.get("type")
        created, data = payload.get("created"), payload.get("data")
        if not (
            isinstance(event_id, str)
            and event_id.startswith("evt_")
            and len(event_id) <= _EVENT_ID_MAX
        ):
            raise _lacks("an `id` starting evt_")
        if not (isinstance(event_type, str) and 0 < len(event_type) <= _EVENT_TYPE_MAX):
            raise _lacks("a `type`")
        if isinstance(created, bool) or not isinstance(created, int) or created < 0:
            raise _lacks("a `created` timestamp")
        obj = _json_object(data.get("object")) if isinstance(data, dict) else None
        if obj is None:
            raise _lacks("a `data.object`")
        account = payload.get("account")
        if account is not None and not isinstance(account, str):
            raise _lacks("a string `account`")
        return cls(
            id=event_id,
            type=event_type,
            account=account,
            livemode=bool(payload.get("livemode")),
            created=created,
            object=obj,
            payload=payload,
        )

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, UTC)


def _lacks(what: str) -> MalformedStripeObject:
    return MalformedStripeObject(f"The event lacks {what}.")


# --- Payments: PaymentIntents, charges, refunds ------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentIntentState:
    """What a PaymentIntent says about a payment (amounts in minor units, the currency as
    Stripe writes it), and what Amply wrote in its metadata."""

    id: str | None
    status: str | None
    amount: int | None
    amount_received: int | None
    currency: str | None
    latest_charge_id: str | None = None
    customer_id: str | None = None
    payment_method_id: str | None = None
    deposit_id: str | None = None  # metadata ``amply_deposit``: the deposit it pays
    wallet_id: str | None = None  # metadata ``wallet_id``: the wallet whose deposit it pays
    failure_code: str | None = None  # from ``last_payment_error``
    failure_message: str | None = None

    @property
    def paid(self) -> int | None:
        """What was paid: ``amount_received`` when Stripe tells it, else ``amount``."""
        return self.amount_received if self.amount_received is not None else self.amount

    @classmethod
    def parse(cls, obj: JSONObject) -> PaymentIntentState:
        error = _json_object(obj.get("last_payment_error")) or {}
        return cls(
            id=reference(obj.get("id")),
            status=_text(obj.get("status")),
            amount=_amount(obj, "amount", what="PaymentIntent"),
            amount_received=_amount(obj, "amount_received", what="PaymentIntent"),
            currency=_currency(obj, what="PaymentIntent"),
            latest_charge_id=reference(obj.get("latest_charge")),
            customer_id=reference(obj.get("customer")),
            payment_method_id=reference(obj.get("payment_method")),
            deposit_id=_metadata(obj, "amply_deposit"),
            wallet_id=_metadata(obj, "wallet_id"),
            failure_code=_text(error.get("code")),
            failure_message=_text(error.get("message")),
        )

    @classmethod
    def from_stripe(cls, intent: stripe.PaymentIntent) -> PaymentIntentState:
        metadata = intent.metadata if "metadata" in intent else None
        error = intent.last_payment_error if "last_payment_error" in intent else None
        return cls(
            id=intent.id,
            status=intent.status,
            amount=intent.amount,
            amount_received=intent.amount_received if "amount_received" in intent else None,
            currency=intent.currency,
            latest_charge_id=_expandable(intent.latest_charge)
            if "latest_charge" in intent
            else None,
            customer_id=_expandable(intent.customer) if "customer" in intent else None,
            payment_method_id=_expandable(intent.payment_method)
            if "payment_method" in intent
            else None,
            deposit_id=_library_metadata(metadata, "amply_deposit"),
            wallet_id=_library_metadata(metadata, "wallet_id"),
            failure_code=error.code if error is not None and "code" in error else None,
            failure_message=error.message if error is not None and "message" in error else None,
        )


def _library_metadata(metadata: stripe.StripeObject | None, key: str) -> str | None:
    value = metadata[key] if metadata is not None and key in metadata else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class RefundState:
    """A refund Stripe reports: whose payment, and how it went."""

    id: str
    status: str | None
    payment_intent_id: str | None = None

    @classmethod
    def parse(cls, obj: JSONObject) -> RefundState | None:
        """The refund, or None when the object names none (nothing to update)."""
        refund_id = _text(obj.get("id"))
        if refund_id is None:
            return None
        return cls(
            id=refund_id,
            status=_text(obj.get("status")),
            payment_intent_id=reference(obj.get("payment_intent")),
        )


@dataclass(frozen=True, slots=True)
class ChargeState:
    """What a charge says: the payment it belongs to, what it took, and what was refunded.

    ``refunds``: the refunds it lists (older API versions, or ``expand``), else None."""

    id: str | None
    payment_intent_id: str | None
    amount: int | None
    currency: str | None
    amount_refunded: int
    settled: bool  # whether it names its balance transaction (Stripe's fee is known)
    deposit_id: str | None = None  # metadata ``amply_deposit``
    refunds: tuple[RefundState, ...] | None = None

    @classmethod
    def parse(cls, obj: JSONObject) -> ChargeState:
        return cls(
            id=reference(obj.get("id")),
            payment_intent_id=reference(obj.get("payment_intent")),
            amount=_amount(obj, "amount", what="charge"),
            currency=_currency(obj, what="charge"),
            amount_refunded=_count(obj.get("amount_refunded")),
            settled=bool(obj.get("balance_transaction")),
            deposit_id=_metadata(obj, "amply_deposit"),
            refunds=_listed_refunds(obj),
        )

    @property
    def paid(self) -> int | None:
        return self.amount


def _listed_refunds(charge: JSONObject) -> tuple[RefundState, ...] | None:
    listed = _json_object(charge.get("refunds"))
    data = listed.get("data") if listed is not None else None
    if not isinstance(data, list):
        return None
    refunds = (RefundState.parse(item) for item in data if isinstance(item, dict))
    return tuple(refund for refund in refunds if refund is not None)


# --- Disputes and their balance transactions ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceMove:
    """A balance transaction of Stripe's: ``amount`` signed as Stripe signs it, ``fee``
    charged (> 0) or returned (< 0), in ``currency`` (upper case)."""

    id: str
    amount: int
    fee: int
    currency: str

    @classmethod
    def parse(cls, obj: JSONObject) -> BalanceMove:
        move_id, amount, fee = obj.get("id"), obj.get("amount"), obj.get("fee")
        currency = obj.get("currency")
        if not (
            isinstance(move_id, str)
            and 0 < len(move_id) <= 255
            and isinstance(amount, int)
            and not isinstance(amount, bool)
            and isinstance(fee, int)
            and not isinstance(fee, bool)
            and isinstance(currency, str)
            and len(currency) == 3
        ):
            raise MalformedStripeObject(
                "A balance transaction of the dispute lacks an id, amount, fee or currency."
            )
        return cls(move_id, amount, fee, currency.upper())


@dataclass(frozen=True, slots=True)
class DisputeState:
    """A dispute: what it holds, whose payment, and every balance transaction Stripe has made
    for it so far (``balance_transactions``, expanded in every dispute event)."""

    id: str
    amount: int
    currency: str | None = None  # as Stripe writes it; Amply books the donation's currency
    status: str | None = None
    reason: str | None = None  # stays private: it would be about a named donor
    charge_id: str | None = None
    payment_intent_id: str | None = None
    moves: tuple[BalanceMove, ...] = ()

    @staticmethod
    def payment_intent_of(obj: JSONObject) -> str | None:
        """The payment a dispute is about, read before the rest: a dispute of a payment Amply
        does not know is acknowledged, however it looks (refusing it would have Stripe retry
        it for days)."""
        return reference(obj.get("payment_intent"))

    @classmethod
    def parse(cls, obj: JSONObject) -> DisputeState:
        dispute_id = obj.get("id")
        if not (isinstance(dispute_id, str) and DISPUTE_ID.match(dispute_id)):
            raise MalformedStripeObject("The dispute lacks an id or amount.")
        amount = _count(obj.get("amount"))
        if amount == 0:
            raise MalformedStripeObject("The dispute lacks an id or amount.")
        listed = obj.get("balance_transactions")
        items = listed if isinstance(listed, list) else []
        return cls(
            id=dispute_id,
            amount=amount,
            currency=_text(obj.get("currency")),
            status=_text(obj.get("status")),
            reason=_text(obj.get("reason")),
            charge_id=reference(obj.get("charge")),
            payment_intent_id=reference(obj.get("payment_intent")),
            moves=tuple(BalanceMove.parse(item) for item in items if isinstance(item, dict)),
        )


# --- Connected accounts, SetupIntents, cards ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountState:
    account_id: str
    charges_enabled: bool
    payouts_enabled: bool
    details_submitted: bool
    # What Stripe still needs (requirements.currently_due) and why charges are off, if they are.
    requirements_due: tuple[str, ...] = ()
    disabled_reason: str | None = None

    @classmethod
    def parse(cls, obj: JSONObject) -> AccountState | None:
        """The account, or None when the object names none (nothing to apply)."""
        account_id = _text(obj.get("id"))
        if account_id is None:
            return None
        requirements = _json_object(obj.get("requirements")) or {}
        due, reason = requirements.get("currently_due"), requirements.get("disabled_reason")
        return cls(
            account_id=account_id,
            charges_enabled=bool(obj.get("charges_enabled")),
            payouts_enabled=bool(obj.get("payouts_enabled")),
            details_submitted=bool(obj.get("details_submitted")),
            requirements_due=tuple(str(item) for item in due) if isinstance(due, list) else (),
            disabled_reason=reason[:200] if isinstance(reason, str) else None,
        )

    @classmethod
    def from_stripe(cls, account: stripe.Account) -> AccountState:
        requirements = account.requirements if "requirements" in account else None
        return cls(
            account_id=account.id,
            charges_enabled=bool(account.charges_enabled),
            payouts_enabled=bool(account.payouts_enabled),
            details_submitted=bool(account.details_submitted),
            requirements_due=tuple(requirements.currently_due or ()) if requirements else (),
            disabled_reason=requirements.disabled_reason if requirements else None,
        )


@dataclass(frozen=True, slots=True)
class SetupIntentState:
    """What a SetupIntent says: its status, whose it is, and the card it saved."""

    setup_intent_id: str
    status: str
    customer_id: str | None
    payment_method_id: str | None
    wallet_id: str | None  # from the metadata Amply gave it

    @classmethod
    def parse(cls, obj: JSONObject) -> SetupIntentState | None:
        """The SetupIntent, or None when the object names none (nothing to save)."""
        setup_intent_id = reference(obj.get("id"))
        if setup_intent_id is None:
            return None
        return cls(
            setup_intent_id=setup_intent_id,
            status=_text(obj.get("status")) or "unknown",
            customer_id=reference(obj.get("customer")),
            payment_method_id=reference(obj.get("payment_method")),
            wallet_id=_metadata(obj, "wallet_id"),
        )

    @classmethod
    def from_stripe(cls, intent: stripe.SetupIntent) -> SetupIntentState:
        metadata = intent.metadata if "metadata" in intent else None
        return cls(
            setup_intent_id=intent.id,
            status=intent.status,
            customer_id=_expandable(intent.customer) if "customer" in intent else None,
            payment_method_id=_expandable(intent.payment_method)
            if "payment_method" in intent
            else None,
            wallet_id=_library_metadata(metadata, "wallet_id"),
        )


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What a person recognises a card by; never its number."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int

    @classmethod
    def from_stripe(cls, card: stripe.PaymentMethod.Card) -> CardDetails:
        return cls(
            brand=card.brand, last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year
        )
