"""The public API: organisations, totals, ledger pages and verification, for anyone."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.verify import ChainVerifier, VerificationResult
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import (
    create_fund,
    create_organisation,
    donate,
    onboard,
    sandbox_succeed,
    sign_up,
)


async def _organisation_with_history(client: httpx.AsyncClient, *, slug: str) -> str:
    """Three completed donations (one anonymous, one to a fund, one half refunded) and a
    pending one."""
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner, slug=slug)
    await onboard(client, owner, organisation_id)
    fund_id = await create_fund(client, owner, organisation_id)
    named = await donate(
        client, organisation_id, amount=10_000, donor_name="Ada", donor_email="ada@example.org"
    )
    hidden = await donate(
        client, organisation_id, amount=5_000, donor_name="Grace", anonymous=True, message="hi"
    )
    funded = await donate(client, organisation_id, amount=2_000, fund_id=fund_id)
    await donate(client, organisation_id, amount=999)
    for checkout in (named, hidden, funded):
        await sandbox_succeed(client, checkout)
    refund = await client.post(
        f"/v1/donations/{named['donation']['id']}/refunds",  # type: ignore[index]
        json={"amount": 4_000, "reason": "requested_by_customer"},
        headers={**owner.headers, "Idempotency-Key": f"public-refund-{organisation_id}"},
    )
    assert refund.status_code == 201, refund.text
    payment = named["payment"]["payment_intent_id"]  # type: ignore[index]
    settled = await client.post(f"/v1/sandbox/payments/{payment}/refund", headers=owner.headers)
    assert settled.status_code == 200, settled.text
    return organisation_id


async def test_anyone_sees_an_organisations_totals_added_up_from_its_chain(
    client: httpx.AsyncClient,
) -> None:
    organisation_id = await _organisation_with_history(client, slug="clean-rivers")

    response = await client.get(f"/v1/public/organisations/{organisation_id}")

    assert response.status_code == 200, response.text
    assert "max-age" in response.headers["cache-control"]
    body = response.json()
    fees = (10_000 * 29 + 500) // 1000 + 30 + (5_000 * 29 + 500) // 1000 + 30 + 88
    assert body["totals"] == [
        {
            "currency": "EUR",
            "received": 17_000,
            "refunded": 4_000,
            "processing_fees": fees,
            "platform_fee": 0,
            "disputed": 0,
            "dispute_fees": 0,
            "payouts": 0,
            "net": 17_000 - 4_000 - fees,
            "donations": 3,
        }
    ]
    assert body["head"]["seq"] == 7
    assert body["accepts_donations"] is True
    [fund] = body["funds"]
    assert fund["totals"][0]["received"] == 2_000
    assert "stripe_account" not in response.text


async def test_ledger_pages_verify_with_the_auditors_code_and_carry_no_personal_data(
    client: httpx.AsyncClient,
) -> None:
    organisation_id = await _organisation_with_history(client, slug="ledger-pages")
    verifier = ChainVerifier(organisation_id, kind="organisation")
    after_seq, pages = 0, 0
    while True:
        response = await client.get(
            f"/v1/public/organisations/{organisation_id}/ledger",
            params={"after_seq": after_seq, "limit": 3},
        )
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        assert all(verifier.add(entry) for entry in page["data"])
        if not page["has_more"]:
            break
        after_seq = page["next_after_seq"]

    assert pages == 3
    result = verifier.result()
    assert (result.ok, result.head_seq) == (True, 7)
    text = response.text + str(verifier.result())
    for private in ("ada@example.org", "Grace", '"hi"', "127.0.0.1", "testclient"):
        assert private not in text


# Valid RFC 3339 times whose UTC reading is in the year 0 or the year 10000.
BEFORE_THE_YEAR_1_UTC = "0001-01-01T00:00:00+01:00"
AFTER_THE_YEAR_9999_UTC = "9999-12-31T23:59:59-01:00"


async def test_ledger_time_filters_beyond_the_years_a_datetime_holds_are_open_ended(
    client: httpx.AsyncClient,
) -> None:
    organisation_id = await _organisation_with_history(client, slug="far-times")
    url = f"/v1/public/organisations/{organisation_id}/ledger"
    everything = (await client.get(url)).json()["data"]

    since_ever = await client.get(url, params={"created_gte": BEFORE_THE_YEAR_1_UTC})
    until_ever = await client.get(url, params={"created_lt": AFTER_THE_YEAR_9999_UTC})
    before_ever = await client.get(url, params={"created_lt": BEFORE_THE_YEAR_1_UTC})
    after_ever = await client.get(url, params={"created_gte": AFTER_THE_YEAR_9999_UTC})

    assert everything
    assert since_ever.json()["data"] == until_ever.json()["data"] == everything
    assert before_ever.json()["data"] == after_ever.json()["data"] == []


async def test_ledger_pages_filter_by_type_and_time(client: httpx.AsyncClient) -> None:
    organisation_id = await _organisation_with_history(client, slug="filtered")
    url = f"/v1/public/organisations/{organisation_id}/ledger"

    received = await client.get(url, params={"type": "donation_received"})
    fees_and_refunds = await client.get(
        url, params=[("type", "payment_processing_fee"), ("type", "donation_refunded")]
    )
    future = await client.get(url, params={"created_gte": "2999-01-01T00:00:00Z"})
    past = await client.get(url, params={"created_lt": "2000-01-01T00:00:00"})
    bad_type = await client.get(url, params={"type": "made_up"})

    assert [e["amount"] for e in received.json()["data"]] == [10_000, 5_000, 2_000]
    assert {e["type"] for e in fees_and_refunds.json()["data"]} == {
        "payment_processing_fee",
        "donation_refunded",
    }
    assert future.json()["data"] == past.json()["data"] == []
    assert bad_type.status_code == 422


async def test_search_and_pages_of_organisations(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    for slug in ("alpha-water", "beta-water", "gamma-food", "percent-50"):
        await create_organisation(client, owner, slug=slug)

    water = await client.get("/v1/public/organisations", params={"search": "WATER"})
    first = await client.get("/v1/public/organisations", params={"limit": 2})
    second = await client.get(
        "/v1/public/organisations",
        params={"limit": 2, "starting_after": first.json()["data"][-1]["id"]},
    )
    literal = await client.get("/v1/public/organisations", params={"search": "%"})

    assert [o["slug"] for o in water.json()["data"]] == ["alpha-water", "beta-water"]
    assert [o["slug"] for o in first.json()["data"] + second.json()["data"]] == [
        "alpha-water",
        "beta-water",
        "gamma-food",
        "percent-50",
    ]
    assert first.json()["has_more"] is True
    assert second.json()["has_more"] is False
    assert literal.json()["data"] == []
    assert water.json()["data"][0]["head"] == {
        "chain_id": water.json()["data"][0]["id"],
        "seq": 0,
        "entry_hash": None,
    }
    assert water.json()["data"][0]["totals"] == []


def _tamper_entry(superuser_sql: SuperuserSql, organisation_id: str, seq: int) -> None:
    superuser_sql("ALTER TABLE ledger_entries DISABLE TRIGGER ALL")
    superuser_sql(
        "UPDATE ledger_entries SET amount = amount + 1 WHERE chain_id = %s AND seq = %s",
        organisation_id,
        seq,
    )
    superuser_sql("ALTER TABLE ledger_entries ENABLE TRIGGER ALL")


async def test_the_servers_verification_catches_a_tampered_entry(
    make_client: ClientFactory, settings: Settings, superuser_sql: SuperuserSql
) -> None:
    async with make_client(settings.model_copy(update={"verify_cache_seconds": 0})) as client:
        organisation_id = await _organisation_with_history(client, slug="tamper-me")
        url = f"/v1/public/organisations/{organisation_id}/ledger/verify"
        honest = await client.get(url)
        _tamper_entry(superuser_sql, organisation_id, 3)
        tampered = await client.get(url)

    assert honest.json()["ok"] is True
    assert honest.json()["entries_checked"] == 7
    assert tampered.json()["ok"] is False
    assert tampered.json()["broken_seq"] == 3
    assert tampered.json()["verdict"].startswith("BROKEN")


async def test_concurrent_verifications_of_a_chain_hash_it_once_per_cache_period(
    make_client: ClientFactory,
    settings: Settings,
    superuser_sql: SuperuserSql,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    computed: list[str] = []
    verify_chain = ledger.verify_chain

    async def counting(session: AsyncSession, *, chain_id: str) -> VerificationResult:
        computed.append(chain_id)
        return await verify_chain(session, chain_id=chain_id)

    monkeypatch.setattr(ledger, "verify_chain", counting)
    async with make_client(settings.model_copy(update={"verify_cache_seconds": 0.5})) as client:
        organisation_id = await _organisation_with_history(client, slug="verify-once")
        url = f"/v1/public/organisations/{organisation_id}/ledger/verify"
        burst = await asyncio.gather(*(client.get(url) for _ in range(6)))
        _tamper_entry(superuser_sql, organisation_id, 2)
        kept = await client.get(url)
        await asyncio.sleep(0.6)
        fresh = await client.get(url)

    assert computed == [organisation_id, organisation_id]
    assert {response.json()["checked_at"] for response in [*burst, kept]} == {
        burst[0].json()["checked_at"]
    }
    assert all(response.json()["ok"] for response in [*burst, kept])
    assert fresh.json()["ok"] is False
    assert fresh.json()["broken_seq"] == 2


@pytest.mark.parametrize(
    "path",
    [
        "/v1/public/organisations/not-an-id",
        "/v1/public/organisations/org_short/ledger",
        "/v1/public/organisations/org_%00/ledger/verify",
        "/v1/public/organisations/org_000000000000000000000000/ledger?after_seq=-1",
        "/v1/public/organisations/org_000000000000000000000000/ledger?limit=100000",
    ],
)
async def test_bad_ids_and_parameters_are_422(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 422, response.text


@pytest.mark.parametrize("suffix", ["", "/ledger", "/ledger/verify"])
async def test_unknown_organisations_are_404(client: httpx.AsyncClient, suffix: str) -> None:
    response = await client.get(f"/v1/public/organisations/org_000000000000000000000000{suffix}")

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No such organisation."
