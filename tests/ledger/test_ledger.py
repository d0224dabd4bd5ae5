"""The ledger's invariants (SPEC.md §4), each attacked through the service and through SQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.db import Database
from amply.kit.errors import Conflict, InsufficientFunds, NotFound
from amply.kit.ids import generate_id
from amply.ledger import service as ledger
from amply.ledger.service import LedgerError, Leg, append_args, append_sql
from amply.verify import verify_entries
from tests.conftest import IsolatedDatabase
from tests.factories import append, make_chain, transfer
from tests.verify.test_crypto import load_vectors


@contextmanager
def connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(url, autocommit=True) as connection:
        yield connection


def append_raw(connection: psycopg.Connection[Any], *columns: Any) -> None:
    """Run the service's append statement directly, given the legs as columns (ids, chain
    ids, types, amounts, currencies, metadata) and the journal id; its $n placeholders
    become psycopg's %(pn)s."""
    *legs, journal_id = columns
    rows = list(zip(*legs, strict=True))
    arguments = append_args(rows, journal_id)
    statement = append_sql(len(rows))
    for position in range(len(arguments), 0, -1):
        statement = statement.replace(f"${position}", f"%(p{position})s")
    connection.execute(statement, {f"p{n}": value for n, value in enumerate(arguments, start=1)})


async def chain_rows(session: AsyncSession, chain_id: str) -> list[ledger.Entry]:
    page = await ledger.list_entries(session, chain_id=chain_id, limit=100_000)
    return page.entries


# --- honest hashes ---------------------------------------------------------------------


async def test_committed_vectors_hash_identically_in_postgresql(
    test_database: IsolatedDatabase,
) -> None:
    with connect(test_database.urls.app) as connection:
        for vector in load_vectors():
            entry = vector["entry"]
            computed = connection.execute(
                "SELECT ledger_entry_hash(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::timestamptz, %s)",
                (
                    entry["chain_id"],
                    entry["seq"],
                    entry["id"],
                    entry["type"],
                    entry["amount"],
                    entry["currency"],
                    entry["balance_after"],
                    entry["metadata"],
                    entry["journal_id"],
                    entry["created_at"],
                    entry["prev_entry_hash"],
                ),
            ).fetchone()
            assert computed == (entry["entry_hash"],), vector["description"]


async def test_stored_entries_verify_with_the_python_verifier(database: Database) -> None:
    chain = await make_chain(database)
    metadata: dict[str, ledger.JSONValue] = {"name": "Zoë 🎉", "note": 'quote " and \n newline'}
    for amount in (500, -120, 75):
        await append(database, chain, amount, entry_type="donation_received", metadata=metadata)
    async with database.session() as session:
        entries = await chain_rows(session, chain)
        result = await ledger.verify_chain(session, chain_id=chain)
    assert result.ok, result.verdict()
    assert [entry.seq for entry in entries] == [1, 2, 3]
    assert json.loads(entries[0].metadata) == metadata
    exported = [entry.as_export() for entry in entries]
    offline = verify_entries(chain, kind="organisation", entries=exported)
    assert (offline.ok, offline.head_hash) == (True, entries[-1].entry_hash)


# --- linear chains, balances -------------------------------------------------------------


async def test_append_assigns_seq_link_balance_and_time(database: Database) -> None:
    chain = await make_chain(database)
    first = await append(database, chain, 1000)
    second = await append(database, chain, -250, entry_type="withdrawal")
    assert (first.seq, first.prev_entry_hash, first.balance_after) == (1, None, 1000)
    assert (second.seq, second.prev_entry_hash, second.balance_after) == (
        2,
        first.entry_hash,
        750,
    )
    assert second.created_at >= first.created_at
    async with database.session() as session:
        head = await ledger.get_head(session, chain_id=chain)
        assert (head.seq, head.entry_hash) == (2, second.entry_hash)
        assert await ledger.get_balances(session, chain_id=chain) == {"EUR": 750}


async def test_balances_are_kept_per_currency(database: Database) -> None:
    chain = await make_chain(database)
    await append(database, chain, 1000, currency="EUR")
    usd = await append(database, chain, 300, currency="usd")
    euro = await append(database, chain, 5, currency="EUR")
    assert (usd.balance_after, usd.currency, euro.balance_after) == (300, "USD", 1005)
    async with database.session() as session:
        assert await ledger.get_balances(session, chain_id=chain) == {"EUR": 1005, "USD": 300}
        result = await ledger.verify_chain(session, chain_id=chain)
    assert result.balances == {"EUR": 1005, "USD": 300}


async def test_balance_equals_the_sum_of_amounts(database: Database) -> None:
    chain = await make_chain(database, kind="wallet")
    for amount in (700, -200, 50, -550, 1):
        await append(database, chain, amount, entry_type="deposit" if amount > 0 else "withdrawal")
    async with database.session() as session:
        entries = await chain_rows(session, chain)
        balances = await ledger.get_balances(session, chain_id=chain)
    assert balances["EUR"] == sum(entry.amount for entry in entries) == entries[-1].balance_after


async def test_concurrent_appends_never_fork_the_chain(database: Database) -> None:
    chain = await make_chain(database)

    async def writer() -> None:
        for _ in range(50):
            await append(database, chain, 7, entry_type="donation_received")

    await asyncio.gather(*(writer() for _ in range(64)))
    async with database.session() as session:
        entries = await chain_rows(session, chain)
        result = await ledger.verify_chain(session, chain_id=chain)
    assert [entry.seq for entry in entries] == list(range(1, 3201))
    assert len({entry.prev_entry_hash for entry in entries}) == 3200
    assert result.ok
    assert result.head_seq == 3200
    assert result.balances == {"EUR": 3200 * 7}


async def test_opposite_direction_transfers_never_deadlock(database: Database) -> None:
    alice = await make_chain(database, kind="wallet")
    bob = await make_chain(database, kind="wallet")
    await append(database, alice, 10_000)
    await append(database, bob, 10_000)

    async def send(sender: str, recipient: str) -> None:
        for _ in range(25):
            await transfer(database, sender=sender, recipient=recipient, amount=3)

    await asyncio.gather(
        *(send(alice, bob) for _ in range(8)), *(send(bob, alice) for _ in range(8))
    )
    async with database.session() as session:
        assert await ledger.get_balances(session, chain_id=alice) == {"EUR": 10_000}
        assert await ledger.get_balances(session, chain_id=bob) == {"EUR": 10_000}
        for chain in (alice, bob):
            result = await ledger.verify_chain(session, chain_id=chain)
            assert result.ok
            assert result.head_seq == 1 + 400


async def test_concurrent_withdrawals_never_overdraw_a_wallet(database: Database) -> None:
    wallet = await make_chain(database, kind="wallet")
    await append(database, wallet, 100)

    async def withdraw() -> str:
        try:
            await append(database, wallet, -10, entry_type="withdrawal")
        except InsufficientFunds:
            return "insufficient_funds"
        return "ok"

    outcomes = await asyncio.gather(*(withdraw() for _ in range(20)))
    assert sorted(outcomes) == ["insufficient_funds"] * 10 + ["ok"] * 10
    async with database.session() as session:
        assert await ledger.get_balances(session, chain_id=wallet) == {"EUR": 0}
        assert (await ledger.verify_chain(session, chain_id=wallet)).head_seq == 11


async def test_an_overdraft_is_refused_and_leaves_nothing(database: Database) -> None:
    wallet = await make_chain(database, kind="wallet")
    organisation = await make_chain(database)
    await append(database, wallet, 50)
    with pytest.raises(InsufficientFunds):
        await append(database, wallet, -51, entry_type="withdrawal")
    with pytest.raises(InsufficientFunds):
        await transfer(database, sender=wallet, recipient=organisation, amount=60)
    async with database.session() as session:
        assert len(await chain_rows(session, wallet)) == 1
        assert await chain_rows(session, organisation) == []
    # Organisation and platform chains may go below zero (a refund after a payout, say).
    assert (
        await append(database, organisation, -5, entry_type="donation_refunded")
    ).balance_after == -5


def test_the_append_statement_takes_legs_in_chain_order_keeping_each_chains_own_order() -> None:
    legs = [
        ("led_1", "wal_b", "transfer_out", -5, "EUR", "{}"),
        ("led_2", "wal_a", "transfer_in", 3, "EUR", "{}"),
        ("led_3", "wal_b", "withdrawal_fee", -1, "EUR", "{}"),
        ("led_4", "wal_a", "transfer_in", 3, "EUR", "{}"),
    ]
    arguments = append_args(legs, "jrn_x")
    assert arguments[0::6][:4] == ("led_2", "led_4", "led_1", "led_3")
    assert arguments[-1] == "jrn_x"
    assert append_sql(4).count("$25)") == 4  # every row names the one journal id


async def test_two_legs_on_one_chain_are_chained_in_order(database: Database) -> None:
    chain = await make_chain(database)
    async with database.session() as session:
        entries = await ledger.append_journal(
            session,
            legs=[
                Leg(chain, "donation_received", 1000, "EUR"),
                Leg(chain, "payment_processing_fee", -59, "EUR"),
            ],
        )
        await session.commit()
    assert [(e.seq, e.balance_after) for e in entries] == [(1, 1000), (2, 941)]
    assert entries[1].prev_entry_hash == entries[0].entry_hash
    assert entries[0].journal_id == entries[1].journal_id


async def test_journals_in_one_transaction_must_not_lock_chains_out_of_order(
    database: Database,
) -> None:
    first = await make_chain(database, kind="wallet")
    second = await make_chain(database, kind="wallet")
    low, high = sorted([first, second])
    await append(database, low, 100)
    await append(database, high, 100)
    async with database.session() as session:
        await ledger.append_journal(session, legs=[Leg(high, "withdrawal", -1, "EUR")])
        with pytest.raises(LedgerError, match="could deadlock"):
            await ledger.append_journal(session, legs=[Leg(low, "withdrawal", -1, "EUR")])
        await session.rollback()
        # Locked up front, in any order of journals, the same work is safe and allowed.
        await ledger.lock_chains(session, chain_ids=[high, low])
        await ledger.append_journal(session, legs=[Leg(high, "withdrawal", -1, "EUR")])
        await ledger.append_journal(session, legs=[Leg(low, "withdrawal", -1, "EUR")])
        await session.commit()
        # The next transaction starts with no locks: the lower chain alone is fine again.
        await ledger.append_journal(session, legs=[Leg(low, "withdrawal", -1, "EUR")])
        await session.commit()
        with pytest.raises(NotFound):
            await ledger.lock_chains(session, chain_ids=["wal_Missing"])
        await session.rollback()
    async with database.session() as session:
        assert await ledger.get_balances(session, chain_id=low) == {"EUR": 98}
        assert await ledger.get_balances(session, chain_id=high) == {"EUR": 99}


async def test_concurrent_multi_journal_transactions_with_up_front_locks_never_deadlock(
    database: Database,
) -> None:
    alice = await make_chain(database, kind="wallet")
    bob = await make_chain(database, kind="wallet")
    await append(database, alice, 1000)
    await append(database, bob, 1000)

    async def two_journals(first: str, second: str) -> None:
        for _ in range(10):
            async with database.session() as session:
                await ledger.lock_chains(session, chain_ids=[first, second])
                await ledger.append_journal(session, legs=[Leg(first, "withdrawal", -1, "EUR")])
                await ledger.append_journal(session, legs=[Leg(second, "withdrawal", -1, "EUR")])
                await session.commit()

    await asyncio.gather(*(two_journals(alice, bob) for _ in range(4)),
                         *(two_journals(bob, alice) for _ in range(4)))  # fmt: skip
    async with database.session() as session:
        assert await ledger.get_balances(session, chain_id=alice) == {"EUR": 920}
        assert await ledger.get_balances(session, chain_id=bob) == {"EUR": 920}


async def test_appends_refuse_snapshot_isolation(
    database: Database, test_database: IsolatedDatabase
) -> None:
    chain = await make_chain(database)
    with connect(test_database.urls.app) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.errors.InvalidTransactionState, match="READ COMMITTED"):
            append_raw(
                connection,
                [generate_id("led")], [chain], ["deposit"], [1], ["EUR"], ["{}"],
                generate_id("jrn"),
            )  # fmt: skip


async def test_an_empty_chain_has_no_head_and_no_balances(database: Database) -> None:
    chain = await make_chain(database, kind="wallet")
    async with database.session() as session:
        assert await ledger.get_head(session, chain_id=chain) == ledger.ChainHead(0, None)
        assert await ledger.get_balances(session, chain_id=chain) == {}


async def test_appending_to_an_unknown_chain_is_not_found(session: AsyncSession) -> None:
    with pytest.raises(NotFound):
        await ledger.append_journal(session, legs=[Leg("org_missing", "deposit", 5, "EUR")])


async def test_a_null_or_unknown_chain_is_refused_by_the_database(
    test_database: IsolatedDatabase,
) -> None:
    with connect(test_database.urls.migration) as connection:
        for chain in (None, "org_missing"):
            with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
                connection.execute(
                    "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, "
                    "journal_id) VALUES (%s, %s, 'deposit', 5, 'EUR', %s)",
                    (generate_id("led"), chain, generate_id("jrn")),
                )
            assert refused.value.diag.constraint_name == "ledger_entries_chain_id_fkey"


async def test_a_chain_id_can_be_used_once(session: AsyncSession) -> None:
    await ledger.create_chain(session, chain_id="org_Once", kind="organisation")
    with pytest.raises(Conflict):
        await ledger.create_chain(session, chain_id="org_Once", kind="organisation")


async def test_pages_run_by_seq_with_has_more(database: Database) -> None:
    chain = await make_chain(database)
    for amount in range(1, 6):
        await append(database, chain, amount)
    async with database.session() as session:
        first = await ledger.list_entries(session, chain_id=chain, limit=2)
        last = await ledger.list_entries(session, chain_id=chain, after_seq=4, limit=2)
        with pytest.raises(ValueError, match="limit"):
            await ledger.list_entries(session, chain_id=chain, limit=0)
    assert ([e.seq for e in first.entries], first.has_more) == ([1, 2], True)
    assert ([e.seq for e in last.entries], last.has_more) == ([5], False)


async def test_platform_chains_exist_from_the_migrations(session: AsyncSession) -> None:
    # plat_losses since 0012_charge_reversals: refunds and chargebacks of deposits.
    assert sorted(await ledger.select_chain_ids(session, kind="platform")) == [
        "plat_fees",
        "plat_losses",
        "plat_promotions",
    ]


# --- double entry --------------------------------------------------------------------


async def test_the_service_refuses_an_unbalanced_internal_journal(session: AsyncSession) -> None:
    with pytest.raises(LedgerError, match="sum to zero"):
        await ledger.append_journal(
            session,
            legs=[Leg("wal_a", "transfer_out", -10, "EUR"), Leg("wal_b", "transfer_in", 9, "EUR")],
        )


async def test_the_database_rejects_an_unbalanced_internal_journal_at_commit(
    database: Database, test_database: IsolatedDatabase
) -> None:
    sender = await make_chain(database, kind="wallet")
    recipient = await make_chain(database, kind="wallet")
    await append(database, sender, 100)
    journal = generate_id("jrn")
    with connect(test_database.urls.app) as connection:
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            with connection.transaction():
                append_raw(
                    connection,
                    [generate_id("led")],
                    [sender],
                    ["transfer_out"],
                    [-10],
                    ["EUR"],
                    ["{}"],
                    journal,
                )
        # A balanced journal commits; a later leg added to it unbalances it and is refused.
        append_raw(
            connection,
            [generate_id("led"), generate_id("led")],
            [sender, recipient],
            ["transfer_out", "transfer_in"],
            [-10, 10],
            ["EUR", "EUR"],
            ["{}", "{}"],
            journal,
        )
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            append_raw(
                connection,
                [generate_id("led")],
                [recipient],
                ["transfer_in"],
                [10],
                ["EUR"],
                ["{}"],
                journal,
            )
        # External legs (a card payment, a payout) may stand alone in a journal.
        append_raw(
            connection,
            [generate_id("led")],
            [recipient],
            ["withdrawal"],
            [-5],
            ["EUR"],
            ["{}"],
            journal,
        )
    async with database.session() as session:
        assert await ledger.get_balances(session, chain_id=sender) == {"EUR": 90}
        assert await ledger.get_balances(session, chain_id=recipient) == {"EUR": 5}


@pytest.mark.parametrize(
    ("legs", "message"),
    [
        ([], "1 to 16 legs"),
        ([Leg("org_x", "deposit", 1, "EUR")] * 17, "1 to 16 legs"),
        ([Leg("org_x", "bonus", 1, "EUR")], "unknown entry type"),  # type: ignore[arg-type]
        ([Leg("org_x", "deposit", 1, "EURO")], "currency"),
        ([Leg("org_x", "deposit", 0, "EUR")], "positive"),
        ([Leg("org_x", "deposit", 1.5, "EUR")], "integer"),  # type: ignore[arg-type]
        ([Leg("org_x", "deposit", True, "EUR")], "integer"),
        ([Leg("org_x", "deposit", 10**16, "EUR")], "exceed"),
        ([Leg("org_x", "deposit", 1, "EUR", {"amount": 1.5})], "float"),
        ([Leg("org_x", "deposit", 1, "EUR", {"k": "\ud800"})], "Unicode"),
        ([Leg("org_x", "deposit", 1, "EUR", {"k": "x" * 9000})], "8192 bytes"),
        ([Leg("org_x", "deposit", 1, "EUR", {"k": {1: "x"}})], "keys must be strings"),  # type: ignore[dict-item]
    ],
)
async def test_the_service_refuses_malformed_legs(
    session: AsyncSession, legs: list[Leg], message: str
) -> None:
    with pytest.raises(LedgerError, match=message):
        await ledger.append_journal(session, legs=legs)


# --- append-only, privileges --------------------------------------------------------------


MUTATIONS = [
    "UPDATE ledger_entries SET amount = amount + 1",
    "DELETE FROM ledger_entries",
    # CASCADE: donations reference their entries, so a plain TRUNCATE is refused even
    # earlier, by the foreign keys; with CASCADE it reaches the ledger's own trigger.
    "TRUNCATE ledger_entries CASCADE",
    "TRUNCATE ledger_chains CASCADE",
    "UPDATE ledger_chains SET kind = 'platform'",
    "DELETE FROM ledger_chains WHERE id = 'plat_fees'",
]


@pytest.mark.parametrize("statement", MUTATIONS)
async def test_the_service_role_cannot_change_the_ledger(
    database: Database, test_database: IsolatedDatabase, statement: str
) -> None:
    await append(database, await make_chain(database), 10)
    with connect(test_database.urls.app) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement)


@pytest.mark.parametrize("role", ["owner", "superuser in replica mode"])
@pytest.mark.parametrize("statement", MUTATIONS)
async def test_even_the_owner_cannot_change_the_ledger_with_sql(
    database: Database, test_database: IsolatedDatabase, statement: str, role: str
) -> None:
    chain = await make_chain(database)
    await append(database, chain, 10)
    url = test_database.urls.migration if role == "owner" else test_database.superuser_url
    with connect(url) as connection:
        if role != "owner":
            connection.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="ledger"):
            connection.execute(statement)
    async with database.session() as session:
        assert (await ledger.verify_chain(session, chain_id=chain)).head_seq == 1


@pytest.mark.parametrize(
    "column", ["seq", "prev_entry_hash", "balance_after", "created_at", "entry_hash", "internal"]
)
async def test_nobody_supplies_the_fields_the_database_assigns(
    database: Database, test_database: IsolatedDatabase, column: str
) -> None:
    chain = await make_chain(database)
    first = await append(database, chain, 10)
    values = {
        "seq": 2,
        "prev_entry_hash": first.entry_hash,
        "balance_after": 20,
        "created_at": "2026-01-01T00:00:00Z",
        "entry_hash": first.entry_hash,
        "internal": True,
    }
    statement = (
        f"INSERT INTO ledger_entries (id, chain_id, type, amount, currency, journal_id, {column}) "
        "VALUES (%s, %s, 'deposit', 10, 'EUR', %s, %s)"
    )
    arguments = (generate_id("led"), chain, generate_id("jrn"), values[column])
    with connect(test_database.urls.app) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(statement, arguments)
    with connect(test_database.urls.migration) as connection:
        with pytest.raises(psycopg.errors.CheckViolation, match="assigned by the database"):
            connection.execute(statement, arguments)


async def test_the_services_entry_types_are_the_databases(
    test_database: IsolatedDatabase,
) -> None:
    with connect(test_database.urls.app) as connection:
        flows = dict(
            connection.execute(
                "SELECT t, ledger_entry_flow(t) FROM unnest(%s::text[]) AS t",
                (sorted(ledger.ENTRY_TYPES | {"not_a_type"}),),
            ).fetchall()
        )
    assert flows.pop("not_a_type") is None
    assert {t for t, flow in flows.items() if flow == "internal"} == ledger.INTERNAL_TYPES
    assert {t for t, flow in flows.items() if flow == "external"} == (
        ledger.ENTRY_TYPES - ledger.INTERNAL_TYPES
    )


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("id", "entry_1", "ledger_entries_ids"),
        ("id", "led_" + "a" * 80, "ledger_entries_ids"),
        ("journal_id", "jrn_with space", "ledger_entries_ids"),
        ("type", "gift", "ledger_entries_type"),
        ("currency", "eur", "ledger_entries_currency"),
        ("currency", "EURO", "ledger_entries_currency"),
        ("metadata", "[1, 2]", "ledger_entries_metadata"),
        ("metadata", '{"k": "' + "x" * 8200 + '"}', "ledger_entries_metadata"),
        ("amount", 0, "ledger_entries_amount_check"),
    ],
)
async def test_the_database_refuses_malformed_entries_from_anyone(
    database: Database, test_database: IsolatedDatabase, column: str, value: object, constraint: str
) -> None:
    chain = await make_chain(database)
    row: dict[str, object] = {
        "id": generate_id("led"),
        "chain_id": chain,
        "type": "deposit",
        "amount": 10,
        "currency": "EUR",
        "metadata": "{}",
        "journal_id": generate_id("jrn"),
    } | {column: value}
    statement = (
        "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, metadata, journal_id) "
        "VALUES (%(id)s, %(chain_id)s, %(type)s, %(amount)s, %(currency)s, %(metadata)s, "
        "%(journal_id)s)"
    )
    with connect(test_database.urls.migration) as connection:
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            connection.execute(statement, row)
    assert refused.value.diag.constraint_name == constraint


async def test_the_database_refuses_metadata_that_is_not_json(
    database: Database, test_database: IsolatedDatabase
) -> None:
    chain = await make_chain(database)
    with connect(test_database.urls.migration) as connection:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="json"):
            connection.execute(
                "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, metadata, "
                "journal_id) VALUES (%s, %s, 'deposit', 1, 'EUR', '{not json', %s)",
                (generate_id("led"), chain, generate_id("jrn")),
            )


async def test_the_database_refuses_malformed_chains(test_database: IsolatedDatabase) -> None:
    with connect(test_database.urls.migration) as connection:
        for chain_id, kind, constraint in [
            ("org-bad", "organisation", "ledger_chains_id"),
            ("org_x", "charity", "ledger_chains_kind_prefix"),
            ("wal_x", "organisation", "ledger_chains_kind_prefix"),
        ]:
            with pytest.raises(psycopg.errors.CheckViolation) as refused:
                connection.execute(
                    "INSERT INTO ledger_chains (id, kind) VALUES (%s, %s)", (chain_id, kind)
                )
            assert refused.value.diag.constraint_name == constraint


async def test_the_service_sets_only_a_new_chains_id_and_kind(
    test_database: IsolatedDatabase,
) -> None:
    with connect(test_database.urls.app) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(
                "INSERT INTO ledger_chains (id, kind, created_at) "
                "VALUES ('org_Backdated', 'organisation', '2001-01-01')"
            )
        with pytest.raises(psycopg.errors.CheckViolation, match="prefix"):
            connection.execute("INSERT INTO ledger_chains (id, kind) VALUES ('org_Wal', 'wallet')")


async def test_on_conflict_do_nothing_leaves_the_chain_as_it_was(
    database: Database, test_database: IsolatedDatabase
) -> None:
    wallet = await make_chain(database, kind="wallet")
    deposit = await append(database, wallet, 100)
    # BEFORE triggers run before the conflict is found; nothing they do may survive the skip.
    with connect(test_database.urls.app) as connection:
        skipped = connection.execute(
            "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, journal_id) "
            "VALUES (%s, %s, 'deposit', 1000000000, 'EUR', %s) ON CONFLICT DO NOTHING",
            (deposit.id, wallet, generate_id("jrn")),
        )
        assert skipped.rowcount == 0
    withdrawal = await append(database, wallet, -100, entry_type="withdrawal")
    assert (withdrawal.seq, withdrawal.prev_entry_hash) == (2, deposit.entry_hash)
    with pytest.raises(InsufficientFunds):
        await append(database, wallet, -1, entry_type="withdrawal")
    async with database.session() as session:
        assert await ledger.get_balances(session, chain_id=wallet) == {"EUR": 0}
        assert (await ledger.verify_chain(session, chain_id=wallet)).ok


async def test_temporary_tables_cannot_shadow_the_ledger(
    database: Database, test_database: IsolatedDatabase
) -> None:
    wallet = await make_chain(database, kind="wallet")
    with connect(test_database.urls.app) as connection:
        # A fake history in which the wallet is rich, and no journal legs to balance against.
        connection.execute("CREATE TEMP TABLE ledger_entries (LIKE public.ledger_entries)")
        connection.execute(
            "INSERT INTO pg_temp.ledger_entries VALUES (%s, %s, 1, 'deposit', 10000, 'EUR', "
            "10000, '{}', %s, false, now(), NULL, %s)",
            (generate_id("led"), wallet, generate_id("jrn"), "sha256:" + "0" * 64),
        )
        with pytest.raises(psycopg.errors.CheckViolation, match="insufficient funds"):
            connection.execute(
                "INSERT INTO public.ledger_entries "
                "(id, chain_id, type, amount, currency, journal_id) "
                "VALUES (%s, %s, 'withdrawal', -777, 'EUR', %s)",
                (generate_id("led"), wallet, generate_id("jrn")),
            )
        with pytest.raises(psycopg.errors.CheckViolation, match="does not balance"):
            connection.execute(
                "INSERT INTO public.ledger_entries "
                "(id, chain_id, type, amount, currency, journal_id) "
                "VALUES (%s, %s, 'welcome_bonus', 500, 'EUR', %s)",
                (generate_id("led"), wallet, generate_id("jrn")),
            )
    first = await append(database, wallet, 50)
    assert (first.seq, first.balance_after) == (1, 50)


async def test_a_callers_search_path_cannot_change_what_the_trigger_computes(
    database: Database, test_database: IsolatedDatabase
) -> None:
    # The trigger runs with its caller's rights and search_path. Listing pg_catalog last would
    # let a function or operator in public replace a built-in one, but the service's role may
    # create none there (migration 0006 refuses a database where it could).
    chain = await make_chain(database)
    with connect(test_database.urls.app) as connection:
        connection.execute("SET search_path = pg_temp, public, pg_catalog")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute(
                "CREATE FUNCTION public.sha256(bytea) RETURNS bytea LANGUAGE sql AS 'SELECT $1'"
            )
        append_raw(
            connection,
            [generate_id("led")],
            [chain],
            ["donation_received"],
            [700],
            ["EUR"],
            ['{"donor":"Zoë 🎉"}'],
            generate_id("jrn"),
        )
    async with database.session() as session:
        assert (await ledger.verify_chain(session, chain_id=chain)).ok


# --- backstops behind the lock, with the assigning trigger removed ------------------------


async def test_unique_constraints_stop_forks_even_without_the_trigger(
    database: Database, test_database: IsolatedDatabase
) -> None:
    chain = await make_chain(database)
    first = await append(database, chain, 10)
    second = await append(database, chain, 10)
    columns = (
        "id, chain_id, seq, type, amount, currency, balance_after, metadata, journal_id, "
        "internal, created_at, prev_entry_hash, entry_hash"
    )
    forged = (
        "INSERT INTO ledger_entries (" + columns + ") VALUES (%s, %s, %s, 'deposit', 10, "
        "'EUR', 20, '{}', %s, false, now(), %s, %s)"
    )
    fake_hash = "sha256:" + "ab" * 32
    with connect(test_database.superuser_url) as connection:
        connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_assign")
        attempts = [
            (2, first.entry_hash, psycopg.errors.UniqueViolation, "chain_seq_key"),
            (3, first.entry_hash, psycopg.errors.UniqueViolation, "chain_prev_hash_key"),
            (1, second.entry_hash, psycopg.errors.CheckViolation, "genesis_link"),
        ]
        for seq, prev_hash, error, constraint in attempts:
            with pytest.raises(error, match=constraint):
                connection.execute(
                    forged,
                    (generate_id("led"), chain, seq, generate_id("jrn"), prev_hash, fake_hash),
                )


# --- tamper evidence -----------------------------------------------------------------------


async def fill_chain(test_database: IsolatedDatabase, chain: str, count: int) -> None:
    with connect(test_database.urls.app) as connection:
        for start in range(0, count, 100):
            size = min(100, count - start)
            append_raw(
                connection,
                [generate_id("led") for _ in range(size)],
                [chain] * size,
                ["donation_received"] * size,
                [1000] * size,
                ["EUR"] * size,
                ['{"donor":"Anonymous"}'] * size,
                generate_id("jrn"),
            )


@pytest.mark.parametrize(
    ("seq", "tampering"),
    [
        (500, "amount = 1001"),
        (700, """metadata = '{"donor":"Anonymouz"}'"""),
        (999, "created_at = created_at + interval '1 microsecond'"),
        (2, "balance_after = 2001"),
    ],
)
async def test_verification_names_the_one_entry_a_superuser_altered(
    database: Database, test_database: IsolatedDatabase, seq: int, tampering: str
) -> None:
    chain = await make_chain(database)
    await fill_chain(test_database, chain, 1000)
    async with database.session() as session:
        assert (await ledger.verify_chain(session, chain_id=chain, batch_size=300)).ok
    with connect(test_database.superuser_url) as connection:
        connection.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ALL")
        connection.execute(
            f"UPDATE ledger_entries SET {tampering} WHERE chain_id = %s AND seq = %s",
            (chain, seq),
        )
    async with database.session() as session:
        result = await ledger.verify_chain(session, chain_id=chain, batch_size=300)
    assert not result.ok
    assert result.broken_seq == seq, result.verdict()


async def test_verifying_an_unknown_chain_is_not_found(session: AsyncSession) -> None:
    with pytest.raises(NotFound):
        await ledger.verify_chain(session, chain_id="org_Nobody")
