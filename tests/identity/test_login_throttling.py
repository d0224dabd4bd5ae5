"""Login throttling: per account and per client address, in PostgreSQL, shared by instances."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from amply.auth.passwords import Hasher
from amply.kit.settings import Settings
from tests.factories import PASSWORD, sign_up

WINDOW = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "login_max_failures_per_account": 3,
            "login_max_failures_per_address": 6,
            "login_failure_window_seconds": WINDOW,
        }
    )


async def _login(client: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"login": login, "password": password})


async def test_failures_per_account_lead_to_429_and_recover_after_the_window(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client, username="target")

    failures = [await _login(client, "target", "wrong password") for _ in range(3)]
    throttled = await _login(client, "target", "wrong password")
    even_right = await _login(client, "TARGET", PASSWORD)

    assert [r.status_code for r in failures] == [401, 401, 401]
    for response in (throttled, even_right):
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "login_throttled"
        assert 1 <= int(response.headers["retry-after"]) <= WINDOW
    await asyncio.sleep(WINDOW + 0.2)
    assert (await _login(client, "target", PASSWORD)).status_code == 200


async def test_a_successful_login_resets_the_account_count(client: httpx.AsyncClient) -> None:
    await sign_up(client, username="forgetful")
    for _ in range(2):
        await _login(client, "forgetful", "wrong password")
    assert (await _login(client, "forgetful", PASSWORD)).status_code == 200

    again = [await _login(client, "forgetful", "wrong password") for _ in range(3)]

    assert [r.status_code for r in again] == [401, 401, 401]


async def test_concurrent_guesses_never_get_past_the_account_limit(
    client: httpx.AsyncClient,
) -> None:
    await sign_up(client, username="sprayed")

    responses = await asyncio.gather(*(_login(client, "sprayed", f"guess {i}") for i in range(8)))

    assert sorted(r.status_code for r in responses) == [401] * 3 + [429] * 5


async def test_failures_per_address_throttle_every_account_from_it(
    client: httpx.AsyncClient,
) -> None:
    accounts = [await sign_up(client) for _ in range(3)]
    for account in accounts:
        for _ in range(2):
            assert (await _login(client, account.username, "wrong password")).status_code == 401

    response = await _login(client, accounts[0].username, PASSWORD)

    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1


async def test_unknown_accounts_fail_alike_and_cost_a_password_hash(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sign_up(client, username="real_one")
    verified: list[str] = []
    original = Hasher._verify

    def spy(self: Hasher, password_hash: str, password: str) -> bool:
        verified.append(password)
        return original(self, password_hash, password)

    monkeypatch.setattr(Hasher, "_verify", spy)

    known = await _login(client, "real_one", "wrong password")
    unknown = await _login(client, "nobody_here", "wrong password")

    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
    assert verified == ["wrong password", "wrong password"]
    unknown_attempts = [await _login(client, "nobody_here", "x") for _ in range(3)]
    assert [r.status_code for r in unknown_attempts] == [401, 401, 429]


async def test_the_count_holds_across_app_instances(
    make_client: Any, settings: Settings, client: httpx.AsyncClient
) -> None:
    await sign_up(client, username="roaming")
    async with make_client(settings) as second_instance:
        for instance in (client, second_instance, client):
            assert (await _login(instance, "roaming", "wrong password")).status_code == 401

        assert (await _login(second_instance, "roaming", PASSWORD)).status_code == 429


async def test_refused_attempts_are_in_the_users_security_log(client: httpx.AsyncClient) -> None:
    account = await sign_up(client, username="logged")
    for _ in range(4):
        await _login(client, "logged", "wrong password")

    events = (await client.get("/v1/auth/security-events", headers=account.headers)).json()

    assert [e["type"] for e in events["data"]][:2] == ["login_throttled", "login_failed"]
    assert events["data"][0]["details"] == {"scope": "account"}


async def test_wrong_current_passwords_count_against_the_account(
    client: httpx.AsyncClient,
) -> None:
    account = await sign_up(client, username="stolen_session")
    body = {"current_password": "guess", "new_password": "a brand new passphrase"}

    guesses = [
        await client.post("/v1/auth/password", json=body, headers=account.headers) for _ in range(4)
    ]
    login = await _login(client, "stolen_session", PASSWORD)

    assert [r.status_code for r in guesses] == [422, 422, 422, 429]
    assert guesses[0].json()["error"]["code"] == "invalid_credentials"
    assert login.status_code == 429
    events = (await client.get("/v1/auth/security-events", headers=account.headers)).json()
    assert [e["type"] for e in events["data"]].count("password_change_failed") == 3
