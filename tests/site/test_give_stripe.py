"""The give page in Stripe mode, in headless Chromium: the page creates the donation through
the checkout API, mounts the Payment Element with Stripe.js on the organisation's connected
account and confirms the payment (Stripe.js is the strict stand-in of tests/support/stripe_js.py,
served by the Stripe-protocol test server); the signed webhook puts the gift on the chain and
its receipt page proves it. Only that page's Content-Security-Policy allows Stripe.js."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest

from amply.main import create_app
from tests.conftest import IsolatedDatabase, cheapest_settings
from tests.site.conftest import Site, screenshot, serious_violations, served
from tests.stripe_harness import StripeServer

SLUG: Final = "stripe-give-site"
WEBHOOK_SECRET: Final = "whsec_site_give_page"


def _eventually(check: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "the webhook's effect did not arrive"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stripe_site(module_database: IsolatedDatabase, stripe_server: StripeServer) -> Iterator[Site]:
    """The app in Stripe mode (webhooks from the test server), an organisation whose
    connected account may take charges, and one of its funds."""
    stripe_server.reset()
    settings = cheapest_settings(
        checkout_max_per_address=1_000_000,
        checkout_max_per_email=1_000_000,
        checkpoint_interval_seconds=0,
        housekeeping_interval_seconds=0,
        stripe_secret_key=stripe_server.secret_key,
        stripe_publishable_key=stripe_server.publishable_key,
        stripe_connect_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=stripe_server.url,
        stripe_js_url=f"{stripe_server.url}/js.stripe.com/payment-element/v3/",
    )
    app = create_app(settings, database_url=module_database.urls.app)
    try:
        with served(app) as url:
            with httpx.Client(base_url=url, timeout=30) as http:
                stripe_server.register_webhook(f"{url}/v1/webhooks/stripe", WEBHOOK_SECRET)
                site = Site(url=url, http=http)
                token = site.signup()
                organisation_id = site.organisation(token, name="Stripe Rivers", slug=SLUG)
                headers = {"Authorization": f"Bearer {token}"}
                account = http.get(
                    f"/v1/organisations/{organisation_id}/stripe-account", headers=headers
                ).json()
                stripe_server.set_account(
                    account["account_id"],
                    charges_enabled=True,
                    payouts_enabled=True,
                    details_submitted=True,
                )
                _eventually(
                    lambda: http.get(
                        f"/v1/organisations/{organisation_id}/stripe-account", headers=headers
                    ).json()["accepts_donations"]
                )
                site.data.update(
                    organisation_id=organisation_id,
                    account_id=account["account_id"],
                    fund_id=site.fund(token, organisation_id, "Riverbanks"),
                    stripe_url=stripe_server.url,
                )
                yield site
    finally:
        stripe_server.reset()


def _received(site: Site) -> int:
    public = site.http.get(f"/v1/public/organisations/{site.data['organisation_id']}").json()
    return sum(t["received"] for t in public["totals"])


def test_a_stripe_gift_through_the_payment_element_lands_on_the_chain_and_its_receipt_proves_it(
    stripe_site: Site, page: Any
) -> None:
    site = stripe_site
    assert _received(site) == 0
    response = page.goto(f"{site.url}/o/{SLUG}/give")
    policy = response.headers["content-security-policy"]
    origin = site.data["stripe_url"]
    assert f"script-src 'self' {origin};" in policy
    assert f"connect-src 'self' {origin};" in policy
    assert f"frame-src {origin} https://hooks.stripe.com;" in policy
    assert "unsafe-inline" not in policy
    assert "Sandbox" not in page.inner_text("body")
    page.fill("#amount", "12.34")
    page.select_option("#fund", site.data["fund_id"])
    page.click("#give-continue")
    page.wait_for_selector("#stripe-standin-number")
    page.fill("#stripe-standin-number", "4242 4242 4242 4242")
    screenshot(page, "give-stripe")
    assert serious_violations(page) == []
    page.click("#give-pay")
    link = page.wait_for_selector("#receipt-link", timeout=30_000)
    href = link.get_attribute("href")
    assert href is not None
    assert href.startswith("/receipt#donation=don_")
    # The PaymentIntent was confirmed on the connected account, with the browser's card.
    confirms = [
        r
        for r in site_requests(site)
        if r.path.endswith("/confirm")
        and r.headers.get("stripe-account") == site.data["account_id"]
    ]
    assert len(confirms) == 1
    _eventually(lambda: _received(site) == 1234)  # after the signed webhook
    intents = page.evaluate("() => Object.keys(sessionStorage)")
    [kept] = [key for key in intents if key.startswith("amply.give.pi_")]
    page.click("#receipt-link")
    page.wait_for_url("**/receipt**")
    verdict = page.wait_for_selector(".verdict", timeout=30_000)
    assert verdict.get_attribute("data-ok") == "true", verdict.inner_text()
    assert "12.34 EUR" in page.inner_text("#receipt-facts")
    screenshot(page, "receipt-stripe")
    # Back from a redirect (3D Secure, a bank): the same receipt link.
    intent = kept.removeprefix("amply.give.")
    page.goto(f"{site.url}/o/{SLUG}/give?payment_intent={intent}&redirect_status=succeeded")
    returned = page.wait_for_selector("#give-returned #receipt-link")
    assert returned.get_attribute("href") == href
    page.goto(f"{site.url}/o/{SLUG}/give?payment_intent={intent}&redirect_status=failed")
    assert "did not go through" in page.inner_text("#give-returned")
    assert page.problems == []


def site_requests(site: Site) -> list[Any]:
    server = StripeServer(url=site.data["stripe_url"])
    try:
        return server.requests("/v1/payment_intents/")
    finally:
        server.close()


def test_only_the_stripe_give_page_allows_stripe_js(stripe_site: Site) -> None:
    origin = stripe_site.data["stripe_url"]
    give = stripe_site.http.get(f"/o/{SLUG}/give").headers["content-security-policy"]
    assert origin in give
    for path in ("/", f"/o/{SLUG}", f"/o/{SLUG}/ledger", f"/o/{SLUG}/verify", "/receipt"):
        response = stripe_site.http.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert origin not in policy, path
        assert "stripe" not in policy, path
