"""Organisations: creation with a ledger chain, reading and updating by role and by API key."""

from __future__ import annotations

import httpx
import pytest

from amply.kit.db import Database
from amply.ledger import service as ledger
from tests.conftest import SuperuserSql
from tests.factories import (
    add_member,
    bearer,
    create_api_key,
    create_organisation,
    sign_up,
)

VALID = {
    "name": "Clean Rivers",
    "slug": "clean-rivers",
    "description": "We clean rivers.",
    "website": "https://cleanrivers.example",
    "country": "de",
    "default_currency": "eur",
}


async def test_the_creator_owns_the_new_organisation_and_its_ledger_chain(
    client: httpx.AsyncClient, database: Database
) -> None:
    owner = await sign_up(client)

    response = await client.post("/v1/organisations", json=VALID, headers=owner.headers)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["role"] == "owner"
    organisation = body["organisation"]
    assert organisation["id"].startswith("org_")
    assert (organisation["country"], organisation["default_currency"]) == ("DE", "EUR")
    async with database.session() as session:
        chain = await ledger.get_chain(session, chain_id=organisation["id"])
    assert chain.kind == "organisation"
    mine = (await client.get("/v1/organisations", headers=owner.headers)).json()
    assert [m["organisation"]["id"] for m in mine["data"]] == [organisation["id"]]


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"slug": "Not A Slug"}, "slug"),
        ({"slug": "ab"}, "slug"),
        ({"country": "XX"}, "country"),
        ({"country": "DEU"}, "country"),
        ({"default_currency": "EURO"}, "default_currency"),
        ({"default_currency": "ABC"}, "default_currency"),
        ({"website": "ftp://example.org"}, "website"),
        ({"name": ""}, "name"),
        ({"description": "x" * 2001}, "description"),
    ],
)
async def test_bad_organisation_input_is_a_422_and_writes_nothing(
    client: httpx.AsyncClient,
    superuser_sql: SuperuserSql,
    overrides: dict[str, object],
    param: str,
) -> None:
    owner = await sign_up(client)

    response = await client.post(
        "/v1/organisations", json={**VALID, **overrides}, headers=owner.headers
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param
    assert superuser_sql("SELECT count(*) FROM organisations") == [(0,)]
    assert superuser_sql("SELECT count(*) FROM ledger_chains WHERE kind = 'organisation'") == [(0,)]


async def test_slugs_are_unique(client: httpx.AsyncClient, superuser_sql: SuperuserSql) -> None:
    owner = await sign_up(client)
    await client.post("/v1/organisations", json=VALID, headers=owner.headers)

    response = await client.post("/v1/organisations", json=VALID, headers=owner.headers)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "slug_taken"
    assert superuser_sql("SELECT count(*) FROM organisations") == [(1,)]


async def test_viewers_read_admins_update(client: httpx.AsyncClient) -> None:
    owner, admin, viewer = [await sign_up(client) for _ in range(3)]
    organisation_id = await create_organisation(client, owner)
    await add_member(client, owner, organisation_id, admin, "admin")
    await add_member(client, owner, organisation_id, viewer, "viewer")
    path = f"/v1/organisations/{organisation_id}"

    read = await client.get(path, headers=viewer.headers)
    refused = await client.patch(path, json={"name": "Hijacked"}, headers=viewer.headers)
    updated = await client.patch(
        path, json={"name": "Renamed", "website": None}, headers=admin.headers
    )

    assert read.status_code == 200
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "role_insufficient"
    assert updated.status_code == 200
    assert updated.json()["name"] == "Renamed"
    assert updated.json()["website"] is None


async def test_update_refuses_nulls_and_taken_slugs(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    first = await create_organisation(client, owner, slug="first-org")
    await create_organisation(client, owner, slug="second-org")

    null_name = await client.patch(
        f"/v1/organisations/{first}", json={"name": None}, headers=owner.headers
    )
    taken = await client.patch(
        f"/v1/organisations/{first}", json={"slug": "second-org"}, headers=owner.headers
    )

    assert null_name.status_code == 422
    assert taken.status_code == 409


async def test_api_keys_read_and_write_keys_update_their_organisation(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    _, write_key = await create_api_key(client, owner, organisation_id)
    _, read_key = await create_api_key(client, owner, organisation_id, read_only=True)
    path = f"/v1/organisations/{organisation_id}"

    read = await client.get(path, headers=bearer(read_key))
    refused = await client.patch(path, json={"description": "x"}, headers=bearer(read_key))
    written = await client.patch(path, json={"description": "by key"}, headers=bearer(write_key))

    assert read.status_code == 200
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "api_key_read_only"
    assert written.status_code == 200
    assert written.json()["description"] == "by key"


async def test_admins_read_the_organisation_security_log(client: httpx.AsyncClient) -> None:
    owner, viewer = await sign_up(client), await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    await add_member(client, owner, organisation_id, viewer, "viewer")
    key_id, write_key = await create_api_key(client, owner, organisation_id)
    await client.patch(
        f"/v1/organisations/{organisation_id}", json={"name": "N"}, headers=bearer(write_key)
    )
    await client.delete(
        f"/v1/organisations/{organisation_id}/api-keys/{key_id}", headers=owner.headers
    )
    path = f"/v1/organisations/{organisation_id}/security-events"

    log = await client.get(path, headers=owner.headers)
    refused = await client.get(path, headers=viewer.headers)

    assert refused.status_code == 403
    events = log.json()["data"]
    assert [e["type"] for e in events] == [
        "api_key_revoked",
        "organisation_updated",
        "api_key_created",
        "member_added",
        "organisation_created",
    ]
    assert events[1]["actor_api_key_id"] == key_id
    assert events[3]["details"] == {"member_user_id": viewer.user_id, "role": "viewer"}
    assert "client_address" not in events[0]
    page = (await client.get(f"{path}?limit=2", headers=owner.headers)).json()
    after = (
        await client.get(
            f"{path}?limit=10&starting_after={page['data'][-1]['id']}", headers=owner.headers
        )
    ).json()
    assert page["has_more"] is True
    assert [e["id"] for e in page["data"] + after["data"]] == [e["id"] for e in events]
