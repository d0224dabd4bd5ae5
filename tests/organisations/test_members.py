"""Members and roles: owners manage them, and an organisation always keeps an owner."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from tests.conftest import IsolatedDatabase, SuperuserSql
from tests.factories import Account, add_member, create_organisation, sign_up


async def _organisation_with(
    client: httpx.AsyncClient, *roles: str
) -> tuple[str, Account, list[Account]]:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    members = []
    for role in roles:
        member = await sign_up(client)
        await add_member(client, owner, organisation_id, member, role)
        members.append(member)
    return organisation_id, owner, members


async def test_owners_add_members_by_username_or_email(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    by_name, by_email = await sign_up(client), await sign_up(client)
    path = f"/v1/organisations/{organisation_id}/members"

    first = await client.post(
        path, json={"username": by_name.username.upper(), "role": "admin"}, headers=owner.headers
    )
    second = await client.post(
        path, json={"email": by_email.email, "role": "viewer"}, headers=owner.headers
    )
    listed = (await client.get(path, headers=by_email.headers)).json()

    assert first.status_code == second.status_code == 201
    assert [(m["user_id"], m["role"]) for m in listed["data"]] == [
        (owner.user_id, "owner"),
        (by_name.user_id, "admin"),
        (by_email.user_id, "viewer"),
    ]
    assert "email" not in listed["data"][0]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"username": "nobody_at_all", "role": "viewer"}, 404, "resource_missing"),
        ({"role": "viewer"}, 422, "parameter_invalid"),
        ({"username": "a", "email": "a@example.org", "role": "viewer"}, 422, "parameter_invalid"),
        ({"username": "someone", "role": "superuser"}, 422, "parameter_invalid"),
    ],
)
async def test_bad_member_additions_are_refused(
    client: httpx.AsyncClient, body: dict[str, str], status: int, code: str
) -> None:
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)

    response = await client.post(
        f"/v1/organisations/{organisation_id}/members", json=body, headers=owner.headers
    )

    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_a_member_cannot_be_added_twice(client: httpx.AsyncClient) -> None:
    organisation_id, owner, [viewer] = await _organisation_with(client, "viewer")
    response = await client.post(
        f"/v1/organisations/{organisation_id}/members",
        json={"username": viewer.username, "role": "admin"},
        headers=owner.headers,
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_member"


async def test_only_owners_manage_members(client: httpx.AsyncClient) -> None:
    organisation_id, _, [admin, viewer] = await _organisation_with(client, "admin", "viewer")
    outsider = await sign_up(client)
    path = f"/v1/organisations/{organisation_id}/members"

    added = await client.post(
        path, json={"username": outsider.username, "role": "viewer"}, headers=admin.headers
    )
    promoted = await client.patch(
        f"{path}/{viewer.user_id}", json={"role": "owner"}, headers=admin.headers
    )
    removed = await client.delete(f"{path}/{viewer.user_id}", headers=admin.headers)

    for response in (added, promoted, removed):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "role_insufficient"


async def test_owners_change_roles_and_remove_members(client: httpx.AsyncClient) -> None:
    organisation_id, owner, [admin, viewer] = await _organisation_with(client, "admin", "viewer")
    path = f"/v1/organisations/{organisation_id}/members"

    promoted = await client.patch(
        f"{path}/{viewer.user_id}", json={"role": "admin"}, headers=owner.headers
    )
    removed = await client.delete(f"{path}/{admin.user_id}", headers=owner.headers)
    gone = await client.get(f"/v1/organisations/{organisation_id}", headers=admin.headers)

    assert promoted.json()["role"] == "admin"
    assert removed.status_code == 204
    assert gone.status_code == 404


async def test_the_last_owner_can_neither_leave_nor_be_demoted(client: httpx.AsyncClient) -> None:
    organisation_id, owner, _ = await _organisation_with(client)
    path = f"/v1/organisations/{organisation_id}/members/{owner.user_id}"

    demoted = await client.patch(path, json={"role": "admin"}, headers=owner.headers)
    left = await client.delete(path, headers=owner.headers)

    for response in (demoted, left):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "last_owner"


async def test_members_may_leave_and_a_second_owner_frees_the_first(
    client: httpx.AsyncClient,
) -> None:
    organisation_id, owner, [viewer, co_owner] = await _organisation_with(client, "viewer", "owner")
    path = f"/v1/organisations/{organisation_id}/members"

    viewer_left = await client.delete(f"{path}/{viewer.user_id}", headers=viewer.headers)
    owner_left = await client.delete(f"{path}/{owner.user_id}", headers=owner.headers)
    last = await client.delete(f"{path}/{co_owner.user_id}", headers=co_owner.headers)

    assert viewer_left.status_code == owner_left.status_code == 204
    assert last.status_code == 409


async def test_concurrent_demotions_of_the_two_owners_leave_one_owner(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    organisation_id, owner, [co_owner] = await _organisation_with(client, "owner")
    path = f"/v1/organisations/{organisation_id}/members"

    responses = await asyncio.gather(
        client.patch(f"{path}/{co_owner.user_id}", json={"role": "viewer"}, headers=owner.headers),
        client.patch(f"{path}/{owner.user_id}", json={"role": "viewer"}, headers=co_owner.headers),
    )

    # One wins. The other is refused: 409 if it got past its permission check before the
    # winner committed (it would leave no owner), else 403 (its caller is no owner any more).
    statuses = sorted(r.status_code for r in responses)
    assert statuses in ([200, 403], [200, 409]), [r.text for r in responses]
    owners = superuser_sql(
        "SELECT count(*) FROM organisation_members WHERE organisation_id = %s AND role = 'owner'",
        organisation_id,
    )
    assert owners == [(1,)]


async def test_the_database_refuses_to_remove_the_last_owner(
    client: httpx.AsyncClient, test_database: IsolatedDatabase
) -> None:
    organisation_id, owner, _ = await _organisation_with(client)

    with psycopg.connect(test_database.urls.app) as connection:
        connection.execute(
            "DELETE FROM organisation_members WHERE organisation_id = %s", (organisation_id,)
        )
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="no owner"):
            connection.commit()

    members = await client.get(
        f"/v1/organisations/{organisation_id}/members", headers=owner.headers
    )
    assert [m["role"] for m in members.json()["data"]] == ["owner"]


async def test_the_database_refuses_an_organisation_without_an_owner(
    test_database: IsolatedDatabase,
) -> None:
    with psycopg.connect(test_database.urls.app) as connection:
        connection.execute(
            "INSERT INTO organisations (id, name, slug, country, default_currency) "
            "VALUES ('org_000000000000000000000000', 'Orphan', 'orphan', 'DE', 'EUR')"
        )
        with pytest.raises(psycopg.errors.IntegrityConstraintViolation, match="no owner"):
            connection.commit()
