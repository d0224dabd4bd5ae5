"""Money as integer minor units plus an ISO 4217 currency code.

Amply's API and database use UPPERCASE currency codes; Stripe calls take lowercase
(:func:`stripe_currency`). No float ever touches an amount: fees are computed in integers
with the rounding rule documented on :func:`fee_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Minor-unit exponents of the active ISO 4217 currencies that Stripe can charge.
# A currency absent here is rejected as unknown.
_TWO_DECIMALS = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BWP BYN BZD CAD
    CDF CHF CNY COP CRC CVE CZK DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL GIP GMD GTQ GYD HKD HNL
    HTG HUF IDR ILS INR ISK JMD KES KGS KHR KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT
    MOP MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB
    SAR SBD SCR SEK SGD SHP SLE SOS SRD STD SZL THB TJS TOP TRY TTD TWD TZS UAH USD UYU UZS WST
    XCD YER ZAR ZMW
"""
_ZERO_DECIMALS = "BIF CLP DJF GNF JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD JOD KWD OMR TND"

# Minor-unit exponents of the active ISO 4217 currencies that Stripe can charge.
# A currency absent here is rejected as unknown.
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    **dict.fromkeys(_TWO_DECIMALS.split(), 2),
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
}

# Stripe's documented minimum charge amounts, in minor units
# (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts).
_STRIPE_MINIMUMS: Final[dict[str, int]] = {
    "USD": 50, "AED": 200, "AUD": 50, "BGN": 100, "BRL": 50, "CAD": 50, "CHF": 50,
    "CZK": 1500, "DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50,
    "JPY": 50, "MXN": 1000, "MYR": 200, "NOK": 300, "NZD": 50, "PLN": 200, "RON": 200,
    "SEK": 300, "SGD": 50, "THB": 1000,
}  # fmt: skip
# Elsewhere: half a major unit (two decimals), 100 (no decimals), 500 (three decimals).
_DEFAULT_MINIMUMS: Final[dict[int, int]] = {0: 100, 2: 50, 3: 500}

# The largest amount Amply accepts in any single movement: 10^15 minor units keeps every
# sum of many movements far inside PostgreSQL's bigint.
MAX_AMOUNT: Final = 10**15


class MoneyError(ValueError):
    """An amount or currency that Amply cannot accept; the message says why."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


def normalize_currency(code: str) -> str:
    """Return the canonical UPPERCASE ISO 4217 code, or raise :class:`MoneyError`."""
    upper = code.strip().upper()
    if upper not in CURRENCY_EXPONENTS:
        raise MoneyError(f"{code!r} is not a supported ISO 4217 currency code", param="currency")
    return upper


def stripe_currency(code: str) -> str:
    """The lowercase form Stripe's API expects."""
    return normalize_currency(code).lower()


def minor_unit_exponent(code: str) -> int:
    """Number of decimal places of the currency's minor unit (2 for EUR, 0 for JPY)."""
    return CURRENCY_EXPONENTS[normalize_currency(code)]


def validate_amount(amount: object, *, param: str = "amount", allow_zero: bool = False) -> int:
    """Check that ``amount`` is an integer count of minor units in Amply's range."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise MoneyError("amount must be an integer number of minor units", param=param)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise MoneyError("amount must be a positive number of minor units", param=param)
    if amount > MAX_AMOUNT:
        raise MoneyError(f"amount must not exceed {MAX_AMOUNT} minor units", param=param)
    return amount


def minimum_charge_amount(code: str) -> int:
    """The smallest amount a card payment in this currency may take, in minor units."""
    currency = normalize_currency(code)
    return _STRIPE_MINIMUMS.get(currency, _DEFAULT_MINIMUMS[CURRENCY_EXPONENTS[currency]])


def fee_for(amount: int, *, basis_points: int) -> int:
    """A percentage fee of ``amount`` in basis points (150 = 1.5%), in integer arithmetic.

    Rounding rule: half up to the next whole minor unit, i.e. ``floor((amount * bps + 5000)
    / 10000)``. A fee of 1.5% on 1,000 cents is 15; on 1,033 cents 15.495 rounds to 15, on
    1,034 cents 15.51 rounds to 16.
    """
    validate_amount(amount, allow_zero=True)
    if basis_points < 0:
        raise MoneyError("a fee rate cannot be negative", param="basis_points")
    return (amount * basis_points + 5_000) // 10_000


@dataclass(frozen=True, slots=True)
class Money:
    """A positive amount in minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        validate_amount(self.amount)
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    def format(self) -> str:
        """Human-readable, e.g. ``12.50 EUR`` (display only; never parsed back)."""
        exponent = CURRENCY_EXPONENTS[self.currency]
        if exponent == 0:
            return f"{self.amount} {self.currency}"
        whole, fraction = divmod(self.amount, 10**exponent)
        return f"{whole}.{fraction:0{exponent}d} {self.currency}"
