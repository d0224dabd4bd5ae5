"""Every non-public route of the app refuses anonymous callers (401) and answers 404 to the
members and API keys of another organisation.

The routes come from the app's OpenAPI document, which FastAPI builds from the router, so a
new route is covered automatically; a new *public* route must be added to PUBLIC below,
which is where a reviewer sees it. (A route hidden from the schema would escape: we have none,
and ``test_no_route_is_hidden_from_the_schema`` keeps it so.)
"""

from __future__ import annotations

import re

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute

from amply.kit.settings import Settings
from amply.main import create_app
from amply.site.routes import SITE_PATHS
from tests.factories import (
    Account,
    bearer,
    create_api_key,
    create_fund,
    create_organisation,
    donate,
    onboard,
    sign_up,
)

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    # Operators' metrics: no personal data; expose to the monitoring network only.
    ("GET", "/metrics"),
    ("POST", "/v1/auth/signup"),
    ("POST", "/v1/auth/login"),
    # Checkout is public (an API key is optional); Stripe signs its webhooks; the sandbox
    # exists only without Stripe keys, and a donor (who has no account) confirms their
    # payment there. (A card deposit's payment needs its wallet's owner: test_sandbox_access.)
    ("POST", "/v1/donations"),
    ("POST", "/v1/webhooks/stripe"),
    ("POST", "/v1/sandbox/payments/{payment_id}/succeed"),
    ("POST", "/v1/sandbox/payments/{payment_id}/fail"),
    # Transparency: anyone may read organisations and their ledgers.
    ("GET", "/v1/public/organisations"),
    ("GET", "/v1/public/organisations/{organisation_id}"),
    ("GET", "/v1/public/organisations/{organisation_id}/ledger"),
    ("GET", "/v1/public/organisations/{organisation_id}/checkpoint"),
    ("GET", "/v1/public/keys"),
    ("GET", "/v1/public/organisations/{organisation_id}/ledger/verify"),
    ("GET", "/v1/public/organisations/{organisation_id}/ledger/export"),
    # The platform's own chains (fees, promotions) are public too; a wallet's chain is not.
    ("GET", "/v1/public/platform/chains"),
    ("GET", "/v1/public/platform/chains/{chain_id}"),
    ("GET", "/v1/public/platform/chains/{chain_id}/ledger"),
    ("GET", "/v1/public/platform/chains/{chain_id}/ledger/verify"),
    ("GET", "/v1/public/platform/chains/{chain_id}/ledger/export"),
    ("GET", "/v1/public/platform/chains/{chain_id}/checkpoint"),
}


def _app() -> FastAPI:
    return create_app(Settings(environment="test"), database_url="postgresql://unused/amply")


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]


APP = _app()  # building its OpenAPI document takes a second: build it once
PROTECTED = [route for route in _routes(APP) if route not in PUBLIC]


def test_no_route_is_hidden_from_the_schema() -> None:
    app = APP
    documented = {path for _, path in _routes(app)}
    # The API docs pages, their assets, and `/` (which leads to them) are not API routes.
    # The public site's pages (amply.site) are not API routes either.
    docs_pages = {"/docs", "/docs/oauth2-redirect", "/redoc", "/docs/assets"} | SITE_PATHS
    served = {"/openapi.json"} | docs_pages | documented
    pending = list(app.routes)
    while pending:
        route = pending.pop()
        # Newer FastAPI keeps included routers as branches: look inside them too.
        branch = getattr(route, "original_router", None)
        if branch is not None:
            pending.extend(branch.routes)
        if isinstance(route, APIRoute):
            assert route.include_in_schema or route.path in docs_pages, route.path
        elif branch is None:
            assert getattr(route, "path", None) in served, route


def test_the_matrix_sees_the_routes_of_this_issue() -> None:
    paths = {path for _, path in PROTECTED}
    assert "/v1/organisations/{organisation_id}/api-keys/{key_id}" in paths
    assert len(PROTECTED) >= 15


class Other:
    """Organisation B: an owner and a write key of an organisation other than the target's."""

    def __init__(self, owner: Account, key: str) -> None:
        self.owner = owner
        self.key = key


async def other_organisation(client: httpx.AsyncClient) -> Other:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    _, key = await create_api_key(client, owner, organisation_id)
    return Other(owner, key)


class World:
    """Organisation A (the target, with an owner, a key, a donation and a fund) and the
    values that fill the target's routes' paths."""

    def __init__(self, a_owner: Account, b: Other, values: dict[str, str]) -> None:
        self.a_owner = a_owner
        self.b = b
        self.values = values


# One database, app and world for the whole module: building a world takes about a second,
# and there are two cases per protected route. No case can change the outcome of another:
# anonymous callers are refused before a route runs; each case of the other organisation calls
# as an organisation B of its own (``other_organisation``), so whatever a route does to its
# caller (logging out, revoking sessions, changing the password, saving a card…) stays in that
# case; and a B, never a member of A, gets the same 404 whatever state A is in (a missing
# organisation looks like a foreign one: the last test). Checked by running the module's cases
# in reversed and in shuffled order; with one B shared by all cases, the logout case turns
# every later B case into a 401.
@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(module_client: httpx.AsyncClient) -> World:
    client = module_client
    a_owner = await sign_up(client)
    a_org = await create_organisation(client, a_owner)
    a_key_id, _ = await create_api_key(client, a_owner, a_org)
    me = (await client.get("/v1/auth/me", headers=a_owner.headers)).json()
    await onboard(client, a_owner, a_org)
    checkout = await donate(client, a_org)
    values = {
        "organisation_id": a_org,
        "user_id": a_owner.user_id,
        "key_id": a_key_id,
        "session_id": me["session"]["id"],
        "donation_id": checkout["donation"]["id"],  # type: ignore[index]
        "payment_id": checkout["payment"]["payment_intent_id"],  # type: ignore[index]
        "fund_id": await create_fund(client, a_owner, a_org),
    }
    return World(a_owner, await other_organisation(client), values)


def _url(path: str, values: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        return values.get(match.group(1), "xyz_000000000000000000000000")

    return re.sub(r"\{(\w+)\}", fill, path)


async def _call(
    client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str]
) -> httpx.Response:
    body: dict[str, object] | None = {} if method in ("POST", "PUT", "PATCH") else None
    return await client.request(method, url, json=body, headers=headers)


ON_THE_MODULES_LOOP = pytest.mark.asyncio(loop_scope="module")


@ON_THE_MODULES_LOOP
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
async def test_every_protected_route_refuses_anonymous_callers(
    module_client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    response = await _call(module_client, method, _url(path, world.values), {})

    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"


@ON_THE_MODULES_LOOP
@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
async def test_other_organisations_members_and_keys_get_404(
    module_client: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    other = await other_organisation(module_client)
    url = _url(path, world.values)
    as_member = await _call(module_client, method, url, other.owner.headers)
    as_key = await _call(module_client, method, url, bearer(other.key))

    if "{donation_id}" in path:
        for response in (as_member, as_key):
            assert response.status_code == 404, response.text
            assert response.json()["error"]["message"] == "No such donation."
    elif "{payment_id}" in path:
        for response in (as_member, as_key):
            assert response.status_code == 404, response.text
            assert response.json()["error"]["message"] == "No such sandbox payment."
    elif "{organisation_id}" in path:
        for response in (as_member, as_key):
            assert response.status_code == 404, response.text
            assert response.json()["error"]["message"] == "No such organisation."
    else:
        # Routes about the caller themselves: a key is no user, and a user sees only their own.
        assert as_key.status_code == 401, as_key.text
        assert as_member.status_code != 500
        if "{" in path:
            assert as_member.status_code == 404, as_member.text


@ON_THE_MODULES_LOOP
async def test_a_missing_organisation_looks_like_a_foreign_one(
    module_client: httpx.AsyncClient, world: World
) -> None:
    missing = await module_client.get(
        "/v1/organisations/org_000000000000000000000000", headers=world.b.owner.headers
    )
    foreign = await module_client.get(
        f"/v1/organisations/{world.values['organisation_id']}", headers=world.b.owner.headers
    )
    assert missing.status_code == foreign.status_code == 404
    assert missing.json() == foreign.json()
