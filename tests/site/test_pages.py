"""The site's pages over HTTP (no browser): paging, what is not found, the assets' caching,
money in people's terms, and the sums kept per chain head."""

from __future__ import annotations

import httpx
import pytest

from amply.kit.db import Database
from amply.kit.settings import Settings
from amply.site import routes
from amply.site.service import summaries, summary_of
from tests.conftest import cheapest_settings
from tests.factories import append, donate, make_chain, onboarded_organisation, sandbox_succeed


@pytest.fixture
def settings() -> Settings:
    # One client gives 26 times: the velocity limits are for strangers.
    return cheapest_settings(checkout_max_per_address=1_000_000, checkout_max_per_email=1_000_000)


async def test_the_ledger_pages_and_the_index_page_through_long_lists(
    client: httpx.AsyncClient,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    slug = (await client.get(f"/v1/public/organisations/{organisation_id}")).json()["slug"]
    for _ in range(26):  # a donation and Stripe's fee each: 52 entries
        await sandbox_succeed(client, await donate(client, organisation_id))
    first = await client.get(f"/o/{slug}/ledger")
    assert first.status_code == 200
    assert f'href="/o/{slug}/ledger?after_seq=50" rel="next"' in first.text
    second = await client.get(f"/o/{slug}/ledger", params={"after_seq": 50})
    assert 'rel="prev"' in second.text
    assert 'rel="next"' not in second.text
    assert second.text.count("<tr>") == 52 - 50 + 1  # two entries and the header row
    assert (await client.get(f"/o/{slug}/ledger/52")).headers["cache-control"].endswith("86400")
    for missing in (f"/o/{slug}/ledger/0", f"/o/{slug}/ledger/53", "/o/nobody/ledger/1"):
        assert (await client.get(missing)).status_code == 404, missing
    for path in ("/o/nobody/ledger", "/o/nobody/verify", "/o/nobody/give"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["cache-control"] == "no-store"
    for _ in range(20):
        await onboarded_organisation(client)
    index = await client.get("/")
    assert "More organisations" in index.text
    assert "starting_after=" in index.text


async def test_the_assets_are_served_with_their_versions_and_validators(
    client: httpx.AsyncClient,
) -> None:
    asset = routes.ASSETS["verify-core.js"]
    fresh = await client.get(asset.url)
    assert fresh.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert fresh.headers["content-type"].startswith("text/javascript")
    assert fresh.content == asset.body
    unversioned = await client.get(f"/static/{asset.name}")
    assert unversioned.headers["cache-control"] == "no-cache"
    again = await client.get(asset.url, headers={"If-None-Match": fresh.headers["etag"]})
    assert again.status_code == 304
    assert (await client.get("/static/nothing.js")).status_code == 404
    assert routes.load_assets(routes.TEMPLATES_DIR) == {}  # templates are not assets


def test_stripe_js_is_allowed_with_stripes_documented_sources_only() -> None:
    live = Settings(stripe_secret_key="sk_test_x", stripe_publishable_key="pk_test_x")
    policy = routes.stripe_policy(live)
    assert policy == (
        "default-src 'none'; script-src 'self' https://js.stripe.com https://*.js.stripe.com; "
        "worker-src 'self'; connect-src 'self' https://api.stripe.com; "
        "frame-src https://js.stripe.com https://*.js.stripe.com https://hooks.stripe.com; "
        "style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )
    assert "stripe" not in routes.CONTENT_SECURITY_POLICY
    local = Settings(
        stripe_secret_key="sk_test_x",
        stripe_api_base="http://127.0.0.1:9",
        stripe_js_url="http://127.0.0.1:9/js.stripe.com/payment-element/v3/",
    )
    assert "script-src 'self' http://127.0.0.1:9;" in routes.stripe_policy(local)
    assert "js.stripe.com https" not in routes.stripe_policy(local)


def test_money_reads_as_people_write_it() -> None:
    assert routes.money(123456, "EUR") == "1,234.56 EUR"
    assert routes.money(-5, "EUR") == "\N{MINUS SIGN}0.05 EUR"
    assert routes.money(1500, "JPY") == "1,500 JPY"
    assert routes.short_hash(None) == "—"
    assert routes.when(None) == "—"
    assert routes.when("2026-11-21T09:30:00.000000Z") == "2026-11-21 09:30:00.000000 UTC"


async def test_the_sums_follow_the_head_the_page_shows(database: Database) -> None:
    chains = [await make_chain(database) for _ in range(2)]
    await append(database, chains[0], 500, entry_type="donation_received")
    await append(database, chains[0], -200, entry_type="payout_sent")
    async with database.session() as session:
        summary = await summary_of(session, chain_id=chains[0], head_seq=2)
        assert summary.payouts("EUR") == 200
        assert [t.net for t in summary.totals()] == [300]
        await append(database, chains[0], 100, entry_type="donation_received")
        both = await summaries(session, heads={chains[0]: 3, chains[1]: 0})
        assert [t.received for t in both[chains[0]].totals()] == [600]
        assert both[chains[1]].totals() == []
        # A page showing an older head shows that head's sums.
        older = await summary_of(session, chain_id=chains[0], head_seq=1)
        assert [t.net for t in older.totals()] == [500]
        assert older.payouts("EUR") == 0
