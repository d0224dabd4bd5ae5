"""Who the client is: the TCP peer, unless that peer is a configured trusted proxy
(AMPLY_TRUSTED_PROXIES, none by default); then the right-most X-Forwarded-For address that is
not itself a trusted proxy. Login throttling, checkout limits and security logs use it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from amply.cli import build_parser, uvicorn_options
from amply.kit.settings import Settings
from amply.main import create_app
from tests.conftest import ClientFactory, IsolatedDatabase, cheapest_settings
from tests.factories import PASSWORD, Account, sign_up


async def client_address_of_signup(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """Sign up with ``headers``; the client address the sign-up event recorded."""
    account = await sign_up_with(client, headers)
    events = await client.get("/v1/auth/security-events", headers=account.headers)
    [signed_up] = [e for e in events.json()["data"] if e["type"] == "user_signed_up"]
    address: str = signed_up["client_address"]
    return address


_count = iter(range(10**6))


async def sign_up_with(client: httpx.AsyncClient, headers: dict[str, str]) -> Account:
    username = f"fwd_{next(_count)}_{time.monotonic_ns() % 10**6}"
    response = await client.post(
        "/v1/auth/signup",
        json={
            "name": "Forwarded",
            "username": username,
            "email": f"{username}@example.org",
            "password": PASSWORD,
            "session_type": "token",
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        user_id=body["user"]["id"],
        username=username,
        email=f"{username}@example.org",
        token=body["session"]["token"],
    )


@pytest.mark.parametrize(
    ("trusted", "forwarded", "client"),
    [
        # (httpx's ASGI transport connects from 127.0.0.1.)
        # The proxy appends its peer: the client is the right-most address it added.
        (["127.0.0.1"], "203.0.113.7", "203.0.113.7"),
        # Whatever the client wrote before is left of what the proxy appended: ignored.
        (["127.0.0.1"], "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        # Through several trusted proxies: the right-most address that is not one of them.
        (["127.0.0.0/8", "10.0.0.0/8"], "198.51.100.1, 203.0.113.7, 10.1.2.3", "203.0.113.7"),
        # The peer is not a trusted proxy: the header means nothing.
        (["10.0.0.5"], "203.0.113.7", "127.0.0.1"),
    ],
)
async def test_only_a_trusted_proxy_names_the_client(
    make_client: ClientFactory, trusted: list[str], forwarded: str, client: str
) -> None:
    settings = cheapest_settings(trusted_proxies=",".join(trusted))
    async with make_client(settings) as http:
        headers = {"X-Forwarded-For": forwarded}
        assert await client_address_of_signup(http, headers) == client


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert [
        str(n) for n in Settings(trusted_proxies="10.0.0.5, 192.168.0.0/16, ::1").trusted_proxies
    ] == [
        "10.0.0.5/32",
        "192.168.0.0/16",
        "::1/128",
    ]
    assert Settings().trusted_proxies == []
    for wrong in ("*", "proxy.example.org", "10.0.0.1/8"):
        with pytest.raises(ValueError, match="trusted_proxies"):
            Settings(trusted_proxies=wrong)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl-C belongs to pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def served_as_amply_serves(app: Any, settings: Settings) -> AsyncIterator[str]:
    """``app`` on a loopback port, with the uvicorn options ``amply serve`` uses."""
    args = build_parser().parse_args(["serve", "--port", "0"])
    server = _Server(uvicorn.Config(app, lifespan="off", **uvicorn_options(args, settings)))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


@contextlib.asynccontextmanager
async def amply_over_http(
    database: IsolatedDatabase, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app served over real HTTP on loopback as ``amply serve`` serves it."""
    app = create_app(settings, database_url=database.urls.app)
    try:
        async with (
            served_as_amply_serves(app, settings) as base_url,
            httpx.AsyncClient(base_url=base_url) as http,
        ):
            yield http
    finally:
        await app.state.database.dispose()


async def test_by_default_a_local_caller_cannot_choose_its_address(
    test_database: IsolatedDatabase,
) -> None:
    """uvicorn's own default trusts X-Forwarded-For from 127.0.0.1; ``amply serve`` turns
    that off, so only AMPLY_TRUSTED_PROXIES decides, over real HTTP too."""
    async with amply_over_http(test_database, cheapest_settings()) as http:
        forged = {"X-Forwarded-For": "203.0.113.66"}
        assert await client_address_of_signup(http, forged) == "127.0.0.1"


async def test_by_default_rotating_forwarded_addresses_does_not_escape_login_throttling(
    test_database: IsolatedDatabase,
) -> None:
    settings = cheapest_settings(
        login_max_failures_per_address=3, login_max_failures_per_account=100
    )
    async with amply_over_http(test_database, settings) as http:
        await sign_up(http, username="victim_fwd")
        statuses = []
        for i in range(5):
            response = await http.post(
                "/v1/auth/login",
                json={"login": "victim_fwd", "password": "wrong password"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 429, 429]
