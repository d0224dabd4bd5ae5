"""Request bodies over AMPLY_REQUEST_BODY_MAX_BYTES are refused with 413 ``body_too_large``
before they are read whole: by their Content-Length up front, or counted as they stream, and
the route never runs with them."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx

from amply.main import create_app
from tests.conftest import ClientFactory, cheapest_settings
from tests.factories import PASSWORD, sign_up
from tests.stripe_harness import ServeApp

MIB = 1024 * 1024


def padded_signup(username: str, size: int) -> bytes:
    """A valid sign-up body of ``size`` bytes (JSON allows the trailing spaces)."""
    body = json.dumps(
        {
            "name": "Big Body",
            "username": username,
            "email": f"{username}@example.org",
            "password": PASSWORD,
            "session_type": "token",
        }
    ).encode()
    assert len(body) < size
    return body + b" " * (size - len(body))


def assert_body_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": {
            "type": "invalid_request_error",
            "code": "body_too_large",
            "message": f"The request body is larger than {limit} bytes, the most this API accepts.",
            "param": None,
        }
    }


async def assert_no_account(client: httpx.AsyncClient, username: str) -> None:
    """Nothing was created: the username is free, and nobody can log in with it."""
    login = await client.post("/v1/auth/login", json={"login": username, "password": PASSWORD})
    assert login.status_code == 401, login.text
    await sign_up(client, username=username)


async def test_a_body_declared_over_the_limit_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    username = f"big_{secrets.token_hex(4)}"
    response = await client.post(
        "/v1/auth/signup",
        content=padded_signup(username, MIB + 1),
        headers={"content-type": "application/json"},
    )
    assert_body_too_large(response, MIB)
    assert response.headers["connection"] == "close"
    await assert_no_account(client, username)


async def test_a_streamed_body_over_the_limit_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    username = f"big_{secrets.token_hex(4)}"
    body = padded_signup(username, 2 * MIB)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(body), 64 * 1024):
            sent += 1
            yield body[start : start + 64 * 1024]

    response = await client.post(
        "/v1/auth/signup", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert_body_too_large(response, MIB)
    await assert_no_account(client, username)


async def test_the_limit_is_a_setting_and_bodies_within_it_pass(
    make_client: ClientFactory,
) -> None:
    limit = 4096
    async with make_client(cheapest_settings(request_body_max_bytes=limit)) as client:
        within = f"fits_{secrets.token_hex(4)}"
        response = await client.post(
            "/v1/auth/signup",
            content=padded_signup(within, limit),
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 201, response.text
        over = f"over_{secrets.token_hex(4)}"
        response = await client.post(
            "/v1/auth/signup",
            content=padded_signup(over, limit + 1),
            headers={"content-type": "application/json"},
        )
        assert_body_too_large(response, limit)
        await assert_no_account(client, over)


async def test_a_huge_declared_body_is_answered_before_a_byte_of_it_is_sent(
    serve_app: ServeApp,
) -> None:
    """Over real HTTP: a client announcing 100 MB gets its 413 at once (the server neither
    waits for nor reads the body), and the connection is closed."""
    app: Any = create_app(cheapest_settings(), database_url="postgresql://unused/amply")
    async with serve_app(app) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/auth/signup HTTP/1.1\r\nHost: amply.test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # until the server closes
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert json.loads(body)["error"]["code"] == "body_too_large"
