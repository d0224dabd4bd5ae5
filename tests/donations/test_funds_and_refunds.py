"""Funds (admins manage, members read, totals per currency), an organisation's list of
donations, refunds through the API settled by the sandbox, and the sandbox endpoints
themselves.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import (
    ORGANISATION_ENTRIES,
    Account,
    add_member,
    bearer,
    count_rows,
    create_api_key,
    create_fund,
    create_organisation,
    donate,
    donation_body,
    error_of,
    onboarded_organisation,
    sandbox_succeed,
    sign_up,
)

REFUND_KEY = "refund-key-0123456789"


async def _member(
    client: httpx.AsyncClient, owner: Account, organisation_id: str, role: str
) -> Account:
    member = await sign_up(client)
    await add_member(client, owner, organisation_id, member, role)
    return member


def _ids(checkout: dict[str, object]) -> tuple[str, str]:
    """A checkout's donation id and PaymentIntent id."""
    donation, payment = checkout["donation"], checkout["payment"]
    assert isinstance(donation, dict)
    assert isinstance(payment, dict)
    return donation["id"], payment["payment_intent_id"]


async def _completed(
    client: httpx.AsyncClient,
    organisation_id: str,
    *,
    amount: int = 10_000,
    currency: str = "EUR",
    fund_id: str | None = None,
) -> tuple[str, str]:
    checkout = await donate(
        client, organisation_id, amount=amount, currency=currency, fund_id=fund_id
    )
    await sandbox_succeed(client, checkout)
    return _ids(checkout)


async def _refund(
    client: httpx.AsyncClient,
    caller_headers: dict[str, str],
    donation_id: str,
    *,
    key: str = REFUND_KEY,
    **body: object,
) -> httpx.Response:
    return await client.post(
        f"/v1/donations/{donation_id}/refunds",
        json={"reason": "requested_by_customer", **body},
        headers={**caller_headers, "Idempotency-Key": key},
    )


async def _settle_refunds(
    client: httpx.AsyncClient, admin: Account, payment_intent_id: str
) -> dict[str, Any]:
    """Stripe confirms the refunds (in the sandbox, at the organisation's admin's word)."""
    response = await client.post(
        f"/v1/sandbox/payments/{payment_intent_id}/refund", headers=admin.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- Funds ----------------------------------------------------------------------------------


async def test_an_admin_creates_a_fund_that_every_member_can_read(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    admin = await _member(client, owner, organisation_id, "admin")
    viewer = await _member(client, owner, organisation_id, "viewer")
    funds_path = f"/v1/organisations/{organisation_id}/funds"

    created = await client.post(
        funds_path,
        json={
            "name": "  Wells  ",
            "description": "Clean water",
            "goal": {"amount": 1_000_000, "currency": "EUR"},
        },
        headers=admin.headers,
    )
    listed = await client.get(funds_path, headers=viewer.headers)
    read = await client.get(f"{funds_path}/{created.json()['id']}", headers=viewer.headers)

    assert created.status_code == 201, created.text
    fund = created.json()
    assert fund["id"].startswith("fund_")
    assert (fund["object"], fund["organisation_id"]) == ("fund", organisation_id)
    assert (fund["name"], fund["description"], fund["status"]) == ("Wells", "Clean water", "open")
    assert fund["goal"] == {"amount": 1_000_000, "currency": "EUR"}
    assert fund["totals"] == []
    assert listed.status_code == 200, listed.text
    assert (listed.json()["data"], listed.json()["has_more"]) == ([fund], False)
    assert read.status_code == 200, read.text
    assert read.json() == fund


async def test_a_viewer_cannot_create_or_change_a_fund(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    viewer = await _member(client, owner, organisation_id, "viewer")
    fund_id = await create_fund(client, owner, organisation_id, name="Wells")
    funds_path = f"/v1/organisations/{organisation_id}/funds"

    created = await client.post(funds_path, json={"name": "Schools"}, headers=viewer.headers)
    changed = await client.patch(
        f"{funds_path}/{fund_id}", json={"status": "closed"}, headers=viewer.headers
    )

    for response in (created, changed):
        error = error_of(response, 403)
        assert (error["type"], error["code"]) == ("permission_error", "role_insufficient")
    assert superuser_sql("SELECT name, status FROM funds") == [("Wells", "open")]


async def test_another_organisation_cannot_read_or_change_a_fund(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    fund_id = await create_fund(client, owner, organisation_id)
    outsider = await sign_up(client)
    outsider_org = await create_organisation(client, outsider)

    as_member_elsewhere = await client.get(
        f"/v1/organisations/{organisation_id}/funds/{fund_id}", headers=outsider.headers
    )
    through_own_org = await client.patch(
        f"/v1/organisations/{outsider_org}/funds/{fund_id}",
        json={"status": "closed"},
        headers=outsider.headers,
    )

    assert error_of(as_member_elsewhere, 404)["param"] == "organisation_id"
    error = error_of(through_own_org, 404)
    assert (error["code"], error["param"], error["message"]) == (
        "resource_missing",
        "fund_id",
        "No such fund.",
    )
    assert superuser_sql("SELECT status FROM funds") == [("open",)]


async def test_fund_names_are_unique_within_an_organisation_ignoring_case(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    other_owner = await sign_up(client)
    other_id = await create_organisation(client, other_owner)
    await create_fund(client, owner, organisation_id, name="Wells")
    schools = await create_fund(client, owner, organisation_id, name="Schools")
    funds_path = f"/v1/organisations/{organisation_id}/funds"

    duplicate = await client.post(funds_path, json={"name": "WELLS"}, headers=owner.headers)
    renamed = await client.patch(
        f"{funds_path}/{schools}", json={"name": "wells"}, headers=owner.headers
    )
    elsewhere = await client.post(
        f"/v1/organisations/{other_id}/funds", json={"name": "Wells"}, headers=other_owner.headers
    )

    for response in (duplicate, renamed):
        error = error_of(response, 409)
        assert (error["code"], error["param"]) == ("fund_name_taken", "name")
    assert elsewhere.status_code == 201, elsewhere.text
    assert sorted(superuser_sql("SELECT name FROM funds")) == [
        ("Schools",),
        ("Wells",),
        ("Wells",),
    ]


async def test_a_goal_is_set_kept_and_removed_with_null(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    fund_id = await create_fund(client, owner, organisation_id)
    path = f"/v1/organisations/{organisation_id}/funds/{fund_id}"

    set_goal = await client.patch(
        path, json={"goal": {"amount": 500_000, "currency": "usd"}}, headers=owner.headers
    )
    renamed = await client.patch(path, json={"name": "Deep wells"}, headers=owner.headers)
    removed = await client.patch(path, json={"goal": None}, headers=owner.headers)
    read = await client.get(path, headers=owner.headers)

    assert set_goal.status_code == 200, set_goal.text
    assert set_goal.json()["goal"] == {"amount": 500_000, "currency": "USD"}
    assert (renamed.json()["name"], renamed.json()["goal"]) == (
        "Deep wells",
        {"amount": 500_000, "currency": "USD"},
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["goal"] is None
    assert (read.json()["name"], read.json()["goal"]) == ("Deep wells", None)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        pytest.param({"goal": {"amount": 0, "currency": "EUR"}}, "goal.amount", id="goal-zero"),
        pytest.param({"goal": {"amount": 100, "currency": "XXX"}}, "goal.currency", id="goal-xxx"),
        pytest.param({"status": "archived"}, "status", id="status-unknown"),
        pytest.param({"status": None}, None, id="status-null"),
        pytest.param({"name": None}, None, id="name-null"),
        pytest.param({"name": "   "}, "name", id="name-blank"),
        pytest.param({"colour": "blue"}, "colour", id="unknown-field"),
    ],
)
async def test_an_invalid_change_leaves_the_fund_as_it_was(
    client: httpx.AsyncClient,
    superuser_sql: SuperuserSql,
    body: dict[str, object],
    param: str | None,
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    fund_id = await create_fund(client, owner, organisation_id, name="Wells")

    response = await client.patch(
        f"/v1/organisations/{organisation_id}/funds/{fund_id}", json=body, headers=owner.headers
    )

    error = error_of(response, 422)
    assert error["code"] == "parameter_invalid"
    assert error["param"] == param
    assert superuser_sql(
        "SELECT name, description, goal_amount, status, updated_at = created_at FROM funds"
    ) == [("Wells", "Clean water", None, "open", True)]


async def test_a_fund_is_closed_and_reopened(client: httpx.AsyncClient) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    fund_id = await create_fund(client, owner, organisation_id)
    path = f"/v1/organisations/{organisation_id}/funds/{fund_id}"

    closed = await client.patch(path, json={"status": "closed"}, headers=owner.headers)
    refused = await client.post(
        "/v1/donations",
        json=donation_body(organisation_id, fund_id=fund_id),
    )
    reopened = await client.patch(path, json={"status": "open"}, headers=owner.headers)
    accepted = await client.post(
        "/v1/donations",
        json=donation_body(organisation_id, fund_id=fund_id),
    )

    assert (closed.status_code, closed.json()["status"]) == (200, "closed")
    updated_at = datetime.fromisoformat(closed.json()["updated_at"])
    assert updated_at > datetime.fromisoformat(closed.json()["created_at"])
    assert error_of(refused, 409)["code"] == "fund_closed"
    assert (reopened.status_code, reopened.json()["status"]) == (200, "open")
    assert accepted.status_code == 201, accepted.text


async def test_fund_totals_count_completed_donations_per_currency(
    client: httpx.AsyncClient,
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    fund_id = await create_fund(client, owner, organisation_id)
    other_fund = await create_fund(client, owner, organisation_id, name="Schools")
    await _completed(client, organisation_id, fund_id=fund_id, amount=10_000)
    partly, partly_pi = await _completed(client, organisation_id, fund_id=fund_id, amount=5_000)
    fully, fully_pi = await _completed(client, organisation_id, fund_id=fund_id, amount=2_500)
    await _completed(client, organisation_id, fund_id=fund_id, amount=3_000, currency="USD")
    await _completed(client, organisation_id, fund_id=other_fund, amount=700)
    await _completed(client, organisation_id, amount=8_000)
    await donate(client, organisation_id, fund_id=fund_id, amount=7_000)
    failed = await donate(client, organisation_id, fund_id=fund_id, amount=4_000)
    fail = await client.post(f"/v1/sandbox/payments/{_ids(failed)[1]}/fail")
    assert fail.status_code == 200, fail.text
    assert (await _refund(client, owner.headers, partly, amount=2_000)).status_code == 201
    await _settle_refunds(client, owner, partly_pi)
    assert (
        await _refund(client, owner.headers, fully, key="full-refund-0123456")
    ).status_code == 201
    await _settle_refunds(client, owner, fully_pi)

    read = await client.get(
        f"/v1/organisations/{organisation_id}/funds/{fund_id}", headers=owner.headers
    )
    listed = await client.get(f"/v1/organisations/{organisation_id}/funds", headers=owner.headers)

    assert read.status_code == 200, read.text
    assert read.json()["totals"] == [
        {"currency": "EUR", "received": 17_500, "refunded": 4_500, "net": 13_000, "donations": 3},
        {"currency": "USD", "received": 3_000, "refunded": 0, "net": 3_000, "donations": 1},
    ]
    totals = {fund["id"]: fund["totals"] for fund in listed.json()["data"]}
    assert totals == {
        fund_id: read.json()["totals"],
        other_fund: [
            {"currency": "EUR", "received": 700, "refunded": 0, "net": 700, "donations": 1}
        ],
    }


# --- Listing donations ----------------------------------------------------------------------


async def test_an_organisations_donations_are_listed_newest_first_with_filters_and_a_cursor(
    client: httpx.AsyncClient,
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    viewer = await _member(client, owner, organisation_id, "viewer")
    fund_id = await create_fund(client, owner, organisation_id)
    created: list[str] = []
    for index in range(5):
        checkout = await donate(
            client,
            organisation_id,
            amount=1_000 + index,
            donor_email=f"d{index}@example.org",
            fund_id=fund_id if index % 2 == 0 else None,
        )
        created.append(_ids(checkout)[0])
        if index in (1, 2):
            await sandbox_succeed(client, checkout)
    newest_first = created[::-1]
    path = f"/v1/organisations/{organisation_id}/donations"

    async def page(**params: str | int) -> dict[str, Any]:
        response = await client.get(path, params=params, headers=viewer.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    everything = await page()
    first = await page(limit=2)
    second = await page(limit=2, starting_after=first["data"][-1]["id"])
    third = await page(limit=2, starting_after=second["data"][-1]["id"])
    completed = await page(status="completed")
    pending_in_fund = await page(status="pending", fund_id=fund_id)
    in_fund_paged = await page(fund_id=fund_id, limit=1, starting_after=created[4])

    assert [d["id"] for d in everything["data"]] == newest_first
    assert everything["has_more"] is False
    assert everything["data"][0]["donor_email"] == "d4@example.org"
    assert ([d["id"] for d in first["data"]], first["has_more"]) == (newest_first[:2], True)
    assert ([d["id"] for d in second["data"]], second["has_more"]) == (newest_first[2:4], True)
    assert ([d["id"] for d in third["data"]], third["has_more"]) == (newest_first[4:], False)
    assert [d["id"] for d in completed["data"]] == [created[2], created[1]]
    assert {d["status"] for d in completed["data"]} == {"completed"}
    assert [d["id"] for d in pending_in_fund["data"]] == [created[4], created[0]]
    assert ([d["id"] for d in in_fund_paged["data"]], in_fund_paged["has_more"]) == (
        [created[2]],
        True,
    )


async def test_listing_donations_refuses_bad_filters_and_outsiders(
    client: httpx.AsyncClient,
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    outsider, outsider_org = await onboarded_organisation(client)
    foreign = _ids(await donate(client, outsider_org))[0]
    await donate(client, organisation_id)
    path = f"/v1/organisations/{organisation_id}/donations"

    bad_status = await client.get(path, params={"status": "paid"}, headers=owner.headers)
    bad_limit = await client.get(path, params={"limit": 0}, headers=owner.headers)
    foreign_cursor = await client.get(
        path, params={"starting_after": foreign}, headers=owner.headers
    )
    as_outsider = await client.get(path, headers=outsider.headers)
    anonymous = await client.get(path)

    assert error_of(bad_status, 422)["param"] == "status"
    assert error_of(bad_limit, 422)["param"] == "limit"
    assert foreign_cursor.status_code == 200, foreign_cursor.text
    assert foreign_cursor.json() == {"object": "list", "data": [], "has_more": False}
    assert error_of(as_outsider, 404)["param"] == "organisation_id"
    assert error_of(anonymous, 401)["code"] == "authentication_required"


# --- Refunds --------------------------------------------------------------------------------


async def test_refunds_move_the_ledger_only_when_settled_and_a_full_refund_closes_the_donation(
    client: httpx.AsyncClient, database: Database, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    donation_id, payment_intent_id = await _completed(client, organisation_id, amount=10_000)
    donation_path = f"/v1/donations/{donation_id}"
    entries_before = count_rows(superuser_sql, ORGANISATION_ENTRIES)

    partial = await _refund(client, owner.headers, donation_id, amount=4_000)
    pending = await client.get(donation_path, headers=owner.headers)

    assert partial.status_code == 201, partial.text
    refund = partial.json()
    assert (refund["object"], refund["donation_id"], refund["amount"]) == (
        "refund",
        donation_id,
        4_000,
    )
    assert (refund["reason"], refund["status"]) == ("requested_by_customer", "pending")
    assert refund["id"].startswith("rfd_")
    assert count_rows(superuser_sql, ORGANISATION_ENTRIES) == entries_before
    assert (pending.json()["status"], pending.json()["amount_refunded"]) == ("completed", 0)
    assert [r["status"] for r in pending.json()["refunds"]] == ["pending"]

    settled = await _settle_refunds(client, owner, payment_intent_id)
    after_first = await client.get(donation_path, headers=owner.headers)

    assert (settled["status"], settled["amount_refunded"]) == ("completed", 4_000)
    assert [r["status"] for r in after_first.json()["refunds"]] == ["succeeded"]
    assert count_rows(superuser_sql, ORGANISATION_ENTRIES) == entries_before + 1

    rest = await _refund(client, owner.headers, donation_id, key="refund-the-rest-0123")
    assert rest.status_code == 201, rest.text
    assert (rest.json()["amount"], rest.json()["status"]) == (6_000, "pending")
    assert count_rows(superuser_sql, ORGANISATION_ENTRIES) == entries_before + 1
    final = await _settle_refunds(client, owner, payment_intent_id)
    read = await client.get(donation_path, headers=owner.headers)

    assert (final["status"], final["amount_refunded"]) == ("refunded", 10_000)
    assert read.json()["status"] == "refunded"
    assert [(r["amount"], r["status"]) for r in read.json()["refunds"]] == [
        (4_000, "succeeded"),
        (6_000, "succeeded"),
    ]
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=organisation_id)
        verification = await ledger.verify_chain(session, chain_id=organisation_id)
    refunded = [e for e in page.entries if e.type == "donation_refunded"]
    assert [e.amount for e in refunded] == [-4_000, -6_000]
    assert sum(e.amount for e in refunded) == -10_000
    metadata = [json.loads(e.metadata) for e in refunded]
    assert [(m["donation_id"], m["refunded_total"]) for m in metadata] == [
        (donation_id, 4_000),
        (donation_id, 10_000),
    ]
    assert [e.type for e in page.entries] == [
        "donation_received",
        "payment_processing_fee",
        "donation_refunded",
        "donation_refunded",
    ]
    assert verification.ok


async def test_a_refund_beyond_what_remains_is_refused_and_writes_nothing(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    donation_id, _ = await _completed(client, organisation_id, amount=5_000)
    entries = count_rows(superuser_sql, ORGANISATION_ENTRIES)

    too_much = await _refund(client, owner.headers, donation_id, amount=5_001)
    part = await _refund(
        client, owner.headers, donation_id, key="refund-part-0123456", amount=3_000
    )
    beyond_pending = await _refund(
        client, owner.headers, donation_id, key="refund-more-0123456", amount=2_001
    )
    rest = await _refund(
        client, owner.headers, donation_id, key="refund-rest-0123456", amount=2_000
    )
    nothing_left = await _refund(client, owner.headers, donation_id, key="refund-none-0123456")

    for response in (too_much, beyond_pending, nothing_left):
        error = error_of(response, 422)
        assert (error["code"], error["param"]) == ("refund_exceeds_remaining", "amount")
    assert part.status_code == rest.status_code == 201, rest.text
    assert sorted(superuser_sql("SELECT amount FROM donation_refunds")) == [(2_000,), (3_000,)]
    assert count_rows(superuser_sql, "idempotency_keys") == 2
    assert count_rows(superuser_sql, ORGANISATION_ENTRIES) == entries


async def test_refunds_made_outside_amply_count_against_what_remains(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    donation_id, payment_intent_id = await _completed(client, organisation_id, amount=10_000)
    # 3,000 refunded from Stripe's dashboard: no refund row, but on the ledger.
    dashboard = await client.post(
        f"/v1/sandbox/payments/{payment_intent_id}/refund",
        json={"amount": 3_000},
        headers=owner.headers,
    )
    assert dashboard.json()["amount_refunded"] == 3_000
    part = await _refund(client, owner.headers, donation_id, key="after-dashboard-01", amount=2_000)

    too_much = await _refund(
        client, owner.headers, donation_id, key="after-dashboard-02", amount=5_001
    )
    rest = await _refund(client, owner.headers, donation_id, key="after-dashboard-03")

    assert part.status_code == 201, part.text
    error = error_of(too_much, 422)
    assert (error["code"], error["param"]) == ("refund_exceeds_remaining", "amount")
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == 5_000
    settled = await _settle_refunds(client, owner, payment_intent_id)
    assert (settled["status"], settled["amount_refunded"]) == ("refunded", 10_000)
    assert sorted(superuser_sql("SELECT amount, status FROM donation_refunds")) == [
        (2_000, "succeeded"),
        (5_000, "succeeded"),
    ]


@pytest.mark.parametrize("amount", [0, 1.5], ids=["zero", "float"])
async def test_a_refund_amount_must_be_a_positive_integer(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql, amount: object
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    donation_id, _ = await _completed(client, organisation_id)

    response = await _refund(client, owner.headers, donation_id, amount=amount)
    unknown_reason = await client.post(
        f"/v1/donations/{donation_id}/refunds",
        json={"reason": "changed_my_mind"},
        headers={**owner.headers, "Idempotency-Key": "refund-reason-01234"},
    )

    error = error_of(response, 422)
    assert (error["code"], error["param"]) == ("parameter_invalid", "amount")
    assert error_of(unknown_reason, 422)["param"] == "reason"
    assert count_rows(superuser_sql, "donation_refunds") == 0


async def test_only_completed_donations_can_be_refunded(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    pending_id, _ = _ids(await donate(client, organisation_id))
    failed_id, failed_pi = _ids(await donate(client, organisation_id))
    assert (await client.post(f"/v1/sandbox/payments/{failed_pi}/fail")).status_code == 200
    refunded_id, refunded_pi = await _completed(client, organisation_id)
    await _settle_refunds(client, owner, refunded_pi)
    refunds_before = count_rows(superuser_sql, "donation_refunds")

    pending = await _refund(client, owner.headers, pending_id)
    failed = await _refund(client, owner.headers, failed_id, key="refund-failed-01234")
    refunded = await _refund(client, owner.headers, refunded_id, key="refund-twice-012345")
    sandbox_pending = await client.post(
        f"/v1/sandbox/payments/{_ids(await donate(client, organisation_id))[1]}/refund",
        headers=owner.headers,
    )

    assert error_of(pending, 409)["code"] == "donation_not_completed"
    assert error_of(failed, 409)["code"] == "donation_not_completed"
    assert error_of(refunded, 409)["code"] == "donation_refunded"
    assert error_of(sandbox_pending, 409)["code"] == "donation_not_completed"
    assert count_rows(superuser_sql, "donation_refunds") == refunds_before
    assert count_rows(superuser_sql, "idempotency_keys") == 0


async def test_who_may_refund_a_donation(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    viewer = await _member(client, owner, organisation_id, "viewer")
    admin = await _member(client, owner, organisation_id, "admin")
    _, read_only = await create_api_key(client, owner, organisation_id, read_only=True)
    key_id, writer = await create_api_key(client, owner, organisation_id)
    donation_id, _ = await _completed(client, organisation_id, amount=10_000)

    by_viewer = await _refund(client, viewer.headers, donation_id, amount=100)
    by_read_only_key = await _refund(client, bearer(read_only), donation_id, amount=100)
    anonymous = await _refund(client, {}, donation_id, amount=100)
    assert count_rows(superuser_sql, "donation_refunds") == 0
    by_admin = await _refund(
        client, admin.headers, donation_id, key="refund-admin-012345", amount=100
    )
    by_key = await _refund(
        client, bearer(writer), donation_id, key="refund-bykey-012345", amount=200
    )

    viewer_error = error_of(by_viewer, 403)
    assert (viewer_error["type"], viewer_error["code"]) == ("permission_error", "role_insufficient")
    assert error_of(by_read_only_key, 403)["code"] == "api_key_read_only"
    assert error_of(anonymous, 401)["code"] == "authentication_required"
    assert by_admin.status_code == by_key.status_code == 201, by_key.text
    assert sorted(
        superuser_sql(
            "SELECT amount, requested_by_user_id, requested_by_api_key_id FROM donation_refunds"
        )
    ) == [(100, admin.user_id, None), (200, None, key_id)]


async def test_another_organisations_admin_finds_no_such_donation(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    outsider, _ = await onboarded_organisation(client)
    donation_id, _ = await _completed(client, organisation_id)

    refund = await _refund(client, outsider.headers, donation_id, amount=100)
    read = await client.get(f"/v1/donations/{donation_id}", headers=outsider.headers)
    unknown = await _refund(client, outsider.headers, "don_" + "0" * 24, amount=100)

    for response in (refund, read, unknown):
        error = error_of(response, 404)
        assert (error["code"], error["param"], error["message"]) == (
            "resource_missing",
            "donation_id",
            "No such donation.",
        )
    assert count_rows(superuser_sql, "donation_refunds") == 0
    assert count_rows(superuser_sql, "idempotency_keys") == 0


# --- The sandbox ----------------------------------------------------------------------------


async def test_a_failed_sandbox_payment_fails_the_donation_without_a_ledger_entry(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner, organisation_id = await onboarded_organisation(client)
    checkout = await donate(client, organisation_id)
    donation_id, payment_intent_id = _ids(checkout)

    failed = await client.post(f"/v1/sandbox/payments/{payment_intent_id}/fail")
    again = await client.post(f"/v1/sandbox/payments/{payment_intent_id}/fail")
    read = await client.get(f"/v1/donations/{donation_id}", headers=owner.headers)

    assert failed.status_code == 200, failed.text
    assert (failed.json()["status"], failed.json()["ledger_entry"]) == ("failed", None)
    assert (read.json()["status"], read.json()["failure_code"]) == ("failed", "card_declined")
    assert read.json()["completed_at"] is None
    assert error_of(again, 409)["code"] == "payment_not_pending"
    assert count_rows(superuser_sql, ORGANISATION_ENTRIES) == 0
    # The donor may retry with another card: a failed payment can still succeed.
    await sandbox_succeed(client, checkout)
    retried = await client.get(f"/v1/donations/{donation_id}", headers=owner.headers)
    assert (retried.json()["status"], retried.json()["failure_code"]) == ("completed", None)


async def test_a_sandbox_payment_succeeds_only_once(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    checkout = await donate(client, organisation_id, amount=10_000)
    _, payment_intent_id = _ids(checkout)

    first = await client.post(f"/v1/sandbox/payments/{payment_intent_id}/succeed")
    second = await client.post(f"/v1/sandbox/payments/{payment_intent_id}/succeed")
    fail_after = await client.post(f"/v1/sandbox/payments/{payment_intent_id}/fail")

    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["ledger_entry"]["seq"]) == ("completed", 1)
    assert error_of(second, 409)["code"] == "payment_already_succeeded"
    assert error_of(fail_after, 409)["code"] == "payment_not_pending"
    assert superuser_sql(f"SELECT type, amount FROM {ORGANISATION_ENTRIES} ORDER BY seq") == [
        ("donation_received", 10_000),
        ("payment_processing_fee", -320),
    ]
    assert count_rows(superuser_sql, "stripe_events") == 1


async def test_an_unknown_sandbox_payment_is_not_found(client: httpx.AsyncClient) -> None:
    owner, _ = await onboarded_organisation(client)
    for action in ("succeed", "fail", "refund"):
        response = await client.post(
            f"/v1/sandbox/payments/pi_sandbox_{'0' * 24}/{action}", headers=owner.headers
        )
        error = error_of(response, 404)
        assert (error["code"], error["param"]) == ("resource_missing", "payment_id")


async def test_the_sandbox_is_off_when_stripe_keys_are_configured(
    client: httpx.AsyncClient, make_client: ClientFactory, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    donation_id, payment_intent_id = _ids(await donate(client, organisation_id))
    settings = Settings(
        environment="test",
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
        stripe_secret_key=SecretStr("sk_test_x"),
    )

    async with make_client(settings) as with_stripe:
        responses = [
            await with_stripe.post(f"/v1/sandbox/payments/{payment_intent_id}/{action}")
            for action in ("succeed", "fail", "refund")
        ]

    for response in responses:
        error = error_of(response, 404)
        assert (error["code"], error["param"]) == ("sandbox_disabled", None)
    assert superuser_sql("SELECT id, status FROM donations") == [(donation_id, "pending")]
    assert count_rows(superuser_sql, "stripe_events") == 0
    assert count_rows(superuser_sql, ORGANISATION_ENTRIES) == 0
