"""Signed checkpoints over the API, the keys that sign them, and donor receipts: a donor proves
their donation is a public entry that names nobody."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from amply.kit.settings import Settings
from amply.ledger.key_custody import install_key
from amply.ledger.signing import NoteSigner
from amply.verify import (
    VerifierKey,
    parse_checkpoint,
    receipt_commitment,
    verify_export,
    verify_receipt,
)
from tests.conftest import ClientFactory, IsolatedDatabase, SuperuserSql
from tests.factories import donate, error_of, onboarded_organisation, sandbox_succeed


def _export_url(organisation_id: str) -> str:
    return f"/v1/public/organisations/{organisation_id}/ledger/export"


def _checkpoint_url(organisation_id: str) -> str:
    return f"/v1/public/organisations/{organisation_id}/checkpoint"


async def _published_keys(client: httpx.AsyncClient) -> list[VerifierKey]:
    response = await client.get("/v1/public/keys")
    assert response.status_code == 200
    return [VerifierKey.parse(item["key"]) for item in response.json()["data"]]


async def _donation(client: httpx.AsyncClient, organisation_id: str, **fields: Any) -> Any:
    checkout = await donate(client, organisation_id, **fields)
    await sandbox_succeed(client, checkout)
    return checkout


async def test_the_published_key_verifies_the_checkpoint_and_the_export(
    client: httpx.AsyncClient, signer: NoteSigner
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    empty = await client.get(_checkpoint_url(organisation_id))
    await _donation(client, organisation_id)

    keys = await _published_keys(client)
    checkpoint = await client.get(_checkpoint_url(organisation_id))
    export = (await client.get(_export_url(organisation_id))).json()

    assert error_of(empty, 404)["code"] == "checkpoint_missing"
    assert keys == [signer.verifier_key]
    body = checkpoint.json()
    parsed = parse_checkpoint(body["note"])
    assert parsed.signer(keys) == signer.verifier_key
    assert (body["size"], body["root_hash"]) == (parsed.size, parsed.root_hash)
    assert body["origin"] == f"amply.test/ledger/{organisation_id}"
    assert export["checkpoint"] == {"note": body["note"], "key": body["key"]}
    assert export["head"] == {"seq": body["size"], "entry_hash": body["root_hash"]}
    result = verify_export(export, keys=keys)
    assert result.ok, result.reason
    assert result.checkpoint is not None
    assert result.checkpoint["pinned"]


async def test_the_checkpoint_is_plain_text_on_request_and_follows_the_head(
    client: httpx.AsyncClient,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    await _donation(client, organisation_id)
    first = await client.get(_checkpoint_url(organisation_id), headers={"Accept": "text/plain"})
    await _donation(client, organisation_id, amount=700)
    second = (await client.get(_checkpoint_url(organisation_id))).json()

    assert first.headers["content-type"] == "text/plain; charset=utf-8"
    older = parse_checkpoint(first.text)
    assert second["size"] > older.size
    later = (await client.get(_export_url(organisation_id))).json()
    assert later["entries"][older.size - 1]["entry_hash"] == older.root_hash


async def test_after_a_rotation_the_old_key_stays_listed(
    client: httpx.AsyncClient,
    make_client: ClientFactory,
    settings: Settings,
    signer: NoteSigner,
    test_database: IsolatedDatabase,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    await _donation(client, organisation_id)
    old_checkpoint = (await client.get(_checkpoint_url(organisation_id))).json()
    rotated = NoteSigner.generate("amply.test")
    install_key(test_database.urls.migration, rotated.verifier_key)
    new_settings = settings.model_copy(
        update={"checkpoint_signing_key": SecretStr(rotated.encode())}
    )

    async with make_client(new_settings) as after:
        await _donation(after, organisation_id, amount=900)
        listed = (await after.get("/v1/public/keys")).json()["data"]
        export = (await after.get(_export_url(organisation_id))).json()

    status = {VerifierKey.parse(item["key"]): item["status"] for item in listed}
    assert status == {signer.verifier_key: "retired", rotated.verifier_key: "active"}
    assert verify_export(export, keys=[rotated.verifier_key]).ok
    assert not verify_export(export, keys=[signer.verifier_key]).ok  # signed by the new key
    # A checkpoint kept from before the rotation still checks against the listed old key.
    assert parse_checkpoint(old_checkpoint["note"]).signer([signer.verifier_key])


async def test_a_donor_proves_an_anonymous_public_entry_is_theirs(
    client: httpx.AsyncClient, signer: NoteSigner
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    checkout = await _donation(
        client,
        organisation_id,
        anonymous=True,
        donor_name="Zoë Secret",
        donor_email="zoe@example.org",
    )
    await _donation(client, organisation_id, amount=4_000)  # someone else's
    token = {"X-Receipt-Token": checkout["receipt_token"]}

    response = await client.get(
        f"/v1/donations/{checkout['donation']['id']}/receipt", headers=token
    )
    receipt = response.json()
    export = (await client.get(_export_url(organisation_id))).json()

    result = verify_receipt(receipt, export, keys=[signer.verifier_key])
    assert result.ok, result.reason
    assert response.headers["cache-control"] == "no-store"
    public = export["entries"][receipt["entry"]["seq"] - 1]
    metadata = json.loads(public["metadata"])
    assert metadata["receipt_commitment"] == receipt["commitment"]["value"]
    assert metadata["donor"] == "Anonymous"
    assert "Zoë" not in json.dumps(export, ensure_ascii=False)
    assert "zoe@example.org" not in json.dumps(export)
    assert receipt["commitment"]["salt"] not in json.dumps(export)
    assert receipt["commitment"]["value"] == receipt_commitment(
        donation_id=checkout["donation"]["id"],
        salt=receipt["commitment"]["salt"],
        secret=receipt["commitment"]["secret"],
    )


async def test_a_receipt_does_not_prove_someone_elses_donation(
    client: httpx.AsyncClient, signer: NoteSigner
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    mine = await _donation(client, organisation_id)
    theirs = await _donation(client, organisation_id)
    receipt = (
        await client.get(
            f"/v1/donations/{mine['donation']['id']}/receipt",
            headers={"X-Receipt-Token": mine["receipt_token"]},
        )
    ).json()
    export = (await client.get(_export_url(organisation_id))).json()
    their_entry = next(
        entry
        for entry in export["entries"]
        if json.loads(entry["metadata"]).get("donation_id") == theirs["donation"]["id"]
    )
    claimed = {
        **receipt,
        "donation": {**receipt["donation"], "id": theirs["donation"]["id"]},
        "entry": {**receipt["entry"], "seq": their_entry["seq"], "id": their_entry["id"]},
    }
    claimed["entry"]["entry_hash"] = their_entry["entry_hash"]

    result = verify_receipt(claimed, export, keys=[signer.verifier_key])

    assert not result.ok
    assert "does not open" in (result.reason or "")


async def test_no_receipt_before_completion_or_without_the_token(
    client: httpx.AsyncClient,
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    pending: Any = await donate(client, organisation_id)
    url = f"/v1/donations/{pending['donation']['id']}/receipt"

    early = await client.get(url, headers={"X-Receipt-Token": pending["receipt_token"]})
    wrong = await client.get(url, headers={"X-Receipt-Token": "rct_" + "x" * 43})
    missing = await client.get(url)

    assert error_of(early, 409)["code"] == "donation_not_completed"
    assert error_of(wrong, 404)["code"] == "resource_missing"
    assert error_of(missing, 401)["code"] == "authentication_required"


async def test_a_donations_receipt_salt_never_changes(
    client: httpx.AsyncClient, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    checkout = await _donation(client, organisation_id)

    with pytest.raises(psycopg.errors.CheckViolation, match="receipt salt"):
        superuser_sql(
            "UPDATE donations SET receipt_salt = repeat('a', 64) WHERE id = %s",
            checkout["donation"]["id"],
        )
