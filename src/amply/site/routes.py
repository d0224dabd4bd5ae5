"""The public transparency site: server-rendered pages (Jinja2) over the public chains, with
small hand-written JavaScript modules for what needs the browser (verification, giving, the
donor's receipt). Every asset is served by Amply, named in the pages with its Subresource
Integrity hash, under a Content-Security-Policy without ``'unsafe-inline'``.

The pages are not API operations: they are left out of the OpenAPI document
(:data:`SITE_PATHS` lists them).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from amply.kit.dependencies import ReadSessionDep, SettingsDep
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.site.service import ChainSummary, funds_of, latest_checkpoint, summaries, summary_of
from amply.site.service import organisation_by_slug as find_organisation
from amply.transparency import service as transparency
from amply.verify.crypto import canonical_preimage

_PACKAGE: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = _PACKAGE / "static"
TEMPLATES_DIR: Final = _PACKAGE / "templates"
STATIC_URL: Final = "/static"
_MEDIA_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The policy of every page: scripts, workers, styles and fetches from Amply only, no inline
# script or style, no plugin, no framing, forms only to Amply.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; worker-src 'self'; connect-src 'self'; "
    "style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# Stripe.js, which Stripe requires be loaded from https://js.stripe.com, needs these sources
# (Stripe's Content-Security-Policy list for Stripe.js, less maps.googleapis.com, which only the
# Address Element uses). Only the give page in Stripe mode has them.
STRIPE_JS_ORIGIN: Final = "https://js.stripe.com"
STRIPE_JS_SOURCES: Final = "https://js.stripe.com https://*.js.stripe.com"
STRIPE_FRAME_SOURCES: Final = "https://hooks.stripe.com"
STRIPE_API_ORIGIN: Final = "https://api.stripe.com"
PAGE_CACHE: Final = "public, max-age=30, stale-while-revalidate=60"
# An entry never changes once written: its page is kept a day (the organisation's name in its
# breadcrumbs may change meanwhile).
ENTRY_CACHE: Final = "public, max-age=86400"
ENTRIES_PER_PAGE: Final = 50
LATEST_ENTRIES: Final = 10
# Paths of the site (for the test that every API route is documented).
SITE_PATHS: Final = frozenset(
    {
        "/",
        "/o/{slug}",
        "/o/{slug}/ledger",
        "/o/{slug}/ledger/{seq}",
        "/o/{slug}/verify",
        "/o/{slug}/give",
        "/receipt",
        STATIC_URL + "/{name}",
    }
)


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def stripe_policy(settings: Settings) -> str:
    """The give page's policy in Stripe mode: the site's, plus what Stripe.js needs (scripts
    and frames from Stripe.js's origin, 3D Secure frames from hooks.stripe.com, requests to
    Stripe's API). ``stripe_js_url`` and ``stripe_api_base`` point elsewhere only in tests."""
    js_origin = _origin(settings.stripe_js_url)
    js = STRIPE_JS_SOURCES if js_origin == STRIPE_JS_ORIGIN else js_origin
    api = _origin(settings.stripe_api_base) if settings.stripe_api_base else STRIPE_API_ORIGIN
    return (
        f"default-src 'none'; script-src 'self' {js}; worker-src 'self'; "
        f"connect-src 'self' {api}; frame-src {js} {STRIPE_FRAME_SOURCES}; "
        "style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file: its bytes, media type, SRI hash and versioned URL."""

    name: str
    body: bytes
    media_type: str
    integrity: str
    version: str

    @property
    def url(self) -> str:
        return f"{STATIC_URL}/{self.name}?v={self.version}"


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every file of the static directory, hashed once (at start-up)."""
    assets = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix not in _MEDIA_TYPES:
            continue
        body = path.read_bytes()
        digest = hashlib.sha384(body).digest()
        assets[path.name] = Asset(
            name=path.name,
            body=body,
            media_type=_MEDIA_TYPES[path.suffix],
            integrity="sha384-" + base64.b64encode(digest).decode(),
            version=hashlib.sha256(body).hexdigest()[:12],
        )
    return assets


ASSETS: Final = load_assets()

_ZERO_DECIMAL: Final = frozenset(
    [
        "BIF",
        "CLP",
        "DJF",
        "GNF",
        "ISK",
        "JPY",
        "KMF",
        "KRW",
        "PYG",
        "RWF",
        "UGX",
        "UYI",
        "VND",
        "VUV",
        "XAF",
        "XOF",
        "XPF",
    ]
)


def money(amount: int, currency: str) -> str:
    """Minor units as a person reads them: ``-1,234.50 EUR`` (integers only, no float)."""
    sign = "\N{MINUS SIGN}" if amount < 0 else ""
    magnitude = abs(amount)
    if currency.upper() in _ZERO_DECIMAL:
        return f"{sign}{magnitude:,} {currency}"
    return f"{sign}{magnitude // 100:,}.{magnitude % 100:02d} {currency}"


def short_hash(value: str | None) -> str:
    if not value:
        return "—"
    return value.removeprefix("sha256:")[:12] + "…"


def when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ").replace("Z", " UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_environment = Environment(
    loader=FileSystemLoader(str(TEMPLATES_DIR)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters.update(money=money, short_hash=short_hash, when=when)
_environment.globals.update(assets=ASSETS)

router = APIRouter(include_in_schema=False)


def _page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    cache: str = PAGE_CACHE,
    policy: str = CONTENT_SECURITY_POLICY,
    **context: Any,
) -> Response:
    """Render a page with its ETag (a repeat with If-None-Match gets 304), cache and CSP."""
    body = _environment.get_template(template).render(request=request, **context).encode()
    tag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": tag,
        "Cache-Control": cache if status == 200 else "no-store",
        "Content-Security-Policy": policy,
        "Vary": "Accept-Encoding",
    }
    if status == 200 and tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return HTMLResponse(body, status_code=status, headers=headers)


def _not_found(request: Request, what: str) -> Response:
    return _page(request, "not_found.html", status=404, what=what)


@router.get(STATIC_URL + "/{name}")
async def static_file(name: str, request: Request) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        return Response("not found", status_code=404, media_type="text/plain")
    versioned = request.query_params.get("v") == asset.version
    headers = {
        "ETag": f'"{asset.version}"',
        "Cache-Control": "public, max-age=31536000, immutable" if versioned else "no-cache",
        "X-Content-Type-Options": "nosniff",
        # A worker runs under its script's own policy: the site's, so that it may fetch.
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    }
    if f'"{asset.version}"' in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def index(
    request: Request,
    session: ReadSessionDep,
    q: Annotated[str | None, Query(max_length=100)] = None,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    page = await transparency.list_organisations(
        session, search=q or None, starting_after=starting_after, limit=20
    )
    ids = [organisation.id for organisation in page.items]
    heads = await ledger.get_heads(session, chain_ids=ids) if ids else {}
    sums = await summaries(session, heads={chain_id: heads[chain_id].seq for chain_id in ids})
    rows = [
        {
            "organisation": organisation,
            "head": heads[organisation.id],
            "totals": sums[organisation.id].totals(),
        }
        for organisation in page.items
    ]
    return _page(
        request,
        "index.html",
        rows=rows,
        q=q or "",
        next_after=ids[-1] if page.has_more and ids else None,
    )


def _months(summary: ChainSummary, currency: str, *, count: int = 12) -> list[dict[str, Any]]:
    """The last ``count`` months with giving, oldest first, with bar heights out of 100."""
    months = sorted(m for m, c in summary.months if c == currency)[-count:]
    values = [summary.months[(m, currency)] for m in months]
    top = max(values, default=0) or 1
    return [
        {"month": m, "amount": v, "height": max(1, v * 100 // top) if v > 0 else 0}
        for m, v in zip(months, values, strict=True)
    ]


@router.get("/o/{slug}")
async def organisation_page(slug: str, request: Request, session: ReadSessionDep) -> Response:
    organisation = await find_organisation(session, slug=slug)
    if organisation is None:
        return _not_found(request, "organisation")
    head = await ledger.get_head(session, chain_id=organisation.id)
    summary = await summary_of(session, chain_id=organisation.id, head_seq=head.seq)
    totals = summary.totals()
    latest = await transparency.ledger_page(
        session,
        chain_id=organisation.id,
        kind="organisation",
        after_seq=max(0, head.seq - LATEST_ENTRIES),
        limit=LATEST_ENTRIES,
    )
    checkpoint = await latest_checkpoint(session, chain_id=organisation.id)
    fund_rows = []
    for fund in await funds_of(session, organisation_id=organisation.id):
        sums = [
            (currency, values)
            for (fund_id, currency), values in sorted(summary.funds.items())
            if fund_id == fund.id
        ]
        fund_rows.append({"fund": fund, "sums": sums})
    charts = {t.currency: _months(summary, t.currency) for t in totals}
    return _page(
        request,
        "organisation.html",
        organisation=organisation,
        head=head,
        totals=totals,
        payouts={t.currency: summary.payouts(t.currency) for t in totals},
        charts=charts,
        latest=list(reversed(latest.rows)),
        checkpoint=checkpoint,
        funds=fund_rows,
        export_url=f"/v1/public/organisations/{organisation.id}/ledger/export",
    )


@router.get("/o/{slug}/ledger")
async def ledger_page(
    slug: str,
    request: Request,
    session: ReadSessionDep,
    after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> Response:
    organisation = await find_organisation(session, slug=slug)
    if organisation is None:
        return _not_found(request, "organisation")
    head = await ledger.get_head(session, chain_id=organisation.id)
    page = await transparency.ledger_page(
        session,
        chain_id=organisation.id,
        kind="organisation",
        after_seq=after_seq,
        limit=ENTRIES_PER_PAGE,
    )
    return _page(
        request,
        "ledger.html",
        organisation=organisation,
        head=head,
        rows=page.rows,
        after_seq=after_seq,
        next_after=page.rows[-1]["seq"] if page.has_more else None,
        previous_after=max(0, after_seq - ENTRIES_PER_PAGE) if after_seq > 0 else None,
        per_page=ENTRIES_PER_PAGE,
    )


def _preimage_parts(row: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """(field, text, UTF-8 length) of each of the twelve netstrings of §2.2."""
    texts = [
        ("version tag", "amply-ledger-entry/v1"),
        ("chain_id", row["chain_id"]),
        ("seq", str(row["seq"])),
        ("id", row["id"]),
        ("type", row["type"]),
        ("amount", str(row["amount"])),
        ("currency", row["currency"]),
        ("balance_after", str(row["balance_after"])),
        ("metadata", row["metadata"]),
        ("journal_id", row["journal_id"]),
        ("created_at", row["created_at"]),
        ("prev_entry_hash", row["prev_entry_hash"] or ""),
    ]
    return [(name, text, len(text.encode())) for name, text in texts]


@router.get("/o/{slug}/ledger/{seq}")
async def entry_page(
    slug: str,
    request: Request,
    session: ReadSessionDep,
    seq: int,
) -> Response:
    organisation = await find_organisation(session, slug=slug)
    if organisation is None or not 1 <= seq <= 2**63 - 1:
        return _not_found(request, "entry")
    page = await transparency.ledger_page(
        session, chain_id=organisation.id, kind="organisation", after_seq=seq - 1, limit=1
    )
    if not page.rows:
        return _not_found(request, "entry")
    row = page.rows[0]
    preimage = canonical_preimage(dict(row))
    recomputed = "sha256:" + hashlib.sha256(preimage).hexdigest()
    return _page(
        request,
        "entry.html",
        cache=ENTRY_CACHE,
        organisation=organisation,
        row=row,
        parts=_preimage_parts(dict(row)),
        preimage=preimage.decode(),
        recomputed=recomputed,
        shell=_shell_command(preimage.decode()),
    )


def _shell_command(preimage: str) -> str:
    quoted = preimage.replace("'", "'\\''")
    return f"printf '%s' '{quoted}' | sha256sum"


@router.get("/o/{slug}/verify")
async def verify_page(slug: str, request: Request, session: ReadSessionDep) -> Response:
    organisation = await find_organisation(session, slug=slug)
    if organisation is None:
        return _not_found(request, "organisation")
    head = await ledger.get_head(session, chain_id=organisation.id)
    return _page(
        request,
        "verify.html",
        organisation=organisation,
        head=head,
        export_url=f"/v1/public/organisations/{organisation.id}/ledger/export",
        keys_url="/v1/public/keys",
    )


@router.get("/o/{slug}/give")
async def give_page(
    slug: str,
    request: Request,
    session: ReadSessionDep,
    settings: SettingsDep,
    fund: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    organisation = await find_organisation(session, slug=slug)
    if organisation is None:
        return _not_found(request, "organisation")
    funds = [
        f for f in await funds_of(session, organisation_id=organisation.id) if f.status == "open"
    ]
    accepts = organisation.charges_enabled or settings.sandbox_mode
    stripe = accepts and not settings.sandbox_mode
    return _page(
        request,
        "give.html",
        policy=stripe_policy(settings) if stripe else CONTENT_SECURITY_POLICY,
        organisation=organisation,
        funds=funds,
        chosen_fund=fund,
        sandbox=settings.sandbox_mode,
        accepts=accepts,
        stripe_js_url=settings.stripe_js_url if stripe else None,
    )


@router.get("/receipt")
async def receipt_page(request: Request) -> Response:
    # The donation id and the receipt token stay in the URL's fragment: the browser never
    # sends it, so no server (or log, or proxy) sees the token.
    return _page(request, "receipt.html", keys_url="/v1/public/keys")
