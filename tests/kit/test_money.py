from __future__ import annotations

import pytest

from amply.kit.money import (
    MAX_AMOUNT,
    Money,
    MoneyError,
    fee_for,
    minimum_charge_amount,
    minor_unit_exponent,
    normalize_currency,
    stripe_currency,
    validate_amount,
)


def test_currencies_are_uppercase_in_amply_and_lowercase_for_stripe() -> None:
    assert normalize_currency(" eur ") == "EUR"
    assert stripe_currency("EUR") == "eur"
    assert minor_unit_exponent("jpy") == 0
    assert minor_unit_exponent("KWD") == 3


@pytest.mark.parametrize("code", ["", "EURO", "XXX", "12", "€"])
def test_unknown_currencies_are_refused(code: str) -> None:
    with pytest.raises(MoneyError) as raised:
        normalize_currency(code)
    assert raised.value.param == "currency"


@pytest.mark.parametrize("amount", [0, -1, 1.5, 10.0, "10", True, None, MAX_AMOUNT + 1])
def test_amounts_must_be_positive_integers_in_range(amount: object) -> None:
    with pytest.raises(MoneyError):
        validate_amount(amount)


def test_zero_is_allowed_only_when_asked_for() -> None:
    assert validate_amount(0, allow_zero=True) == 0
    assert validate_amount(MAX_AMOUNT) == MAX_AMOUNT


@pytest.mark.parametrize(
    ("amount", "fee"), [(1000, 15), (1033, 15), (1034, 16), (1, 0), (34, 1), (33, 0), (0, 0)]
)
def test_percentage_fees_round_half_up_in_integers(amount: int, fee: int) -> None:
    assert fee_for(amount, basis_points=150) == fee


def test_negative_fee_rates_are_refused() -> None:
    with pytest.raises(MoneyError):
        fee_for(100, basis_points=-1)


def test_money_formats_by_minor_unit() -> None:
    assert Money(1250, "eur").format() == "12.50 EUR"
    assert Money(500, "JPY").format() == "500 JPY"
    assert Money(1005, "KWD").format() == "1.005 KWD"
    with pytest.raises(MoneyError):
        Money(0, "EUR")


@pytest.mark.parametrize(
    ("currency", "minimum"),
    [("EUR", 50), ("usd", 50), ("GBP", 30), ("JPY", 50), ("HUF", 17500), ("KRW", 100),
     ("ZAR", 50), ("KWD", 500)],
)  # fmt: skip
def test_minimum_charge_amounts_follow_stripe_and_the_currency_exponent(
    currency: str, minimum: int
) -> None:
    assert minimum_charge_amount(currency) == minimum
