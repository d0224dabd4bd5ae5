"""Security headers: every response is nosniff, never framed and sends no Referer on; every
response carrying a credential (session tokens, API key secrets, CSRF tokens) is never
stored; the docs pages, which run scripts, get a policy that allows exactly theirs."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from amply.main import create_app
from tests.conftest import cheapest_settings
from tests.factories import PASSWORD, create_api_key, create_organisation, sign_up

EVERY_RESPONSE = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in EVERY_RESPONSE.items():
        assert response.headers.get(name) == value, (response.request.url, name)
    policy = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy, response.request.url


def assert_not_stored(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store", response.request.url


async def test_every_kind_of_response_carries_the_security_headers(
    client: httpx.AsyncClient,
) -> None:
    responses = [
        await client.get("/health"),
        await client.get("/v1/public/organisations"),
        await client.get("/v1/auth/me"),  # 401
        await client.get("/nowhere"),  # 404
        await client.post("/v1/auth/login", content=b"{", headers={"content-type": "text/json"}),
        await client.get("/openapi.json"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 401, 404, 422, 200]
    for response in responses:
        assert_security_headers(response)
        # JSON runs nothing, loads nothing, embeds nothing.
        assert response.headers["content-security-policy"].startswith("default-src 'none';")


async def test_responses_that_carry_a_credential_are_never_stored(
    client: httpx.AsyncClient,
) -> None:
    signup = await client.post(
        "/v1/auth/signup",
        json={
            "name": "Ada",
            "username": "ada_headers",
            "email": "ada_headers@example.org",
            "password": PASSWORD,
            "session_type": "token",
        },
    )
    assert signup.json()["session"]["token"]
    login = await client.post(
        "/v1/auth/login",
        json={"login": "ada_headers", "password": PASSWORD, "session_type": "token"},
    )
    assert login.json()["session"]["token"]
    cookie_login = await client.post(
        "/v1/auth/login", json={"login": "ada_headers", "password": PASSWORD}
    )
    assert cookie_login.json()["session"]["csrf_token"]
    token = login.json()["session"]["token"]
    me = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    password = await client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": PASSWORD + " again"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert password.status_code == 200, password.text
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    await create_api_key(client, owner, organisation_id)
    key = await client.post(
        f"/v1/organisations/{organisation_id}/api-keys",
        json={"name": "another"},
        headers=owner.headers,
    )
    assert key.json()["secret"].startswith("sk_test_")
    for response in (signup, login, cookie_login, me, password, key):
        assert_not_stored(response)
        assert_security_headers(response)


async def test_public_responses_keep_their_own_caching(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/public/organisations")
    assert "max-age" in response.headers["cache-control"]
    assert "no-store" not in response.headers["cache-control"]
    assert_security_headers(response)


def inline_script_hashes(html: str) -> set[str]:
    return {
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    }


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_pages_that_run_scripts_get_a_policy_that_allows_only_theirs(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert_security_headers(response)
    assert_not_stored(response)
    directives = {
        directive.split()[0]: directive.split()[1:]
        for directive in response.headers["content-security-policy"].split("; ")
    }
    assert directives["default-src"] == ["'none'"]
    scripts = directives["script-src"]
    assert "'unsafe-inline'" not in scripts
    assert "'unsafe-eval'" not in scripts
    assert "'self'" in scripts
    hashes = inline_script_hashes(response.text)
    assert set(scripts) - {"'self'"} == hashes
    if page == "/docs":
        assert hashes  # Swagger UI's set-up script
    assert directives["connect-src"] == ["'self'"]  # the spec, and "Try it out"
    assert int(response.headers["content-length"]) == len(response.content)
    # Nothing from elsewhere: every asset the page names is served by Amply itself.
    assert "https://" not in response.headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="([^"]+)"', response.text):
        assert asset.startswith("/"), asset
        assert (await client.get(asset)).status_code == 200, asset


async def test_the_root_is_the_public_site_which_leads_to_the_api_docs(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'href="/docs"' in response.text


async def test_even_an_unexpected_error_carries_the_security_headers() -> None:
    app = create_app(cheapest_settings(), database_url="postgresql://unused/amply")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://amply.test") as http:
        response = await http.get("/boom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert_security_headers(response)
    assert_not_stored(response)
