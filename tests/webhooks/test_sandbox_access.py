"""The sandbox is no back door: each sandbox action answers only to a caller who could have
done the real one, and no sandbox response tells who gave.

Anyone may confirm or fail a donation's payment (the donor has no account); only the
donation's organisation (an admin, or a write key) may have its refunds confirmed; only the
wallet's owner may confirm a card deposit's payment or a SetupIntent. Without credentials:
401; with another organisation's or user's: 404, as for a payment that does not exist. And
whatever was refused changed nothing.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import SuperuserSql
from tests.factories import (
    ORGANISATION_ENTRIES,
    Account,
    add_member,
    bearer,
    count_rows,
    create_api_key,
    donate,
    error_of,
    onboarded_organisation,
    sandbox_succeed,
    sign_up,
)
from tests.wallets.test_cards import add_sandbox_card, start_setup

DONOR = {
    "donor_name": "Grace Hopper",
    "donor_email": "grace@example.org",
    "anonymous": True,
    "message": "For the river, from the bridge club",
}
PRIVATE = ("Grace", "grace@example.org", "bridge club")


def _payment(checkout: dict[str, Any]) -> str:
    payment_intent_id: str = checkout["payment"]["payment_intent_id"]
    return payment_intent_id


async def _completed_donation(
    client: httpx.AsyncClient, organisation_id: str, **fields: object
) -> str:
    """A completed sandbox donation to the organisation: its PaymentIntent."""
    checkout = await donate(client, organisation_id, amount=10_000, **fields)
    await sandbox_succeed(client, checkout)
    return _payment(checkout)


def _refund_entries(superuser_sql: SuperuserSql) -> int:
    return count_rows(superuser_sql, f"{ORGANISATION_ENTRIES} AND type = 'donation_refunded'")


def _donations(superuser_sql: SuperuserSql) -> list[tuple[Any, ...]]:
    return superuser_sql("SELECT id, status, amount_refunded FROM donations ORDER BY id")


def _reveals_no_donor(body: dict[str, Any], text: str) -> None:
    assert {"donor_name", "donor_email", "message", "public_name", "anonymous"}.isdisjoint(body)
    for secret in PRIVATE:
        assert secret not in text


# --- Refunds: the organisation's to make -----------------------------------------------------


async def test_an_anonymous_caller_cannot_refund_a_donation_in_the_sandbox(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    payment = await _completed_donation(client, organisation_id)
    before = _donations(superuser_sql)

    response = await client.post(f"/v1/sandbox/payments/{payment}/refund")
    partly = await client.post(f"/v1/sandbox/payments/{payment}/refund", json={"amount": 100})

    for refused in (response, partly):
        error = error_of(refused, 401)
        assert (error["type"], error["code"]) == ("authentication_error", "authentication_required")
    assert _refund_entries(superuser_sql) == 0
    assert _donations(superuser_sql) == before
    assert count_rows(superuser_sql, "stripe_events WHERE type = 'charge.refunded'") == 0


async def test_another_organisation_cannot_refund_a_donation_in_the_sandbox(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    outsider, outsider_organisation = await onboarded_organisation(client)
    _, outsider_key = await create_api_key(client, outsider, outsider_organisation)
    payment = await _completed_donation(client, organisation_id)
    before = _donations(superuser_sql)

    as_admin = await client.post(f"/v1/sandbox/payments/{payment}/refund", headers=outsider.headers)
    as_key = await client.post(
        f"/v1/sandbox/payments/{payment}/refund", headers=bearer(outsider_key)
    )
    missing = await client.post(
        f"/v1/sandbox/payments/pi_sandbox_{'0' * 24}/refund", headers=outsider.headers
    )

    # Another organisation's payment looks exactly like one that does not exist.
    assert error_of(as_admin, 404) == error_of(as_key, 404) == error_of(missing, 404)
    assert (error_of(as_admin, 404)["param"], error_of(as_admin, 404)["message"]) == (
        "payment_id",
        "No such sandbox payment.",
    )
    assert _refund_entries(superuser_sql) == 0
    assert _donations(superuser_sql) == before


async def test_only_the_organisations_admins_and_write_keys_refund_in_the_sandbox(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    viewer = await sign_up(client)
    await add_member(client, owner, organisation_id, viewer, "viewer")
    _, read_only = await create_api_key(client, owner, organisation_id, read_only=True)
    _, writer = await create_api_key(client, owner, organisation_id)
    payment = await _completed_donation(client, organisation_id)
    url = f"/v1/sandbox/payments/{payment}/refund"

    by_viewer = await client.post(url, json={"amount": 100}, headers=viewer.headers)
    by_read_only_key = await client.post(url, json={"amount": 100}, headers=bearer(read_only))
    refused_changed_nothing = _refund_entries(superuser_sql) == 0
    by_admin = await client.post(url, json={"amount": 100}, headers=owner.headers)
    by_write_key = await client.post(url, json={"amount": 200}, headers=bearer(writer))

    assert error_of(by_viewer, 403)["code"] == "role_insufficient"
    assert error_of(by_read_only_key, 403)["code"] == "api_key_read_only"
    assert refused_changed_nothing
    assert by_admin.status_code == by_write_key.status_code == 200, by_write_key.text
    assert by_write_key.json()["amount_refunded"] == 300
    assert _refund_entries(superuser_sql) == 2


# --- No donor in any sandbox response ---------------------------------------------------------


async def test_a_sandbox_refund_reveals_no_donor(client: httpx.AsyncClient) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    payment = await _completed_donation(client, organisation_id, **DONOR)

    response = await client.post(
        f"/v1/sandbox/payments/{payment}/refund", json={"amount": 2_500}, headers=owner.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["amount"], body["amount_refunded"]) == ("completed", 10_000, 2_500)
    _reveals_no_donor(body, response.text)


async def test_a_donors_sandbox_confirmation_stays_open_and_reveals_no_donor(
    client: httpx.AsyncClient,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    succeeding = await donate(client, organisation_id, amount=10_000, **DONOR)
    failing = await donate(client, organisation_id, amount=10_000, **DONOR)

    # The donor has no account: their payment is confirmed without credentials, as today,
    # and whatever credentials their browser holds (here a session long expired) are not read.
    succeeded = await client.post(
        f"/v1/sandbox/payments/{_payment(succeeding)}/succeed",
        headers={"Authorization": "Bearer sess_expired_long_ago"},
    )
    failed = await client.post(f"/v1/sandbox/payments/{_payment(failing)}/fail")

    assert succeeded.status_code == failed.status_code == 200, failed.text
    assert succeeded.json()["status"] == "completed"
    assert succeeded.json()["ledger_entry"]["seq"] == 1
    assert (failed.json()["status"], failed.json()["ledger_entry"]) == ("failed", None)
    for response in (succeeded, failed):
        _reveals_no_donor(response.json(), response.text)


# --- Card deposits and SetupIntents: the wallet owner's ----------------------------------------


async def _pending_deposit(client: httpx.AsyncClient, user: Account) -> dict[str, Any]:
    await add_sandbox_card(client, user)
    response = await client.post(
        "/v1/deposits",
        json={"source": "card", "amount": 2_500},
        headers={**user.headers, "Idempotency-Key": f"sandbox-access-{user.user_id}"},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _deposits(superuser_sql: SuperuserSql) -> list[tuple[Any, ...]]:
    return superuser_sql(
        "SELECT id, status FROM transactions WHERE kind = 'deposit' ORDER BY id"
    ) + superuser_sql("SELECT count(*) FROM ledger_entries WHERE type = 'deposit'")


async def test_an_anonymous_caller_cannot_settle_a_card_deposit(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user = await sign_up(client)
    pending = await _pending_deposit(client, user)
    payment = f"/v1/sandbox/payments/{pending['payment_intent_id']}"
    before = _deposits(superuser_sql)

    succeeded = await client.post(f"{payment}/succeed")
    failed = await client.post(f"{payment}/fail")
    refunded = await client.post(f"{payment}/refund")

    for response in (succeeded, failed, refunded):
        assert error_of(response, 401)["type"] == "authentication_error"
    assert _deposits(superuser_sql) == before


async def test_another_users_card_deposit_cannot_be_settled(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    user, stranger = await sign_up(client), await sign_up(client)
    owner, organisation_id = await onboarded_organisation(client)
    _, key = await create_api_key(client, owner, organisation_id)
    pending = await _pending_deposit(client, user)
    payment = f"/v1/sandbox/payments/{pending['payment_intent_id']}"
    before = _deposits(superuser_sql)

    succeeded = await client.post(f"{payment}/succeed", headers=stranger.headers)
    failed = await client.post(f"{payment}/fail", headers=stranger.headers)
    refunded = await client.post(f"{payment}/refund", headers=stranger.headers)
    by_admin = await client.post(f"{payment}/refund", headers=owner.headers)
    by_key = await client.post(f"{payment}/succeed", headers=bearer(key))
    refused = _deposits(superuser_sql)
    by_owner = await client.post(f"{payment}/succeed", headers=user.headers)

    for response in (succeeded, failed, refunded, by_admin):
        error = error_of(response, 404)
        assert (error["param"], error["message"]) == ("payment_id", "No such sandbox payment.")
    assert error_of(by_key, 401)["code"] == "session_required"  # a key is no wallet's owner
    assert refused == before
    assert by_owner.status_code == 200, by_owner.text
    assert by_owner.json()["status"] == "completed"


async def test_another_users_setup_intent_cannot_be_confirmed(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    victim, attacker = await sign_up(client), await sign_up(client)
    owner, organisation_id = await onboarded_organisation(client)
    _, key = await create_api_key(client, owner, organisation_id)
    setup_intent_id = await start_setup(client, victim)
    url = f"/v1/sandbox/setup-intents/{setup_intent_id}/succeed"

    anonymous = await client.post(url, json={"card": "visa"})
    by_attacker = await client.post(url, json={"card": "visa"}, headers=attacker.headers)
    by_key = await client.post(url, json={"card": "visa"}, headers=bearer(key))
    planted = count_rows(superuser_sql, "cards")
    by_victim = await client.post(url, json={"card": "visa"}, headers=victim.headers)

    assert error_of(anonymous, 401)["code"] == "authentication_required"
    error = error_of(by_attacker, 404)
    assert (error["param"], error["message"]) == ("setup_intent_id", "No such sandbox SetupIntent.")
    assert error_of(by_key, 401)["code"] == "session_required"
    assert planted == 0
    assert count_rows(superuser_sql, "stripe_events WHERE type = 'setup_intent.succeeded'") == 1
    assert by_victim.status_code == 200, by_victim.text
    assert count_rows(superuser_sql, "cards") == 1
