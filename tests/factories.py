"""Plain factory functions for tests."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from amply.kit.db import Database
from amply.kit.ids import generate_id
from amply.ledger import service as ledger
from amply.ledger.service import Entry, Leg
from amply.models.enums import ChainKind, EntryType

_PREFIX = {"organisation": "org", "wallet": "wal", "platform": "plat"}


async def make_chain(database: Database, *, kind: ChainKind = "organisation") -> str:
    chain_id = generate_id(_PREFIX[kind])  # type: ignore[arg-type]
    async with database.session() as session:
        await ledger.create_chain(session, chain_id=chain_id, kind=kind)
        await session.commit()
    return chain_id


async def append(
    database: Database,
    chain_id: str,
    amount: int,
    *,
    entry_type: EntryType = EntryType.DEPOSIT,
    currency: str = "EUR",
    metadata: dict[str, ledger.JSONValue] | None = None,
) -> Entry:
    async with database.session() as session:
        [entry] = await ledger.append_journal(
            session,
            legs=[Leg(chain_id, entry_type, amount, currency, metadata or {})],
        )
        await session.commit()
    return entry


async def transfer(
    database: Database, *, sender: str, recipient: str, amount: int, currency: str = "EUR"
) -> list[Entry]:
    async with database.session() as session:
        entries = await ledger.append_journal(
            session,
            legs=[
                Leg(sender, "transfer_out", -amount, currency),
                Leg(recipient, "transfer_in", amount, currency),
            ],
        )
        await session.commit()
    return entries


# --- Identity -------------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"
_names = itertools.count(1)


@dataclass(frozen=True)
class Account:
    """A signed-up user holding a bearer session token."""

    user_id: str
    username: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def sign_up(
    client: httpx.AsyncClient, *, username: str | None = None, password: str = PASSWORD
) -> Account:
    username = username or f"user_{next(_names)}_{secrets.token_hex(3)}"
    email = f"{username.lower()}@example.org"
    response = await client.post(
        "/v1/auth/signup",
        json={
            "name": username.title(),
            "username": username,
            "email": email,
            "password": password,
            "session_type": "token",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(
        user_id=body["user"]["id"], username=username, email=email, token=body["session"]["token"]
    )


async def create_organisation(
    client: httpx.AsyncClient, owner: Account, *, slug: str | None = None
) -> str:
    slug = slug or f"org-{next(_names)}-{secrets.token_hex(3)}"
    response = await client.post(
        "/v1/organisations",
        json={"name": slug.title(), "slug": slug, "country": "DE", "default_currency": "EUR"},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    organisation_id: str = response.json()["organisation"]["id"]
    return organisation_id


async def add_member(
    client: httpx.AsyncClient, owner: Account, organisation_id: str, member: Account, role: str
) -> None:
    response = await client.post(
        f"/v1/organisations/{organisation_id}/members",
        json={"username": member.username, "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text


async def create_api_key(
    client: httpx.AsyncClient, admin: Account, organisation_id: str, *, read_only: bool = False
) -> tuple[str, str]:
    """A new key of the organisation: (key id, secret)."""
    response = await client.post(
        f"/v1/organisations/{organisation_id}/api-keys",
        json={"name": "integration", "read_only": read_only},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["secret"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# --- Donations ------------------------------------------------------------------------------


async def onboard(client: httpx.AsyncClient, admin: Account, organisation_id: str) -> str:
    """Create the organisation's Stripe account (sandbox: ready at once); its id."""
    response = await client.post(
        f"/v1/organisations/{organisation_id}/stripe-account", headers=admin.headers
    )
    assert response.status_code == 200, response.text
    account_id: str = response.json()["account_id"]
    return account_id


async def create_fund(
    client: httpx.AsyncClient, admin: Account, organisation_id: str, *, name: str = "Wells"
) -> str:
    response = await client.post(
        f"/v1/organisations/{organisation_id}/funds",
        json={"name": name, "description": "Clean water"},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    fund_id: str = response.json()["id"]
    return fund_id


def donation_body(organisation_id: str, **fields: object) -> dict[str, object]:
    return {"organisation_id": organisation_id, "amount": 2500, "currency": "EUR", **fields}


async def donate(
    client: httpx.AsyncClient,
    organisation_id: str,
    *,
    headers: dict[str, str] | None = None,
    **fields: object,
) -> dict[str, object]:
    """Check out a donation; the checkout response."""
    response = await client.post(
        "/v1/donations", json=donation_body(organisation_id, **fields), headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def sandbox_succeed(client: httpx.AsyncClient, checkout: dict[str, object]) -> None:
    payment = checkout["payment"]
    assert isinstance(payment, dict)
    response = await client.post(f"/v1/sandbox/payments/{payment['payment_intent_id']}/succeed")
    assert response.status_code == 200, response.text


async def onboarded_organisation(client: httpx.AsyncClient) -> tuple[Account, str]:
    """A new owner and their organisation, ready to accept (sandbox) donations."""
    owner = await sign_up(client)
    organisation_id = await create_organisation(client, owner)
    await onboard(client, owner, organisation_id)
    return owner, organisation_id


# --- Assertions shared by the API tests -----------------------------------------------------


# Organisations' entries only: every sign-up also writes its wallet's welcome bonus.
ORGANISATION_ENTRIES = "ledger_entries WHERE chain_id LIKE 'org%'"


def count_rows(superuser_sql: Callable[..., list[tuple[Any, ...]]], table: str) -> int:
    [(count,)] = superuser_sql(f"SELECT count(*) FROM {table}")
    return int(count)


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response's error, after checking its status and the standard error shape."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"type", "code", "message", "param"}
    return error


# --- Wallets --------------------------------------------------------------------------------


async def wallet_id_of(database: Database, user_id: str) -> str:
    from amply.wallets import service as wallets

    async with database.session() as session:
        wallet = await wallets.of_user(session, user_id=user_id)
        return wallet.id


async def fund_wallet(database: Database, wallet_id: str, amount: int) -> None:
    """Credit a wallet as a completed sandbox bank deposit would (a test shortcut)."""
    from sqlalchemy import func

    from amply.models import Transaction, Wallet

    async with database.session() as session:
        wallet = await session.get(Wallet, wallet_id)
        assert wallet is not None
        transaction_id = generate_id("txn")
        [entry] = await ledger.append_journal(
            session,
            legs=[
                Leg(
                    wallet_id,
                    "deposit",
                    amount,
                    wallet.currency,
                    {"transaction_id": transaction_id, "source": "bank"},
                )
            ],
        )
        session.add(
            Transaction(
                id=transaction_id,
                kind="deposit",
                status="completed",
                wallet_id=wallet_id,
                amount=amount,
                currency=wallet.currency,
                description="Test deposit",
                source="bank",
                bank_name="Test Bank",
                provider="sandbox",
                journal_id=entry.journal_id,
                completed_at=func.now(),
            )
        )
        await session.commit()
