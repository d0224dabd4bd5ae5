"""Sign-up, login, sessions, CSRF and password changes, through the HTTP API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from amply.auth import tokens
from amply.auth.dependencies import CSRF_HEADER
from amply.kit.settings import Settings
from tests.conftest import SuperuserSql
from tests.factories import PASSWORD, Account, sign_up


def _signup_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": "Ada Lovelace",
        "username": "ada_l",
        "email": "ada@example.org",
        "password": PASSWORD,
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def _assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code


def _count(sql: SuperuserSql, table: str) -> int:
    return int(sql(f"SELECT count(*) FROM {table}")[0][0])


async def test_signup_sets_an_httponly_secure_lax_cookie_and_returns_a_csrf_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post("/v1/auth/signup", json=_signup_body())

    assert response.status_code == 201
    body = response.json()
    assert body["user"]["username"] == "ada_l"
    assert body["user"]["id"].startswith("usr_")
    assert body["session"]["token"] is None  # the cookie holds it; scripts never see it
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-amply_session=sess_")
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
        assert attribute in cookie
    token = client.cookies[settings.session_cookie_name]
    assert body["session"]["csrf_token"] == tokens.csrf_token(token)


async def test_development_cookies_are_not_secure(make_client: Any, settings: Settings) -> None:
    development = settings.model_copy(update={"environment": "development"})
    async with make_client(development) as http:
        response = await http.post("/v1/auth/signup", json=_signup_body())
    assert response.headers["set-cookie"].startswith("amply_session=")
    assert "Secure" not in response.headers["set-cookie"]


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"name": None}, "name"),
        ({"username": None}, "username"),
        ({"password": None}, "password"),
        ({"name": "x" * 101}, "name"),
        ({"name": 42}, "name"),
        ({"username": "ab"}, "username"),
        ({"username": "has space"}, "username"),
        ({"username": "x" * 31}, "username"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a" * 250 + "@example.org"}, "email"),
        ({"password": ["a list"]}, "password"),
        ({"session_type": "jwt"}, "session_type"),
        ({"is_admin": True}, "is_admin"),
    ],
)
async def test_bad_signup_input_is_a_422_and_writes_nothing(
    client: httpx.AsyncClient,
    superuser_sql: SuperuserSql,
    overrides: dict[str, object],
    param: str,
) -> None:
    response = await client.post("/v1/auth/signup", json=_signup_body(**overrides))

    _assert_error(response, 422, "parameter_invalid")
    assert response.json()["error"]["param"] == param
    assert _count(superuser_sql, "users") == 0


async def test_signup_body_that_is_not_json_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/signup", content=b"{nope", headers={"content-type": "application/json"}
    )
    _assert_error(response, 400, "body_invalid_json")


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short1!", "at least 10"),
        ("x" * 129, "at most 128"),
        ("qwertyuiop", "most common"),
        ("Password123", "most common"),
        ("ada_lovelace_", None),
    ],
)
async def test_weak_passwords_are_refused(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql, password: str, why: str | None
) -> None:
    username = "ada_lovelace_"
    response = await client.post(
        "/v1/auth/signup", json=_signup_body(username=username, password=password)
    )
    _assert_error(response, 422, "password_too_weak")
    assert response.json()["error"]["param"] == "password"
    if why:
        assert why in response.json()["error"]["message"]
    assert _count(superuser_sql, "users") == 0


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"username": "ADA_L", "email": "other@example.org"}, "username_taken"),
        ({"username": "someone_else", "email": "ADA@Example.org"}, "email_taken"),
    ],
)
async def test_usernames_and_emails_are_unique_regardless_of_case(
    client: httpx.AsyncClient,
    superuser_sql: SuperuserSql,
    overrides: dict[str, object],
    code: str,
) -> None:
    await client.post("/v1/auth/signup", json=_signup_body())

    response = await client.post("/v1/auth/signup", json=_signup_body(**overrides))

    _assert_error(response, 409, code)
    assert _count(superuser_sql, "users") == 1


async def test_concurrent_signups_with_one_username_create_one_user(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    import asyncio

    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/auth/signup",
                json=_signup_body(username="Same_Name", email=f"p{i}@example.org"),
            )
            for i in range(5)
        )
    )

    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409]
    assert _count(superuser_sql, "users") == 1


async def test_only_hashes_of_passwords_and_session_tokens_are_stored(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    account = await sign_up(client, username="hashed")

    [(password_hash,)] = superuser_sql("SELECT password_hash FROM users")
    assert password_hash.startswith("$argon2id$")
    assert PASSWORD not in password_hash
    [(token_hash,)] = superuser_sql("SELECT token_hash FROM auth_sessions")
    assert bytes(token_hash) == tokens.digest(account.token)
    dump = str(superuser_sql("SELECT * FROM auth_sessions"))
    assert account.token not in dump


async def test_login_accepts_username_or_email_in_any_case(client: httpx.AsyncClient) -> None:
    account = await sign_up(client, username="Grace_H")

    for login in ("Grace_H", "grace_h", account.email.upper()):
        response = await client.post(
            "/v1/auth/login", json={"login": login, "password": PASSWORD, "session_type": "token"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["user"]["id"] == account.user_id


async def test_login_issues_a_fresh_token_so_a_planted_cookie_gains_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await sign_up(client, username="victim")
    planted = tokens.new_secret(tokens.SESSION_TOKEN_PREFIX)
    client.cookies.set(settings.session_cookie_name, planted, domain="amply.test")

    response = await client.post("/v1/auth/login", json={"login": "victim", "password": PASSWORD})

    assert response.status_code == 200
    issued = response.cookies[settings.session_cookie_name]
    assert issued != planted
    attacker = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {planted}"})
    _assert_error(attacker, 401, "session_invalid")


async def test_each_login_is_a_new_session(client: httpx.AsyncClient) -> None:
    await sign_up(client, username="twice")
    body = {"login": "twice", "password": PASSWORD, "session_type": "token"}
    first = (await client.post("/v1/auth/login", json=body)).json()["session"]
    second = (await client.post("/v1/auth/login", json=body)).json()["session"]
    assert first["id"] != second["id"]
    assert first["token"] != second["token"]


async def test_logout_revokes_the_bearer_session(client: httpx.AsyncClient) -> None:
    account = await sign_up(client)

    response = await client.post("/v1/auth/logout", headers=account.headers)

    assert response.status_code == 204
    after = await client.get("/v1/auth/me", headers=account.headers)
    _assert_error(after, 401, "session_revoked")


async def test_logout_revokes_the_cookie_session_and_clears_the_cookie(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    signup = await client.post("/v1/auth/signup", json=_signup_body())
    token = client.cookies[settings.session_cookie_name]
    csrf = signup.json()["session"]["csrf_token"]

    response = await client.post("/v1/auth/logout", headers={CSRF_HEADER: csrf})

    assert response.status_code == 204
    assert settings.session_cookie_name not in client.cookies
    replayed = await client.get("/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    _assert_error(replayed, 401, "session_revoked")


async def test_cookie_requests_need_the_session_csrf_token_on_unsafe_methods(
    client: httpx.AsyncClient,
) -> None:
    signup = await client.post("/v1/auth/signup", json=_signup_body())
    csrf = signup.json()["session"]["csrf_token"]
    organisation = {"name": "X", "slug": "csrf-test", "country": "DE", "default_currency": "EUR"}

    missing = await client.post("/v1/organisations", json=organisation)
    wrong = await client.post(
        "/v1/organisations", json=organisation, headers={CSRF_HEADER: "forged"}
    )
    other_session = tokens.csrf_token(tokens.new_secret(tokens.SESSION_TOKEN_PREFIX))
    foreign = await client.post(
        "/v1/organisations", json=organisation, headers={CSRF_HEADER: other_session}
    )
    read = await client.get("/v1/auth/me")
    accepted = await client.post(
        "/v1/organisations", json=organisation, headers={CSRF_HEADER: csrf}
    )

    _assert_error(missing, 403, "csrf_token_missing")
    _assert_error(wrong, 403, "csrf_token_invalid")
    _assert_error(foreign, 403, "csrf_token_invalid")
    assert read.status_code == 200
    assert read.json()["session"]["csrf_token"] == csrf
    assert accepted.status_code == 201


async def test_bearer_sessions_need_no_csrf_token(client: httpx.AsyncClient) -> None:
    account = await sign_up(client)
    me = await client.get("/v1/auth/me", headers=account.headers)
    assert me.json()["session"]["csrf_token"] is None
    response = await client.post(
        "/v1/organisations",
        json={"name": "X", "slug": "bearer-test", "country": "DE", "default_currency": "EUR"},
        headers=account.headers,
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "expire",
    [
        "UPDATE auth_sessions SET expires_at = now() - interval '1 second'",
        "UPDATE auth_sessions SET last_seen_at = now() - interval '25 hours'",
    ],
    ids=["absolute", "idle"],
)
async def test_expired_sessions_are_rejected(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql, expire: str
) -> None:
    account = await sign_up(client)
    superuser_sql(expire)

    response = await client.get("/v1/auth/me", headers=account.headers)

    _assert_error(response, 401, "session_expired")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_used_session_stays_alive_past_the_idle_timeout(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    account = await sign_up(client)
    superuser_sql("UPDATE auth_sessions SET last_seen_at = now() - interval '23 hours'")

    assert (await client.get("/v1/auth/me", headers=account.headers)).status_code == 200

    [(idle,)] = superuser_sql(
        "SELECT now() - last_seen_at < interval '1 minute' FROM auth_sessions"
    )
    assert idle is True


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer nonsense", "Bearer sess_unknown", "Bearer sk_test_x"],
)
async def test_bad_authorization_headers_are_401(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get("/v1/auth/me", headers={"Authorization": authorization})
    _assert_error(response, 401)


async def test_password_change_revokes_every_session_and_issues_a_new_one(
    client: httpx.AsyncClient,
) -> None:
    account = await sign_up(client, username="changer")
    other = await client.post(
        "/v1/auth/login", json={"login": "changer", "password": PASSWORD, "session_type": "token"}
    )
    other_headers = {"Authorization": f"Bearer {other.json()['session']['token']}"}
    new_password = "a completely new passphrase"

    response = await client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=account.headers,
    )

    assert response.status_code == 200, response.text
    fresh = {"Authorization": f"Bearer {response.json()['session']['token']}"}
    for stale in (account.headers, other_headers):
        _assert_error(await client.get("/v1/auth/me", headers=stale), 401, "session_revoked")
    assert (await client.get("/v1/auth/me", headers=fresh)).status_code == 200
    old_login = await client.post("/v1/auth/login", json={"login": "changer", "password": PASSWORD})
    _assert_error(old_login, 401, "invalid_credentials")
    new_login = await client.post(
        "/v1/auth/login", json={"login": "changer", "password": new_password}
    )
    assert new_login.status_code == 200


async def test_password_change_with_a_wrong_current_password_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    account = await sign_up(client)

    response = await client.post(
        "/v1/auth/password",
        json={"current_password": "not my password", "new_password": "another good passphrase"},
        headers=account.headers,
    )

    _assert_error(response, 422, "invalid_credentials")
    assert (await client.get("/v1/auth/me", headers=account.headers)).status_code == 200


async def test_users_list_and_revoke_their_own_sessions_only(client: httpx.AsyncClient) -> None:
    account = await sign_up(client, username="owner_of_two")
    second = await client.post(
        "/v1/auth/login",
        json={"login": "owner_of_two", "password": PASSWORD, "session_type": "token"},
    )
    second_id = second.json()["session"]["id"]
    stranger = await sign_up(client)

    listed = (await client.get("/v1/auth/sessions", headers=account.headers)).json()
    assert {s["id"] for s in listed["data"]} >= {second_id}
    assert [s["current"] for s in listed["data"]].count(True) == 1

    foreign = await client.delete(f"/v1/auth/sessions/{second_id}", headers=stranger.headers)
    _assert_error(foreign, 404)
    revoked = await client.delete(f"/v1/auth/sessions/{second_id}", headers=account.headers)
    assert revoked.status_code == 204
    second_headers = {"Authorization": f"Bearer {second.json()['session']['token']}"}
    _assert_error(await client.get("/v1/auth/me", headers=second_headers), 401, "session_revoked")


async def test_idle_sessions_are_not_listed(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    account = await sign_up(client, username="idler")
    await client.post("/v1/auth/login", json={"login": "idler", "password": PASSWORD})
    superuser_sql(
        "UPDATE auth_sessions SET last_seen_at = now() - interval '2 days' "
        "WHERE id = (SELECT id FROM auth_sessions ORDER BY created_at DESC LIMIT 1)"
    )

    listed = (await client.get("/v1/auth/sessions", headers=account.headers)).json()

    assert [s["current"] for s in listed["data"]] == [True]


async def test_session_list_pages_with_a_cursor(client: httpx.AsyncClient) -> None:
    account = await sign_up(client, username="many_sessions")
    for _ in range(3):
        await client.post("/v1/auth/login", json={"login": "many_sessions", "password": PASSWORD})

    first = (await client.get("/v1/auth/sessions?limit=2", headers=account.headers)).json()
    rest = (
        await client.get(
            f"/v1/auth/sessions?limit=2&starting_after={first['data'][-1]['id']}",
            headers=account.headers,
        )
    ).json()

    assert first["has_more"] is True
    assert rest["has_more"] is False
    ids = [s["id"] for s in first["data"] + rest["data"]]
    assert len(ids) == len(set(ids)) == 4


async def test_users_read_their_own_sign_in_events(client: httpx.AsyncClient) -> None:
    account = await sign_up(client, username="watched")
    await client.post("/v1/auth/login", json={"login": "watched", "password": "wrong password"})
    await client.post(
        "/v1/auth/login",
        json={"login": "watched", "password": PASSWORD},
        headers={"User-Agent": "pytest-agent"},
    )
    await client.post("/v1/auth/logout", headers=account.headers)
    other = await sign_up(client)

    mine = await client.get("/v1/auth/security-events", headers=other.headers)
    assert [e["type"] for e in mine.json()["data"]] == ["user_signed_up"]

    login = await client.post("/v1/auth/login", json={"login": "watched", "password": PASSWORD})
    cookie_events = (await client.get("/v1/auth/security-events")).json()["data"]
    assert login.status_code == 200
    types = [event["type"] for event in cookie_events]
    assert types == [
        "login_succeeded",
        "session_revoked",
        "login_succeeded",
        "login_failed",
        "user_signed_up",
    ]
    assert cookie_events[2]["user_agent"] == "pytest-agent"
    assert cookie_events[1]["details"]["reason"] == "logout"
    assert all(event["client_address"] for event in cookie_events)


def _assert_is(account: Account, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == account.user_id
