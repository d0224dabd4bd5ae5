"""Idempotency-Key on checkout and refunds: a retry gets the first response and moves
nothing twice; a different request under the same key is refused; a failed request leaves
its key free for the retry.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import SuperuserSql
from tests.factories import (
    bearer,
    count_rows,
    create_api_key,
    create_fund,
    donate,
    donation_body,
    error_of,
    onboarded_organisation,
    sandbox_succeed,
)

REPLAYED = "Idempotent-Replayed"


def _key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": f"test-key-{name}-0123456789"}


async def _completed_donation(
    client: httpx.AsyncClient, organisation_id: str, *, amount: int = 10_000
) -> str:
    checkout = await donate(client, organisation_id, amount=amount)
    await sandbox_succeed(client, checkout)
    donation = checkout["donation"]
    assert isinstance(donation, dict)
    donation_id: str = donation["id"]
    return donation_id


# --- Checkout -------------------------------------------------------------------------------


async def test_a_retried_checkout_returns_the_first_donation_and_its_receipt_token(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    body = donation_body(organisation_id, donor_name="Ada", donor_email="ada@example.org")

    first = await client.post("/v1/donations", json=body, headers=_key("checkout"))
    retry = await client.post("/v1/donations", json=body, headers=_key("checkout"))

    assert first.status_code == retry.status_code == 201, retry.text
    assert REPLAYED not in first.headers
    assert retry.headers[REPLAYED] == "true"
    assert retry.json() == first.json()
    donation_id = first.json()["donation"]["id"]
    assert retry.json()["donation"]["id"] == donation_id
    assert retry.json()["receipt_token"] == first.json()["receipt_token"]
    assert (
        retry.json()["payment"]["payment_intent_id"]
        == (first.json()["payment"]["payment_intent_id"])
    )
    assert superuser_sql("SELECT id FROM donations") == [(donation_id,)]
    assert count_rows(superuser_sql, "idempotency_keys") == 1
    receipt = await client.get(
        f"/v1/donations/{donation_id}",
        headers={"X-Receipt-Token": retry.json()["receipt_token"]},
    )
    assert receipt.status_code == 200, receipt.text


async def test_a_replay_does_not_count_against_the_checkout_limits(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    body = donation_body(organisation_id, donor_email="ada@example.org")

    responses = [
        await client.post("/v1/donations", json=body, headers=_key("limits")) for _ in range(12)
    ]

    # Ten checkouts per donor email are allowed by default: eleven replays are not checkouts.
    assert [r.status_code for r in responses] == [201] * 12
    assert count_rows(superuser_sql, "donations") == 1


async def test_the_same_key_with_a_different_body_is_refused(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    first = await client.post(
        "/v1/donations", json=donation_body(organisation_id), headers=_key("reused")
    )

    other_amount = await client.post(
        "/v1/donations", json=donation_body(organisation_id, amount=2600), headers=_key("reused")
    )
    other_name = await client.post(
        "/v1/donations",
        json=donation_body(organisation_id, donor_name="Someone"),
        headers=_key("reused"),
    )

    assert first.status_code == 201, first.text
    for response in (other_amount, other_name):
        error = error_of(response, 409)
        assert (error["code"], error["param"]) == ("idempotency_key_reused", "Idempotency-Key")
        assert REPLAYED not in response.headers
    assert count_rows(superuser_sql, "donations") == 1
    assert count_rows(superuser_sql, "idempotency_keys") == 1


async def test_an_api_key_and_the_public_do_not_share_idempotency_keys(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    _, secret = await create_api_key(client, owner, organisation_id)
    body = donation_body(organisation_id)

    public = await client.post("/v1/donations", json=body, headers=_key("shared"))
    by_key = await client.post(
        "/v1/donations", json=body, headers={**_key("shared"), **bearer(secret)}
    )

    assert public.status_code == by_key.status_code == 201, by_key.text
    assert REPLAYED not in by_key.headers
    assert public.json()["donation"]["id"] != by_key.json()["donation"]["id"]
    assert public.json()["receipt_token"] != by_key.json()["receipt_token"]
    assert count_rows(superuser_sql, "donations") == 2
    assert count_rows(superuser_sql, "idempotency_keys") == 2


@pytest.mark.parametrize(
    "key",
    ["too-short-key", "x" * 256, "ключ-идемпотентности"],
    ids=["short", "too-long", "non-ascii"],
)
async def test_a_malformed_idempotency_key_is_refused(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql, key: str
) -> None:
    _, organisation_id = await onboarded_organisation(client)

    response = await client.post(
        "/v1/donations",
        json=donation_body(organisation_id),
        headers={b"Idempotency-Key": key.encode()},
    )

    error = error_of(response, 400)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "idempotency_key_invalid",
        "Idempotency-Key",
    )
    assert count_rows(superuser_sql, "donations") == 0
    assert count_rows(superuser_sql, "idempotency_keys") == 0


async def test_concurrent_checkouts_with_one_key_create_one_donation(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    body = donation_body(organisation_id, donor_email="ada@example.org")

    responses = await asyncio.gather(
        *(client.post("/v1/donations", json=body, headers=_key("race")) for _ in range(10))
    )

    assert [r.status_code for r in responses] == [201] * 10
    assert len({r.json()["donation"]["id"] for r in responses}) == 1
    assert len({r.json()["receipt_token"] for r in responses}) == 1
    assert sorted(r.headers.get(REPLAYED, "first") for r in responses) == ["first"] + ["true"] * 9
    assert count_rows(superuser_sql, "donations") == 1
    assert count_rows(superuser_sql, "idempotency_keys") == 1


async def test_a_refused_checkout_does_not_use_up_its_key(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    fund_id = await create_fund(client, owner, organisation_id)
    fund_path = f"/v1/organisations/{organisation_id}/funds/{fund_id}"
    closed = await client.patch(fund_path, json={"status": "closed"}, headers=owner.headers)
    assert closed.status_code == 200, closed.text
    body = donation_body(organisation_id, fund_id=fund_id)

    refused = await client.post("/v1/donations", json=body, headers=_key("retry-later"))
    assert count_rows(superuser_sql, "idempotency_keys") == 0
    reopened = await client.patch(fund_path, json={"status": "open"}, headers=owner.headers)
    retried = await client.post("/v1/donations", json=body, headers=_key("retry-later"))

    error = error_of(refused, 409)
    assert (error["code"], error["param"]) == ("fund_closed", "fund_id")
    assert reopened.json()["status"] == "open"
    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert retried.json()["donation"]["fund_id"] == fund_id
    assert count_rows(superuser_sql, "donations") == 1
    assert count_rows(superuser_sql, "idempotency_keys") == 1


# --- Refunds --------------------------------------------------------------------------------


async def test_a_refund_needs_an_idempotency_key(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    donation_id = await _completed_donation(client, organisation_id)

    missing = await client.post(
        f"/v1/donations/{donation_id}/refunds",
        json={"reason": "requested_by_customer", "amount": 1000},
        headers=owner.headers,
    )
    short = await client.post(
        f"/v1/donations/{donation_id}/refunds",
        json={"reason": "requested_by_customer", "amount": 1000},
        headers={**owner.headers, "Idempotency-Key": "short"},
    )

    missing_error = error_of(missing, 422)
    assert missing_error["code"] == "parameter_invalid"
    # The header is the parameter at fault, named as the 400 for a malformed key names it.
    assert missing_error["param"] == "Idempotency-Key"
    short_error = error_of(short, 400)
    assert (short_error["code"], short_error["param"]) == (
        "idempotency_key_invalid",
        "Idempotency-Key",
    )
    assert count_rows(superuser_sql, "donation_refunds") == 0
    assert count_rows(superuser_sql, "idempotency_keys") == 0


async def test_a_retried_refund_creates_one_refund(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    donation_id = await _completed_donation(client, organisation_id)
    path = f"/v1/donations/{donation_id}/refunds"
    body = {"reason": "requested_by_customer", "amount": 4000}
    headers = {**owner.headers, **_key("refund")}

    first = await client.post(path, json=body, headers=headers)
    retry = await client.post(path, json=body, headers=headers)
    other = await client.post(path, json={**body, "amount": 3000}, headers=headers)

    assert first.status_code == retry.status_code == 201, retry.text
    assert REPLAYED not in first.headers
    assert retry.headers[REPLAYED] == "true"
    assert retry.json() == first.json()
    assert (first.json()["amount"], first.json()["status"]) == (4000, "pending")
    error = error_of(other, 409)
    assert (error["code"], error["param"]) == ("idempotency_key_reused", "Idempotency-Key")
    assert superuser_sql("SELECT id, amount FROM donation_refunds") == [(first.json()["id"], 4000)]
    donation = await client.get(f"/v1/donations/{donation_id}", headers=owner.headers)
    assert [r["id"] for r in donation.json()["refunds"]] == [first.json()["id"]]


async def test_concurrent_refunds_with_one_key_create_one_refund(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    donation_id = await _completed_donation(client, organisation_id)
    headers = {**owner.headers, **_key("refund-race")}

    responses = await asyncio.gather(
        *(
            client.post(
                f"/v1/donations/{donation_id}/refunds",
                json={"reason": "duplicate", "amount": 6000},
                headers=headers,
            )
            for _ in range(5)
        )
    )

    assert [r.status_code for r in responses] == [201] * 5
    assert len({r.json()["id"] for r in responses}) == 1
    assert count_rows(superuser_sql, "donation_refunds") == 1


async def test_a_refused_refund_does_not_use_up_its_key(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    checkout = await donate(client, organisation_id, amount=5000)
    donation = checkout["donation"]
    assert isinstance(donation, dict)
    path = f"/v1/donations/{donation['id']}/refunds"
    headers = {**owner.headers, **_key("refund-later")}
    body = {"reason": "requested_by_customer"}

    too_early = await client.post(path, json=body, headers=headers)
    await sandbox_succeed(client, checkout)
    retried = await client.post(path, json=body, headers=headers)

    assert error_of(too_early, 409)["code"] == "donation_not_completed"
    assert retried.status_code == 201, retried.text
    assert REPLAYED not in retried.headers
    assert retried.json()["amount"] == 5000
    assert count_rows(superuser_sql, "donation_refunds") == 1
    assert count_rows(superuser_sql, "idempotency_keys") == 1


async def test_expired_keys_are_swept_and_a_reused_expired_key_is_refused(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    key = {"Idempotency-Key": "expiring-key-0123456789"}
    first = await client.post("/v1/donations", json=donation_body(organisation_id), headers=key)
    superuser_sql("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")

    other = {"Idempotency-Key": "another-key-0123456789"}
    await client.post("/v1/donations", json=donation_body(organisation_id), headers=other)
    reused = await client.post("/v1/donations", json=donation_body(organisation_id), headers=key)

    assert first.status_code == 201
    assert superuser_sql("SELECT key FROM idempotency_keys") == [(other["Idempotency-Key"],)]
    # The donation's id comes from the key: an expired key cannot name a second donation.
    assert reused.status_code == 409, reused.text
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert superuser_sql("SELECT count(*) FROM donations") == [(2,)]


async def test_a_read_only_key_cannot_read_back_a_stored_checkout(
    client: httpx.AsyncClient,
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    _, writer = await create_api_key(client, owner, organisation_id)
    _, reader = await create_api_key(client, owner, organisation_id, read_only=True)
    key = {"Idempotency-Key": "integrator-key-0123456789"}
    body = donation_body(organisation_id)

    first = await client.post("/v1/donations", json=body, headers={**bearer(writer), **key})
    replay = await client.post("/v1/donations", json=body, headers={**bearer(reader), **key})

    assert first.status_code == 201
    assert replay.status_code == 403
    assert "receipt_token" not in replay.text


async def test_a_refund_key_that_expired_cannot_name_a_second_refund(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    checkout = await donate(client, organisation_id, amount=10_000)
    await sandbox_succeed(client, checkout)
    url = f"/v1/donations/{checkout['donation']['id']}/refunds"  # type: ignore[index]
    headers = {**owner.headers, "Idempotency-Key": "refund-expiring-0123456789"}
    body = {"amount": 1_000, "reason": "requested_by_customer"}

    first = await client.post(url, json=body, headers=headers)
    superuser_sql("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    again = await client.post(url, json=body, headers=headers)

    assert first.status_code == 201, first.text
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "idempotency_key_reused"
    assert superuser_sql("SELECT count(*) FROM donation_refunds") == [(1,)]
