"""Plain factory functions for tests."""

from __future__ import annotations

from amply.db import Database
from amply.lib.ids import generate_id
from amply.services import ledger
from amply.services.ledger import ChainKind, Entry, Leg

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
    entry_type: ledger.EntryType = "deposit",
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
