"""An honest chain is never reported as tampered: while donations land on one organisation's
chain, every reader that compares a head with entries (checkpoints, exports, receipts, the
server's verification) answers, and every checkpoint it signs extends the one before."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from amply.kit.settings import Settings
from amply.ledger.signing import NoteSigner
from amply.verify import parse_checkpoint, verify_export, verify_receipt
from tests.conftest import ClientFactory, SuperuserSql
from tests.factories import donate, onboarded_organisation, sandbox_succeed

APPENDERS = 4
DONATIONS_EACH = 6
READS_EACH = 12


async def _give(client: httpx.AsyncClient, organisation_id: str, count: int) -> list[Any]:
    checkouts = []
    for number in range(count):
        checkout = await donate(client, organisation_id, amount=100 + number)
        await sandbox_succeed(client, checkout)
        checkouts.append(checkout)
    return checkouts


async def _read(client: httpx.AsyncClient, url: str, **headers: str) -> list[httpx.Response]:
    responses = []
    for _ in range(READS_EACH):
        responses.append(await client.get(url, headers=headers))
    return responses


async def test_concurrent_appends_never_raise_a_false_tamper_alarm(
    make_client: ClientFactory,
    settings: Settings,
    signer: NoteSigner,
    superuser_sql: SuperuserSql,
) -> None:
    generous = settings.model_copy(
        update={"checkout_max_per_address": 1000, "checkout_max_per_email": 1000}
    )
    async with make_client(generous) as client:
        await _storm(client, signer=signer, superuser_sql=superuser_sql)


async def _storm(
    client: httpx.AsyncClient, *, signer: NoteSigner, superuser_sql: SuperuserSql
) -> None:
    _, organisation_id = await onboarded_organisation(client)
    [first] = await _give(client, organisation_id, 1)
    public = f"/v1/public/organisations/{organisation_id}"
    receipt_url = f"/v1/donations/{first['donation']['id']}/receipt"
    token = first["receipt_token"]

    results = await asyncio.gather(
        *(_give(client, organisation_id, DONATIONS_EACH) for _ in range(APPENDERS)),
        _read(client, f"{public}/checkpoint"),
        _read(client, f"{public}/checkpoint"),
        _read(client, f"{public}/ledger/export"),
        _read(client, f"{public}/ledger/verify"),
        _read(client, receipt_url, **{"X-Receipt-Token": token}),
    )
    reads: list[httpx.Response] = [r for batch in results[APPENDERS:] for r in batch]

    assert [r.status_code for r in reads] == [200] * len(reads), [
        r.text for r in reads if r.status_code != 200
    ]
    final = (await client.get(f"{public}/ledger/export")).json()
    keys = [signer.verifier_key]
    assert verify_export(final, keys=keys).ok
    for response in reads:
        body = response.json()
        if response.url.path.endswith("/export"):
            assert verify_export(body, keys=keys).ok
        elif response.url.path.endswith("/verify"):
            assert body["ok"], body
        elif response.url.path.endswith("/receipt"):
            assert verify_receipt(body, final, keys=keys).ok
    # Every checkpoint ever signed is a prefix of the final chain: each extends the one before.
    signed = superuser_sql(
        "SELECT size, root_hash, note FROM ledger_checkpoints WHERE chain_id = %s ORDER BY size",
        organisation_id,
    )
    assert len(signed) > 1
    for size, root_hash, note in signed:
        assert final["entries"][size - 1]["entry_hash"] == root_hash
        assert parse_checkpoint(note).signer(keys) == signer.verifier_key
