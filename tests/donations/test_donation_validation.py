"""Checkout (POST /v1/donations) refuses what it cannot take, and writes nothing when it does:
invalid bodies, organisations and funds that cannot take the donation, API keys of the
wrong organisation or scope, and card-testing velocity. Donors see their own donation by its
receipt token, without their email.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from amply.auth import tokens
from amply.kit.settings import Settings
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import (
    ORGANISATION_ENTRIES,
    add_member,
    bearer,
    count_rows,
    create_api_key,
    create_fund,
    create_organisation,
    donate,
    donation_body,
    onboard,
    onboarded_organisation,
    sign_up,
)

UNKNOWN_ORGANISATION = "org_" + "0" * 24
IDEMPOTENCY_KEY = {"Idempotency-Key": "checkout-attempt-0001"}


def _refused(response: httpx.Response, status: int, code: str, param: str | None) -> str:
    """Assert the standard error shape; return the error's type."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert (error["code"], error["param"]) == (code, param)
    assert isinstance(error["message"], str)
    assert error["message"]
    error_type: str = error["type"]
    return error_type


def _nothing_written(superuser_sql: SuperuserSql) -> None:
    assert count_rows(superuser_sql, "donations") == 0
    assert count_rows(superuser_sql, ORGANISATION_ENTRIES) == 0
    assert count_rows(superuser_sql, "idempotency_keys") == 0


def _donation_of(checkout: dict[str, object]) -> dict[str, Any]:
    donation = checkout["donation"]
    assert isinstance(donation, dict)
    return donation


def _velocity_settings(
    *, checkout_max_per_address: int = 20, checkout_max_per_email: int = 10
) -> Settings:
    return Settings(
        environment="test",
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
        checkout_max_per_address=checkout_max_per_address,
        checkout_max_per_email=checkout_max_per_email,
    )


# --- The body -------------------------------------------------------------------------------

_DROP = object()


@pytest.mark.parametrize(
    ("changes", "status", "code", "param"),
    [
        pytest.param({"amount": 0}, 422, "parameter_invalid", "amount", id="amount-zero"),
        pytest.param({"amount": -2500}, 422, "parameter_invalid", "amount", id="amount-negative"),
        pytest.param({"amount": 12.5}, 422, "parameter_invalid", "amount", id="amount-fraction"),
        pytest.param({"amount": 2500.0}, 422, "parameter_invalid", "amount", id="amount-float"),
        pytest.param({"amount": "100"}, 422, "parameter_invalid", "amount", id="amount-string"),
        pytest.param({"amount": True}, 422, "parameter_invalid", "amount", id="amount-boolean"),
        pytest.param({"amount": 10**16}, 422, "parameter_invalid", "amount", id="amount-huge"),
        pytest.param(
            {"amount": 100_000_000}, 422, "amount_too_large", "amount", id="amount-above-maximum"
        ),
        pytest.param({"amount": 49}, 422, "amount_too_small", "amount", id="eur-below-minimum"),
        pytest.param(
            {"amount": 49, "currency": "JPY"},
            422,
            "amount_too_small",
            "amount",
            id="jpy-below-minimum",
        ),
        pytest.param({"currency": "XXX"}, 422, "parameter_invalid", "currency", id="currency-xxx"),
        pytest.param(
            {"currency": "eurr"}, 422, "parameter_invalid", "currency", id="currency-too-long"
        ),
        pytest.param({"amount": _DROP}, 422, "parameter_invalid", "amount", id="amount-missing"),
        pytest.param(
            {"currency": _DROP}, 422, "parameter_invalid", "currency", id="currency-missing"
        ),
        pytest.param(
            {"organisation_id": _DROP},
            422,
            "parameter_invalid",
            "organisation_id",
            id="organisation-missing",
        ),
        pytest.param({"tip": 500}, 422, "parameter_invalid", "tip", id="unknown-field"),
        pytest.param(
            {"organisation_id": "org_not-an-id!"},
            422,
            "parameter_invalid",
            "organisation_id",
            id="organisation-malformed",
        ),
        pytest.param(
            {"organisation_id": UNKNOWN_ORGANISATION},
            404,
            "resource_missing",
            "organisation_id",
            id="organisation-unknown",
        ),
        pytest.param(
            {"fund_id": "fund_../../x"}, 422, "parameter_invalid", "fund_id", id="fund-malformed"
        ),
        pytest.param(
            {"fund_id": "fund_" + "0" * 24}, 404, "resource_missing", "fund_id", id="fund-unknown"
        ),
        pytest.param(
            {"donor_name": "A" * 101}, 422, "parameter_invalid", "donor_name", id="name-too-long"
        ),
        pytest.param(
            {"donor_name": "   "}, 422, "parameter_invalid", "donor_name", id="name-blank"
        ),
        pytest.param(
            {"message": "m" * 501}, 422, "parameter_invalid", "message", id="message-too-long"
        ),
        pytest.param(
            {"donor_email": "not-an-email"},
            422,
            "parameter_invalid",
            "donor_email",
            id="email-invalid",
        ),
        pytest.param(
            {"anonymous": "true"}, 422, "parameter_invalid", "anonymous", id="anonymous-string"
        ),
    ],
)
async def test_checkout_refuses_an_invalid_donation_and_writes_nothing(
    client: httpx.AsyncClient,
    superuser_sql: SuperuserSql,
    changes: dict[str, object],
    status: int,
    code: str,
    param: str,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    body = donation_body(organisation_id, donor_email="ada@example.org")
    for field, value in changes.items():
        if value is _DROP:
            del body[field]
        else:
            body[field] = value

    response = await client.post("/v1/donations", json=body, headers=IDEMPOTENCY_KEY)

    assert _refused(response, status, code, param) == "invalid_request_error"
    _nothing_written(superuser_sql)


async def test_checkout_takes_the_smallest_and_the_largest_amounts(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)

    euros = await donate(client, organisation_id, amount=50, currency="EUR")
    yen = await donate(client, organisation_id, amount=50, currency="JPY")
    largest = await donate(client, organisation_id, amount=99_999_999, currency="EUR")

    amounts = [_donation_of(c)["amount"] for c in (euros, yen, largest)]
    assert amounts == [50, 50, 99_999_999]
    assert count_rows(superuser_sql, "donations") == 3


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        pytest.param(b'{"organisation_id": ', 400, "body_invalid_json", id="truncated"),
        pytest.param(b"[]", 422, "parameter_invalid", id="array"),
    ],
)
async def test_checkout_refuses_a_body_that_is_not_a_json_object(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql, content: bytes, status: int, code: str
) -> None:
    response = await client.post(
        "/v1/donations",
        content=content,
        headers={"content-type": "application/json", **IDEMPOTENCY_KEY},
    )

    assert _refused(response, status, code, None) == "invalid_request_error"
    _nothing_written(superuser_sql)


# --- The organisation and the fund ----------------------------------------------------------


async def test_an_organisation_without_a_stripe_account_accepts_no_donations(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)

    response = await client.post(
        "/v1/donations", json=donation_body(organisation_id), headers=IDEMPOTENCY_KEY
    )
    account = await client.get(
        f"/v1/organisations/{organisation_id}/stripe-account", headers=owner.headers
    )

    _refused(response, 409, "organisation_not_accepting_donations", "organisation_id")
    assert account.json()["accepts_donations"] is False
    _nothing_written(superuser_sql)
    await onboard(client, owner, organisation_id)
    retried = await client.post(
        "/v1/donations", json=donation_body(organisation_id), headers=IDEMPOTENCY_KEY
    )
    assert retried.status_code == 201, retried.text


async def test_a_closed_fund_refuses_new_donations(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    fund_id = await create_fund(client, owner, organisation_id)
    closed = await client.patch(
        f"/v1/organisations/{organisation_id}/funds/{fund_id}",
        json={"status": "closed"},
        headers=owner.headers,
    )
    assert closed.status_code == 200, closed.text

    response = await client.post(
        "/v1/donations",
        json=donation_body(organisation_id, fund_id=fund_id),
        headers=IDEMPOTENCY_KEY,
    )

    _refused(response, 409, "fund_closed", "fund_id")
    _nothing_written(superuser_sql)


async def test_a_fund_of_another_organisation_is_not_found(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    other_owner, other_id = await onboarded_organisation(client)
    other_fund = await create_fund(client, other_owner, other_id)

    response = await client.post(
        "/v1/donations",
        json=donation_body(organisation_id, fund_id=other_fund),
        headers=IDEMPOTENCY_KEY,
    )

    error = response.json()["error"]
    _refused(response, 404, "resource_missing", "fund_id")
    assert error["message"] == "No such fund."
    _nothing_written(superuser_sql)


# --- API keys -------------------------------------------------------------------------------


async def test_an_api_key_cannot_check_out_for_another_organisation(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    _, other_id = await onboarded_organisation(client)
    _, secret = await create_api_key(client, owner, organisation_id)

    response = await client.post(
        "/v1/donations",
        json=donation_body(other_id),
        headers={**bearer(secret), **IDEMPOTENCY_KEY},
    )

    _refused(response, 404, "resource_missing", "organisation_id")
    _nothing_written(superuser_sql)
    own = await client.post(
        "/v1/donations", json=donation_body(organisation_id), headers=bearer(secret)
    )
    assert own.status_code == 201, own.text


async def test_a_read_only_api_key_cannot_check_out(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    _, secret = await create_api_key(client, owner, organisation_id, read_only=True)

    response = await client.post(
        "/v1/donations",
        json=donation_body(organisation_id),
        headers={**bearer(secret), **IDEMPOTENCY_KEY},
    )

    assert _refused(response, 403, "api_key_read_only", None) == "permission_error"
    _nothing_written(superuser_sql)


async def test_an_unknown_api_key_is_refused_rather_than_treated_as_public(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)

    response = await client.post(
        "/v1/donations",
        json=donation_body(organisation_id),
        headers={**bearer(tokens.new_secret("sk_test_")), **IDEMPOTENCY_KEY},
    )

    assert _refused(response, 401, "api_key_invalid", None) == "authentication_error"
    _nothing_written(superuser_sql)


# --- Velocity -------------------------------------------------------------------------------


async def test_the_fourth_public_checkout_from_one_address_is_rate_limited(
    make_client: ClientFactory, superuser_sql: SuperuserSql
) -> None:
    async with make_client(_velocity_settings(checkout_max_per_address=3)) as client:
        _, organisation_id = await onboarded_organisation(client)
        for _ in range(3):
            await donate(client, organisation_id)

        response = await client.post(
            "/v1/donations", json=donation_body(organisation_id), headers=IDEMPOTENCY_KEY
        )

    assert _refused(response, 429, "checkout_rate_limited", None) == "rate_limit_error"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert count_rows(superuser_sql, "donations") == 3
    assert count_rows(superuser_sql, "idempotency_keys") == 0


async def test_api_key_checkouts_do_not_count_against_the_address_limit(
    make_client: ClientFactory, superuser_sql: SuperuserSql
) -> None:
    async with make_client(_velocity_settings(checkout_max_per_address=3)) as client:
        owner, organisation_id = await onboarded_organisation(client)
        _, secret = await create_api_key(client, owner, organisation_id)
        for _ in range(3):
            await donate(client, organisation_id)

        by_key = [
            await client.post(
                "/v1/donations", json=donation_body(organisation_id), headers=bearer(secret)
            )
            for _ in range(3)
        ]
        public = await client.post("/v1/donations", json=donation_body(organisation_id))

    assert [r.status_code for r in by_key] == [201, 201, 201]
    _refused(public, 429, "checkout_rate_limited", None)
    assert count_rows(superuser_sql, "donations") == 6


async def test_checkouts_for_one_donor_email_are_rate_limited_whoever_sends_them(
    make_client: ClientFactory, superuser_sql: SuperuserSql
) -> None:
    async with make_client(_velocity_settings(checkout_max_per_email=2)) as client:
        owner, organisation_id = await onboarded_organisation(client)
        _, secret = await create_api_key(client, owner, organisation_id)
        await donate(client, organisation_id, donor_email="ada@example.org")
        await donate(client, organisation_id, donor_email="ada@example.org")

        public = await client.post(
            "/v1/donations",
            json=donation_body(organisation_id, donor_email="ADA@example.org"),
            headers=IDEMPOTENCY_KEY,
        )
        by_key = await client.post(
            "/v1/donations",
            json=donation_body(organisation_id, donor_email="ada@example.org"),
            headers=bearer(secret),
        )
        someone_else = await client.post(
            "/v1/donations", json=donation_body(organisation_id, donor_email="bob@example.org")
        )

    _refused(public, 429, "checkout_rate_limited", None)
    assert int(public.headers["Retry-After"]) >= 1
    _refused(by_key, 429, "checkout_rate_limited", None)
    assert someone_else.status_code == 201, someone_else.text
    assert count_rows(superuser_sql, "donations") == 3
    assert count_rows(superuser_sql, "idempotency_keys") == 0


async def test_refused_checkouts_do_not_count_against_the_address_limit(
    make_client: ClientFactory, superuser_sql: SuperuserSql
) -> None:
    async with make_client(_velocity_settings(checkout_max_per_address=2)) as client:
        owner = await sign_up(client)
        organisation_id = await create_organisation(client, owner)
        not_accepting = [
            await client.post("/v1/donations", json=donation_body(organisation_id))
            for _ in range(3)
        ]
        await onboard(client, owner, organisation_id)

        accepted = [
            await client.post("/v1/donations", json=donation_body(organisation_id))
            for _ in range(2)
        ]

    assert [r.status_code for r in not_accepting] == [409, 409, 409]
    assert [r.status_code for r in accepted] == [201, 201]
    assert count_rows(superuser_sql, "donations") == 2


# --- What donors see ------------------------------------------------------------------------


async def test_the_donor_reads_their_donation_by_receipt_token_without_their_email(
    client: httpx.AsyncClient,
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    checkout = await donate(
        client,
        organisation_id,
        donor_name="Ada Lovelace",
        donor_email="ada@example.org",
        message="For the wells",
    )
    donation = _donation_of(checkout)
    token = str(checkout["receipt_token"])
    path = f"/v1/donations/{donation['id']}"

    as_donor = await client.get(path, headers={"X-Receipt-Token": token})
    as_organisation = await client.get(path, headers=owner.headers)

    assert token.startswith("rcpt_")
    assert donation["donor_email"] is None
    assert as_donor.status_code == 200, as_donor.text
    donor_view = as_donor.json()
    assert (donor_view["id"], donor_view["status"]) == (donation["id"], "pending")
    assert donor_view["donor_name"] == "Ada Lovelace"
    for private in ("donor_email", "payment_intent_id", "processing_fee", "refunds"):
        assert donor_view[private] is None, private
    assert as_organisation.status_code == 200, as_organisation.text
    assert as_organisation.json()["donor_email"] == "ada@example.org"
    assert as_organisation.json()["refunds"] == []


async def test_a_wrong_receipt_token_finds_no_donation(client: httpx.AsyncClient) -> None:
    _, organisation_id = await onboarded_organisation(client)
    first = await donate(client, organisation_id)
    second = await donate(client, organisation_id)
    first_id = _donation_of(first)["id"]

    wrong = await client.get(
        f"/v1/donations/{first_id}",
        headers={"X-Receipt-Token": tokens.new_secret("rcpt_")},
    )
    anothers = await client.get(
        f"/v1/donations/{first_id}", headers={"X-Receipt-Token": str(second["receipt_token"])}
    )
    unknown = await client.get(
        "/v1/donations/don_" + "0" * 24, headers={"X-Receipt-Token": str(first["receipt_token"])}
    )

    for response in (wrong, anothers, unknown):
        _refused(response, 404, "resource_missing", "donation_id")
        assert response.json()["error"]["message"] == "No such donation."


async def test_a_donation_is_not_readable_without_credentials(client: httpx.AsyncClient) -> None:
    _, organisation_id = await onboarded_organisation(client)
    checkout = await donate(client, organisation_id)

    response = await client.get(f"/v1/donations/{_donation_of(checkout)['id']}")

    assert _refused(response, 401, "authentication_required", None) == "authentication_error"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_member_of_another_organisation_cannot_read_a_donation(
    client: httpx.AsyncClient,
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    viewer = await sign_up(client)
    await add_member(client, owner, organisation_id, viewer, "viewer")
    outsider = await sign_up(client)
    await create_organisation(client, outsider)
    checkout = await donate(client, organisation_id, donor_email="ada@example.org")
    path = f"/v1/donations/{_donation_of(checkout)['id']}"

    as_outsider = await client.get(path, headers=outsider.headers)
    as_viewer = await client.get(path, headers=viewer.headers)

    _refused(as_outsider, 404, "resource_missing", "donation_id")
    assert as_outsider.json()["error"]["message"] == "No such donation."
    assert as_viewer.status_code == 200, as_viewer.text
    assert as_viewer.json()["donor_email"] == "ada@example.org"


async def test_nul_characters_are_refused_in_bodies_and_paths(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)

    in_body = await client.post(
        "/v1/donations", json=donation_body(organisation_id, donor_name="Ada\u0000")
    )
    in_path = await client.get("/v1/donations/don_%00", headers={"X-Receipt-Token": "rcpt_x"})

    assert in_body.status_code == 422, in_body.text
    assert in_body.json()["error"]["param"] == "donor_name"
    assert in_path.status_code == 400, in_path.text
    assert in_path.json()["error"]["code"] == "parameter_invalid"
    assert superuser_sql("SELECT count(*) FROM donations") == [(0,)]
