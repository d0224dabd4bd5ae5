"""The public site in headless Chromium: the pages show what the public chain says, the
in-browser verifier gives `amply verify`'s verdicts (on an honest chain, on a tampered
export, and on every conformance case), a sandbox donation made through the give page lands
on the chain and its receipt page proves it, and every page passes axe-core with no serious
violation under a Content-Security-Policy without 'unsafe-inline'."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Final

import pytest

from tests.site.conftest import Site, screenshot, serious_violations

CONFORMANCE: Final = Path(__file__).resolve().parents[2] / "conformance"
SLUG: Final = "clean-rivers-site"


@pytest.fixture(scope="module")
def world(site: Site) -> dict[str, Any]:
    """An organisation with a fund and a few donations, one named."""
    token = site.signup()
    organisation_id = site.organisation(token, name="Clean Rivers", slug=SLUG)
    fund_id = site.fund(token, organisation_id, "River clean-up")
    site.donate(organisation_id, 2500)
    site.donate(organisation_id, 4000, fund_id=fund_id, donor_name="Zoë Ångström")
    site.donate(organisation_id, 1234, fund_id=fund_id, anonymous=True)
    public = site.http.get(f"/v1/public/organisations/{organisation_id}").json()
    # An export signs the head: the page shows that checkpoint.
    export = site.http.get(f"/v1/public/organisations/{organisation_id}/ledger/export").json()
    return {
        "organisation_id": organisation_id,
        "fund_id": fund_id,
        "public": public,
        "checkpoint": export["checkpoint"],
    }


def _money(amount: int) -> str:
    sign = "\N{MINUS SIGN}" if amount < 0 else ""
    return f"{sign}{abs(amount) // 100:,}.{abs(amount) % 100:02d} EUR"


def test_the_organisation_page_shows_the_chains_totals(
    site: Site, world: dict[str, Any], page: Any
) -> None:
    response = page.goto(f"{site.url}/o/{SLUG}")
    assert response.status == 200
    [totals] = world["public"]["totals"]
    row = page.locator("table").first
    assert row.locator("[data-total=received]").inner_text() == _money(totals["received"])
    assert row.locator("[data-total=fees]").inner_text() == _money(totals["processing_fees"])
    assert row.locator("[data-total=net]").inner_text() == _money(totals["net"])
    assert row.locator("[data-total=platform-fee]").inner_text() == _money(0)
    assert row.locator("[data-total=donations]").inner_text() == "3"
    assert page.locator("svg[role=img] rect").count() >= 1  # giving per month
    assert "River clean-up" in page.inner_text("body")
    head = world["public"]["head"]
    assert page.locator("table.entries tbody tr").count() == min(10, head["seq"])
    checkpoint = page.locator("section", has=page.locator("#checkpoint"))
    assert f"{head['seq']} entries" in checkpoint.inner_text()
    assert world["checkpoint"]["key"] in checkpoint.inner_text()
    assert head["entry_hash"] in checkpoint.inner_text()
    screenshot(page, "organisation")
    assert serious_violations(page) == []
    assert page.problems == []


def test_every_page_has_the_policy_integrity_and_cache_validators(
    site: Site, world: dict[str, Any]
) -> None:
    for path in (
        "/",
        f"/o/{SLUG}",
        f"/o/{SLUG}/ledger",
        f"/o/{SLUG}/ledger/1",
        f"/o/{SLUG}/verify",
        f"/o/{SLUG}/give",
        "/receipt",
    ):
        response = site.http.get(path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "unsafe-inline" not in policy, path
        assert "script-src 'self'" in policy, path
        for tag in re.findall(r"<(?:script|link)\b[^>]*>", response.text):
            assert re.search(r'integrity="sha384-[A-Za-z0-9+/=]+"', tag), (path, tag)
            asset = re.search(r'(?:src|href)="([^"]+)"', tag)
            assert asset is not None
            assert asset.group(1).startswith("/static/")
            served = site.http.get(asset.group(1))
            digest = base64.b64encode(hashlib.sha384(served.content).digest())
            assert f"sha384-{digest.decode()}" in tag
        again = site.http.get(path, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304, path
    assert site.http.get("/o/no-such-organisation").status_code == 404


def test_the_ledger_and_entry_pages_show_each_entry_and_its_preimage(
    site: Site, world: dict[str, Any], page: Any
) -> None:
    page.goto(f"{site.url}/o/{SLUG}/ledger")
    rows = page.locator("table.entries tbody tr")
    assert rows.count() == world["public"]["head"]["seq"]
    screenshot(page, "ledger")
    assert serious_violations(page) == []
    page.locator("table.entries tbody tr").nth(1).locator("a").first.click()
    page.wait_for_url(f"**/o/{SLUG}/ledger/2")
    stored = page.locator("#stored-hash").inner_text()
    assert page.locator("#recomputed").inner_text() == stored
    export = site.http.get(f"/v1/public/organisations/{world['organisation_id']}/ledger/export")
    assert export.json()["entries"][1]["entry_hash"] == stored
    screenshot(page, "entry")
    assert serious_violations(page) == []


def _verify(page: Any, url: str) -> dict[str, str]:
    page.goto(url)
    page.click("#verify-button")
    verdict = page.wait_for_selector(".verdict", timeout=30_000)
    return {
        "exit": verdict.get_attribute("data-exit") or "",
        "broken": verdict.get_attribute("data-broken-seq") or "",
        "text": verdict.inner_text(),
    }


def test_the_browser_verifies_an_honest_chain(site: Site, world: dict[str, Any], page: Any) -> None:
    outcome = _verify(page, f"{site.url}/o/{SLUG}/verify")
    seq = world["public"]["head"]["seq"]
    assert outcome["exit"] == "0", outcome
    assert f"All {seq} entries verified; head sha256:" in outcome["text"]
    assert "signed by" in outcome["text"]
    assert page.locator("#verify-progress").get_attribute("value") == "100"
    screenshot(page, "verify")
    assert serious_violations(page) == []
    assert page.problems == []


def test_the_browser_names_the_first_broken_entry_of_a_tampered_export(
    site: Site, world: dict[str, Any], page: Any
) -> None:
    url = f"/v1/public/organisations/{world['organisation_id']}/ledger/export"
    export = site.http.get(url).json()
    # The forger changes entry 3's metadata and leaves its hash: entry 3 no longer matches.
    export["entries"][2]["metadata"] = export["entries"][2]["metadata"].replace(
        '"donor":', '"donor_was":', 1
    )
    tampered = json.dumps(export).encode()
    page.context.route(
        f"**{url}", lambda route: route.fulfill(body=tampered, content_type="application/json")
    )
    outcome = _verify(page, f"{site.url}/o/{SLUG}/verify")
    assert outcome["exit"] == "1", outcome
    assert outcome["broken"] == "3"
    assert "Entry 3 does not match its hash." in outcome["text"]
    assert "Recomputed hash" in outcome["text"]
    screenshot(page, "verify-tampered")


def test_the_browsers_verifier_passes_every_conformance_case(site: Site, page: Any) -> None:
    manifest = json.loads((CONFORMANCE / "manifest.json").read_text(encoding="utf-8"))
    cases = manifest["cases"]
    files: dict[str, str] = {}
    for case in cases:
        for arg in case["args"]:
            path = CONFORMANCE / arg
            if path.is_file():
                files[arg] = base64.b64encode(path.read_bytes()).decode()
    page.goto(f"{site.url}/o/{SLUG}/verify")
    worker_url = page.locator("#verifier").get_attribute("data-worker-url")
    outcomes = page.evaluate(
        """async ([workerUrl, cases, encoded]) => {
            const files = {};
            for (const [name, text] of Object.entries(encoded)) {
                files[name] = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
            }
            const worker = new Worker(workerUrl, { type: "module" });
            const answers = [];
            for (const [i, c] of cases.entries()) {
                const mine = {};
                for (const arg of c.args) if (files[arg]) mine[arg] = files[arg];
                answers.push(await new Promise((resolve) => {
                    worker.onmessage = (event) => resolve(event.data);
                    worker.postMessage({ type: "run", id: i, command: c.command,
                                         args: c.args, files: mine });
                }));
            }
            worker.terminate();
            return answers.map((a) => ({ exit: a.exit, seq: a.result ? a.result.broken_seq : null,
                                         why: a.error || (a.result && a.result.reason) }));
        }""",
        [worker_url, cases, files],
    )
    wrong = [
        (case["id"], case["exit"], case["seq"], got)
        for case, got in zip(cases, outcomes, strict=True)
        if got["exit"] != case["exit"] or (case["exit"] == 1 and got["seq"] != case["seq"])
    ]
    assert len(outcomes) == len(cases) >= 100
    assert wrong == []


def test_a_sandbox_gift_through_the_page_lands_on_the_chain_and_its_receipt_proves_it(
    site: Site, world: dict[str, Any], page: Any
) -> None:
    before = site.http.get(f"/v1/public/organisations/{world['organisation_id']}").json()
    page.goto(f"{site.url}/o/{SLUG}/give")
    assert "Sandbox mode: no real money." in page.inner_text("body")
    screenshot(page, "give")
    assert serious_violations(page) == []
    page.fill("#amount", "12.34")
    page.select_option("#fund", world["fund_id"])
    page.click("button[type=submit]")
    page.wait_for_url("**/receipt**")
    verdict = page.wait_for_selector(".verdict", timeout=30_000)
    text = verdict.inner_text()
    assert verdict.get_attribute("data-ok") == "true", text
    after = site.http.get(f"/v1/public/organisations/{world['organisation_id']}").json()
    assert after["totals"][0]["received"] == before["totals"][0]["received"] + 1234
    assert f"entry {before['head']['seq'] + 1} of {world['organisation_id']}" in text
    assert "12.34 EUR" in page.inner_text("#receipt-facts")
    assert "token=" not in page.url  # the fragment left the address bar
    screenshot(page, "receipt")
    assert serious_violations(page) == []
    assert page.problems == []


def test_the_index_lists_and_searches_organisations(
    site: Site, world: dict[str, Any], page: Any
) -> None:
    page.goto(f"{site.url}/")
    assert page.locator("a", has_text="Clean Rivers").count() == 1
    page.fill("#q", "no such name at all")
    page.keyboard.press("Enter")
    page.wait_for_url("**/?q=*")
    assert "No organisation matches" in page.inner_text("main")
    page.goto(f"{site.url}/?q=rivers")
    assert page.locator("a", has_text="Clean Rivers").count() == 1
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    screenshot(page, "index-phone")
    assert serious_violations(page) == []
