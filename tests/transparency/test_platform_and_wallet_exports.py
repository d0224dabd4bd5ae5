"""Every chain checkable from outside: the platform's chains are public (list, pages, signed
exports, checkpoints) and a wallet's owner downloads a signed export of their own chain. With
the three kinds of download, an auditor checks that internal journals sum to zero across
chains (docs/public-api.md, "What an auditor can prove, with which downloads")."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from amply.cli import main
from amply.kit.db import Database
from amply.ledger import checkpoints
from amply.ledger.service import INTERNAL_TYPES, PLATFORM_FEES_CHAIN, PLATFORM_PROMOTIONS_CHAIN
from amply.ledger.signing import NoteSigner
from amply.verify import VerifierKey, parse_checkpoint, verify_export
from tests.factories import Account, error_of, sign_up

BONUS = 10_000  # the welcome bonus of the test settings (demo mode)
WALLET_EXPORT = "/v1/wallet/ledger/export"
WALLET_CHECKPOINT = "/v1/wallet/checkpoint"


def _platform(chain_id: str, tail: str = "") -> str:
    return f"/v1/public/platform/chains/{chain_id}{tail}"


def keyed(account: Account) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": uuid.uuid4().hex}


async def _published_keys(client: httpx.AsyncClient) -> tuple[list[VerifierKey], Any]:
    response = await client.get("/v1/public/keys")
    assert response.status_code == 200
    body = response.json()
    return [VerifierKey.parse(item["key"]) for item in body["data"]], body


async def _download(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.get(url, headers=headers or {})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _send(client: httpx.AsyncClient, sender: Account, recipient: Account, amount: int) -> Any:
    response = await client.post(
        "/v1/transfers",
        json={"recipient": recipient.username, "amount": amount, "description": "Lunch"},
        headers=keyed(sender),
    )
    assert response.status_code == 201, response.text
    transfer = response.json()
    if transfer["status"] == "pending_confirmation":  # a first transfer to this recipient
        response = await client.post(
            f"/v1/transfers/{transfer['id']}/confirm", headers=sender.headers
        )
        assert response.status_code == 200, response.text
        transfer = response.json()
    assert transfer["status"] == "completed", transfer
    return transfer


async def _withdraw_instantly(client: httpx.AsyncClient, account: Account, amount: int) -> Any:
    response = await client.post(
        "/v1/withdrawals",
        json={"amount": amount, "bank_name": "First Community Bank", "speed": "instant"},
        headers=keyed(account),
    )
    assert response.status_code == 201, response.text
    return response.json()


def _amply_verify(tmp_path: Path, name: str, export: dict[str, Any], keys: Any) -> int:
    """``amply verify EXPORT --key keys.json``, as an auditor runs it on the downloads."""
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(keys))
    export_file = tmp_path / f"{name}.ledger.json"
    export_file.write_text(json.dumps(export))
    return main(["verify", str(export_file), "--key", str(keys_file)])


async def test_the_platform_chains_are_listed_with_their_totals_and_heads(
    client: httpx.AsyncClient,
) -> None:
    alice = await sign_up(client)
    await _withdraw_instantly(client, alice, 2_000)  # a fee of 30 (1.5%)

    listed = await client.get("/v1/public/platform/chains")
    fees = await client.get(_platform(PLATFORM_FEES_CHAIN))
    missing = await client.get(_platform("plat_nothing"))
    not_platform = await client.get(_platform("org_000000000000000000000000"))

    assert listed.status_code == 200, listed.text
    assert listed.headers["cache-control"].startswith("public")
    chains = {chain["id"]: chain for chain in listed.json()["data"]}
    # plat_losses: what refunds and chargebacks of deposits cost (docs/wallets.md).
    assert set(chains) == {PLATFORM_FEES_CHAIN, PLATFORM_PROMOTIONS_CHAIN, "plat_losses"}
    [promotions] = chains[PLATFORM_PROMOTIONS_CHAIN]["totals"]
    assert promotions == {
        "currency": "USD",
        "by_type": {"promotion_granted": -BONUS},
        "entries": 1,
        "balance": -BONUS,
    }
    assert fees.status_code == 200
    assert fees.json() == chains[PLATFORM_FEES_CHAIN]
    assert fees.json()["totals"][0]["by_type"] == {"fee_collected": 30}
    assert fees.json()["head"]["seq"] == 1
    assert error_of(missing, 404)["message"] == "No such platform chain."
    assert not_platform.status_code == 422


async def test_a_platform_chain_export_verifies_with_the_published_key_and_its_checkpoint(
    client: httpx.AsyncClient, signer: NoteSigner, tmp_path: Path
) -> None:
    alice = await sign_up(client)
    await _withdraw_instantly(client, alice, 2_000)
    await _withdraw_instantly(client, alice, 1_000)

    keys, keys_document = await _published_keys(client)
    checkpoint = await client.get(_platform(PLATFORM_FEES_CHAIN, "/checkpoint"))
    note = await client.get(
        _platform(PLATFORM_FEES_CHAIN, "/checkpoint"), headers={"Accept": "text/plain"}
    )
    response = await client.get(_platform(PLATFORM_FEES_CHAIN, "/ledger/export"))
    export = response.json()
    page = await _download(client, _platform(PLATFORM_FEES_CHAIN, "/ledger"))
    verdict = await _download(client, _platform(PLATFORM_FEES_CHAIN, "/ledger/verify"))
    empty = await client.get(_platform("plat_nothing", "/ledger"))
    unknown_export = await client.get(_platform("plat_nothing", "/ledger/export"))

    assert response.status_code == 200
    assert response.headers["cache-control"].startswith("public")
    assert export["chain"] == {"id": PLATFORM_FEES_CHAIN, "kind": "platform"}
    body = checkpoint.json()
    assert parse_checkpoint(body["note"]).signer(keys) == signer.verifier_key
    assert body["origin"] == f"amply.test/ledger/{PLATFORM_FEES_CHAIN}"
    assert note.text == body["note"]
    assert export["checkpoint"] == {"note": body["note"], "key": body["key"]}
    assert export["head"] == {"seq": 2, "entry_hash": body["root_hash"]}
    result = verify_export(export, keys=keys)
    assert result.ok, result.reason
    assert result.checkpoint is not None
    assert result.checkpoint["pinned"]
    assert _amply_verify(tmp_path, PLATFORM_FEES_CHAIN, export, keys_document) == 0
    assert page["data"] == export["entries"]
    assert [e["amount"] for e in export["entries"]] == [30, 15]
    assert verdict["ok"]
    assert verdict["head_seq"] == 2
    assert error_of(empty, 404)["message"] == "No such platform chain."
    assert error_of(unknown_export, 404)["message"] == "No such platform chain."


async def test_a_wallet_owner_downloads_a_signed_export_of_their_own_chain(
    client: httpx.AsyncClient, signer: NoteSigner, tmp_path: Path
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    wallet = await _download(client, "/v1/wallet", alice.headers)
    await _send(client, alice, bob, 1_500)

    keys, keys_document = await _published_keys(client)
    response = await client.get(WALLET_EXPORT, headers=alice.headers)
    export = response.json()
    again = await client.get(
        WALLET_EXPORT, headers={**alice.headers, "If-None-Match": response.headers["etag"]}
    )
    checkpoint = await client.get(WALLET_CHECKPOINT, headers=alice.headers)
    bobs = await _download(client, WALLET_EXPORT, bob.headers)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-store"
    assert export["chain"] == {"id": wallet["id"], "kind": "wallet"}
    assert [e["type"] for e in export["entries"]] == ["welcome_bonus", "transfer_out"]
    assert export["head"]["seq"] == 2
    result = verify_export(export, keys=keys)
    assert result.ok, result.reason
    assert result.checkpoint is not None
    assert result.checkpoint["pinned"]
    assert result.balances == {"USD": BONUS - 1_500}
    assert _amply_verify(tmp_path, wallet["id"], export, keys_document) == 0
    assert again.status_code == 304
    assert again.headers["cache-control"] == "private, no-store"
    assert checkpoint.status_code == 200
    assert checkpoint.headers["cache-control"] == "private, no-store"
    assert checkpoint.json()["note"] == export["checkpoint"]["note"]
    assert parse_checkpoint(checkpoint.json()["note"]).signer(keys) == signer.verifier_key
    # Bob's download is Bob's chain: nobody can download another's.
    assert bobs["chain"]["id"] != wallet["id"]
    assert all(entry["chain_id"] == bobs["chain"]["id"] for entry in bobs["entries"])


@pytest.mark.parametrize("url", [WALLET_EXPORT, WALLET_CHECKPOINT])
async def test_a_wallets_export_and_checkpoint_need_its_owner(
    client: httpx.AsyncClient, url: str
) -> None:
    await sign_up(client)
    anonymous = await client.get(url)
    forged = await client.get(url, headers={"Authorization": "Bearer not-a-session"})

    assert error_of(anonymous, 401)["type"] == "authentication_error"
    assert forged.status_code == 401
    # No public route serves a wallet's chain, whatever its id.
    wallet_chain = await client.get(_platform("wal_000000000000000000000000", "/ledger/export"))
    assert wallet_chain.status_code == 422


async def test_a_wallet_export_names_no_one_beyond_what_its_owner_sees(
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    await _send(client, alice, bob, 700)
    await _withdraw_instantly(client, alice, 1_000)

    bobs = await client.get(WALLET_EXPORT, headers=bob.headers)
    history = await _download(client, "/v1/transactions", bob.headers)
    fees = await client.get(_platform(PLATFORM_FEES_CHAIN, "/ledger/export"))
    promotions = await client.get(_platform(PLATFORM_PROMOTIONS_CHAIN, "/ledger/export"))
    alices_wallet = (await _download(client, "/v1/wallet", alice.headers))["id"]

    # Bob's export names Alice's wallet (as his history does), never her name or email.
    [received] = [item for item in history["data"] if item["type"] == "received"]
    assert received["counterparty"]["wallet_id"] == alices_wallet
    assert alices_wallet in bobs.text
    for personal in (alice.username, alice.email, alice.username.title(), alice.user_id):
        assert personal.lower() not in bobs.text.lower()
    # The public platform chains name no wallet and no person at all.
    for public in (fees.text, promotions.text):
        assert "wal_" not in public
        assert alice.username.lower() not in public.lower()


async def test_an_auditor_checks_that_internal_journals_sum_to_zero_across_exports(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The procedure of docs/public-api.md: verify each download, then match journal ids."""
    alice, bob = await sign_up(client), await sign_up(client)
    transfer = await _send(client, alice, bob, 1_500)
    withdrawal = await _withdraw_instantly(client, alice, 2_000)  # fee 30

    _, keys_document = await _published_keys(client)
    exports = {
        "alice": await _download(client, WALLET_EXPORT, alice.headers),
        "bob": await _download(client, WALLET_EXPORT, bob.headers),
        "fees": await _download(client, _platform(PLATFORM_FEES_CHAIN, "/ledger/export")),
        "promotions": await _download(
            client, _platform(PLATFORM_PROMOTIONS_CHAIN, "/ledger/export")
        ),
    }
    for name, export in exports.items():  # 1. each download verifies on its own
        assert _amply_verify(tmp_path, name, export, keys_document) == 0, name

    # 2. Every leg of every download, by journal id.
    journals: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for export in exports.values():
        for entry in export["entries"]:
            journals[entry["journal_id"]].append(entry)
    # 3. The internal legs of each journal of Alice's wallet sum to zero per currency, across
    # the chains they touch; external legs (deposit, withdrawal) stand alone.
    checked = 0
    for entry in exports["alice"]["entries"]:
        legs = journals[entry["journal_id"]]
        sums: dict[str, int] = defaultdict(int)
        for leg in legs:
            if leg["type"] in INTERNAL_TYPES:
                sums[leg["currency"]] += leg["amount"]
        assert all(total == 0 for total in sums.values()), legs
        checked += 1
    assert checked == 4  # the bonus, the transfer, the withdrawal and its fee

    by_type = {
        entry["type"]: entry["journal_id"]
        for export in exports.values()
        for entry in export["entries"]
    }
    [transfer_legs] = [
        legs for legs in journals.values() if {leg["type"] for leg in legs} >= {"transfer_in"}
    ]
    assert {(leg["type"], leg["amount"]) for leg in transfer_legs} == {
        ("transfer_out", -1_500),
        ("transfer_in", 1_500),
    }
    assert all(
        json.loads(leg["metadata"])["transaction_id"] == transfer["id"] for leg in transfer_legs
    )
    fee_legs = journals[by_type["fee_collected"]]
    assert {(leg["chain_id"], leg["type"], leg["amount"]) for leg in fee_legs} == {
        (exports["alice"]["chain"]["id"], "withdrawal", -2_000),
        (exports["alice"]["chain"]["id"], "withdrawal_fee", -30),
        (PLATFORM_FEES_CHAIN, "fee_collected", 30),
    }
    assert all(
        json.loads(leg["metadata"])["transaction_id"] == withdrawal["id"] for leg in fee_legs
    )
    # Each welcome bonus on a wallet has its opposite on the promotions chain.
    bonuses = [e for e in exports["promotions"]["entries"] if e["type"] == "promotion_granted"]
    assert len(bonuses) == 2
    for bonus in bonuses:
        assert sum(leg["amount"] for leg in journals[bonus["journal_id"]]) == 0


async def test_the_background_signer_signs_platform_chains_and_never_wallets(
    client: httpx.AsyncClient, database: Database, signer: NoteSigner
) -> None:
    alice = await sign_up(client)  # a welcome bonus: one entry on her wallet, one on promotions
    wallet_id = (await _download(client, "/v1/wallet", alice.headers))["id"]

    async with database.session() as session:
        behind = await checkpoints.chains_behind(session)
    await checkpoints.sign_chains_behind(database, signer=signer)
    async with database.session() as session:
        promotions = await checkpoints.latest(session, chain_id=PLATFORM_PROMOTIONS_CHAIN)
        wallet = await checkpoints.latest(session, chain_id=wallet_id)

    assert PLATFORM_PROMOTIONS_CHAIN in behind
    assert wallet_id not in behind
    assert promotions is not None
    assert wallet is None  # signed only when its owner asks
