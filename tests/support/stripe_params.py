"""Which parameters the pinned Stripe API version accepts, read from the stripe library itself.

The library's ``stripe.params`` TypedDicts are generated from Stripe's OpenAPI document for the
API version it pins (``stripe.api_version``), so they name exactly what that version accepts. The
test server refuses anything else, as Stripe does (400 ``parameter_unknown``): a request the
pinned version would refuse fails the suite, and a version bump that removes a parameter Amply
sends fails the suite instead of production.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any, Final

import stripe.params

# The endpoints the test server serves, and the library's parameter type for each.
ENDPOINTS: Final = (
    ("POST", re.compile(r"/v1/accounts"), "AccountCreateParams"),
    ("GET", re.compile(r"/v1/accounts/[^/]+"), "AccountRetrieveParams"),
    ("POST", re.compile(r"/v1/account_links"), "AccountLinkCreateParams"),
    ("POST", re.compile(r"/v1/customers"), "CustomerCreateParams"),
    ("POST", re.compile(r"/v1/payment_intents"), "PaymentIntentCreateParams"),
    ("GET", re.compile(r"/v1/payment_intents/[^/]+"), "PaymentIntentRetrieveParams"),
    ("POST", re.compile(r"/v1/payment_intents/[^/]+/confirm"), "PaymentIntentConfirmParams"),
    ("POST", re.compile(r"/v1/payment_intents/[^/]+/cancel"), "PaymentIntentCancelParams"),
    ("GET", re.compile(r"/v1/charges/[^/]+"), "ChargeRetrieveParams"),
    ("POST", re.compile(r"/v1/refunds"), "RefundCreateParams"),
    ("POST", re.compile(r"/v1/setup_intents"), "SetupIntentCreateParams"),
    ("GET", re.compile(r"/v1/setup_intents/[^/]+"), "SetupIntentRetrieveParams"),
    ("POST", re.compile(r"/v1/setup_intents/[^/]+/confirm"), "SetupIntentConfirmParams"),
    ("POST", re.compile(r"/v1/payment_methods"), "PaymentMethodCreateParams"),
    ("GET", re.compile(r"/v1/payment_methods/[^/]+"), "PaymentMethodRetrieveParams"),
    ("POST", re.compile(r"/v1/payment_methods/[^/]+/attach"), "PaymentMethodAttachParams"),
    ("POST", re.compile(r"/v1/payment_methods/[^/]+/detach"), "PaymentMethodDetachParams"),
)
# Request options share the TypedDicts with the parameters; they travel as headers.
_REQUEST_OPTIONS: Final = frozenset(
    {
        "api_key",
        "stripe_version",
        "stripe_account",
        "stripe_context",
        "max_network_retries",
        "idempotency_key",
        "content_type",
        "headers",
    }
)
_TYPE_NAME: Final = re.compile(r"\b[A-Z]\w*Params\w*\b")


def params_type(method: str, path: str) -> type | None:
    """The library's parameter type for a request, if the server knows the endpoint."""
    for endpoint_method, pattern, name in ENDPOINTS:
        if method == endpoint_method and pattern.fullmatch(path):
            found: type = getattr(stripe.params, name)
            return found
    return None


def unknown_params(params: Mapping[str, Any], typed: type, prefix: str = "") -> Iterator[str]:
    """Each parameter (``a[b]`` for nested ones) that ``typed`` does not accept."""
    accepted = _accepted(typed)
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else key
        if key not in accepted:
            yield name
            continue
        nested = accepted[key]
        if nested is None:
            continue
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, Mapping):
                yield from unknown_params(item, nested, name)


@cache
def _accepted(typed: type) -> dict[str, type | None]:
    """The keys of a parameter TypedDict, each with its nested parameter type, if it has one."""
    module = sys.modules[typed.__module__]
    accepted: dict[str, type | None] = {}
    for key, annotation in typed.__annotations__.items():
        if key in _REQUEST_OPTIONS:
            continue
        nested = [
            getattr(module, name, None) or getattr(stripe.params, name, None)
            for name in _TYPE_NAME.findall(str(annotation))
        ]
        types = [found for found in nested if isinstance(found, type)]
        accepted[key] = types[0] if len(types) == 1 else None
    return accepted
