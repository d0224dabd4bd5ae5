"""Donations in sandbox mode (no Stripe keys): checkout, completion, refunds, the ledger."""

from __future__ import annotations

import httpx

from amply.kit.db import Database
from amply.ledger import service as ledger
from tests.factories import (
    create_organisation,
    donate,
    onboard,
    onboarded_organisation,
    sandbox_succeed,
    sign_up,
)


async def test_a_sandbox_donation_reaches_the_ledger_net_of_the_simulated_fee(
    client: httpx.AsyncClient, database: Database
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    checkout = await donate(client, organisation_id, donor_name="Ada", amount=10_000)

    await sandbox_succeed(client, checkout)

    donation = checkout["donation"]
    assert isinstance(donation, dict)
    receipt = await client.get(
        f"/v1/donations/{donation['id']}",
        headers={"X-Receipt-Token": str(checkout["receipt_token"])},
    )
    assert receipt.status_code == 200, receipt.text
    assert receipt.json()["status"] == "completed"
    assert receipt.json()["ledger_entry"]["seq"] == 1
    async with database.session() as session:
        page = await ledger.list_entries(session, chain_id=organisation_id)
        result = await ledger.verify_chain(session, chain_id=organisation_id)
    assert [(e.type, e.amount) for e in page.entries] == [
        ("donation_received", 10_000),
        ("payment_processing_fee", -320),
    ]
    assert result.ok


async def test_links_and_refreshes_need_the_account_first(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    base = f"/v1/organisations/{organisation_id}/stripe-account"

    status = await client.get(base, headers=owner.headers)
    link = await client.post(
        f"{base}/links",
        json={"refresh_url": "https://org.example/again", "return_url": "https://org.example/"},
        headers=owner.headers,
    )
    refresh = await client.post(f"{base}/refresh", headers=owner.headers)
    await onboard(client, owner, organisation_id)
    ready = await client.post(
        f"{base}/links",
        json={"refresh_url": "https://org.example/again", "return_url": "https://org.example/"},
        headers=owner.headers,
    )
    refreshed = await client.post(f"{base}/refresh", headers=owner.headers)

    assert status.json()["account_id"] is None
    assert status.json()["accepts_donations"] is False
    assert [link.status_code, refresh.status_code] == [409, 409]
    assert link.json()["error"]["code"] == "stripe_account_missing"
    assert ready.json() == {
        "object": "account_link",
        "url": "https://org.example/",
        "expires_at": None,
        "purpose": "update",
    }
    assert refreshed.json()["accepts_donations"] is True
