"""API keys: shown once, stored as a hash, revocable, scoped, bound to sandbox or live mode."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from amply.auth import tokens
from amply.kit.settings import Settings
from tests.conftest import SuperuserSql
from tests.factories import bearer, create_api_key, create_organisation, sign_up


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)

    created = await client.post(
        f"/v1/organisations/{organisation_id}/api-keys",
        json={"name": "Website", "read_only": True},
        headers=owner.headers,
    )
    listed = await client.get(
        f"/v1/organisations/{organisation_id}/api-keys", headers=owner.headers
    )

    assert created.status_code == 201
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("sk_test_")
    assert len(secret) == len("sk_test_") + 43
    assert body["prefix"] == secret[:12]
    assert (body["name"], body["read_only"], body["mode"]) == ("Website", True, "test")
    [listed_key] = listed.json()["data"]
    assert "secret" not in listed_key
    assert listed_key["id"] == body["id"]
    [(token_hash, prefix)] = superuser_sql("SELECT token_hash, display_prefix FROM api_keys")
    assert bytes(token_hash) == tokens.digest(secret)
    assert secret not in str(superuser_sql("SELECT * FROM api_keys"))
    assert prefix == body["prefix"]


async def test_a_revoked_key_is_rejected_at_once(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    key_id, secret = await create_api_key(client, owner, organisation_id)
    path = f"/v1/organisations/{organisation_id}"
    assert (await client.get(path, headers=bearer(secret))).status_code == 200

    revoked = await client.delete(f"{path}/api-keys/{key_id}", headers=owner.headers)
    again = await client.delete(f"{path}/api-keys/{key_id}", headers=owner.headers)
    response = await client.get(path, headers=bearer(secret))

    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert response.status_code == 401
    assert response.json()["error"] == {
        "type": "authentication_error",
        "code": "api_key_invalid",
        "message": "The API key is not valid or was revoked.",
        "param": None,
    }


async def test_an_unknown_key_is_a_401(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    unknown = tokens.new_secret("sk_test_")

    response = await client.get(f"/v1/organisations/{organisation_id}", headers=bearer(unknown))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_invalid"


async def test_using_a_key_records_when_it_was_last_used(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    _, secret = await create_api_key(client, owner, organisation_id)

    await client.get(f"/v1/organisations/{organisation_id}", headers=bearer(secret))

    [key] = (
        await client.get(f"/v1/organisations/{organisation_id}/api-keys", headers=owner.headers)
    ).json()["data"]
    assert key["last_used_at"] is not None


async def test_keys_cannot_manage_keys_or_members_of_their_own_organisation(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    _, secret = await create_api_key(client, owner, organisation_id)
    path = f"/v1/organisations/{organisation_id}"

    for response in (
        await client.post(f"{path}/api-keys", json={"name": "escalate"}, headers=bearer(secret)),
        await client.get(f"{path}/members", headers=bearer(secret)),
        await client.get(f"{path}/security-events", headers=bearer(secret)),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "session_required"
    me = await client.get("/v1/auth/me", headers=bearer(secret))
    assert me.status_code == 401


async def test_live_mode_issues_live_keys_and_refuses_test_keys(
    client: httpx.AsyncClient, make_client: Any, settings: Settings
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    _, test_key = await create_api_key(client, owner, organisation_id)
    live = settings.model_copy(update={"stripe_secret_key": SecretStr("sk_live_platform")})

    async with make_client(live) as live_client:
        _, live_key = await create_api_key(live_client, owner, organisation_id)
        refused = await live_client.get(
            f"/v1/organisations/{organisation_id}", headers=bearer(test_key)
        )
        accepted = await live_client.get(
            f"/v1/organisations/{organisation_id}", headers=bearer(live_key)
        )

    assert live_key.startswith("sk_live_")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "api_key_wrong_mode"
    assert accepted.status_code == 200
    sandbox_refuses_live = await client.get(
        f"/v1/organisations/{organisation_id}", headers=bearer(live_key)
    )
    assert sandbox_refuses_live.status_code == 401


async def test_viewers_cannot_create_keys(client: httpx.AsyncClient) -> None:
    owner, viewer = await sign_up(client), await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    await client.post(
        f"/v1/organisations/{organisation_id}/members",
        json={"username": viewer.username, "role": "viewer"},
        headers=owner.headers,
    )
    response = await client.post(
        f"/v1/organisations/{organisation_id}/api-keys", json={"name": "x"}, headers=viewer.headers
    )
    assert response.status_code == 403
