"""The withdrawal service and the payout providers: fees, the order of debit and payout,
providers that refuse, fail or settle at once, transitions under the row lock, and the
database refusing what the service would never do."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit import idempotency
from amply.kit.db import Database
from amply.kit.errors import Conflict, InsufficientFunds, InvalidInput, NotFound
from amply.kit.idempotency import IdempotentRequest
from amply.kit.ids import derived_id
from amply.kit.money import fee_for
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.ledger.service import PLATFORM_FEES_CHAIN
from amply.models import Transaction, Wallet
from amply.payments.payouts import (
    CreatedPayout,
    PayoutProvider,
    PayoutStatus,
    PayoutsUnavailable,
    Provider,
    SandboxPayouts,
    Speed,
    UnavailablePayouts,
    payouts_for,
    sandbox_payout_id,
)
from amply.wallets import withdrawals
from amply.wallets.withdrawals import WithdrawalNotPending
from tests.factories import fund_wallet, sign_up, wallet_id_of


@pytest.fixture
def settings() -> Settings:
    return Settings(
        environment="test",
        demo_mode=False,
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
    )


async def new_wallet(client: httpx.AsyncClient, database: Database, amount: int) -> str:
    account = await sign_up(client)
    wallet_id = await wallet_id_of(database, account.user_id)
    if amount:
        await fund_wallet(database, wallet_id, amount)
    return wallet_id


async def balance(database: Database, chain_id: str) -> int:
    async with database.session() as session:
        return (await ledger.get_balances(session, chain_id=chain_id)).get("USD", 0)


async def request(
    database: Database,
    wallet_id: str,
    settings: Settings,
    *,
    amount: int,
    speed: Speed = "standard",
    provider: PayoutProvider | None = None,
    idempotent: IdempotentRequest | None = None,
) -> Transaction:
    async with database.session() as session:
        wallet = await session.get(Wallet, wallet_id)
        assert wallet is not None
        withdrawal = await withdrawals.request_withdrawal(
            session,
            wallet=wallet,
            amount=amount,
            speed=speed,
            bank_name="Bank",
            settings=settings,
            provider=provider or SandboxPayouts(),
            idempotency=idempotent,
        )
        await session.commit()
        return withdrawal


# --- Fees -----------------------------------------------------------------------------------

FEE_CASES = [
    # (amount, basis points, fee): half up to the minor unit, floor((amount * bps + 5000) / 10^4)
    (1, 150, 0),  # 0.015
    (33, 150, 0),  # 0.495: below the half
    (34, 150, 1),  # 0.51
    (66, 150, 1),  # 0.99
    (67, 150, 1),  # 1.005
    (100, 150, 2),  # 1.5: the half rounds up
    (1_000, 150, 15),
    (1_033, 150, 15),  # 15.495
    (1_034, 150, 16),  # 15.51
    (99_999, 150, 1_500),  # 1499.985
    (10**15, 150, 15 * 10**12),
    (1_000, 0, 0),  # a free instant withdrawal if so configured
    (1_000, 10_000, 1_000),  # 100%
    (50, 100, 1),  # 0.5 rounds up
    (49, 100, 0),  # 0.49 rounds down
]


@pytest.mark.parametrize(("amount", "basis_points", "fee"), FEE_CASES)
def test_instant_fees_round_half_up_to_the_minor_unit(
    amount: int, basis_points: int, fee: int
) -> None:
    settings = Settings(instant_withdrawal_fee_basis_points=basis_points)
    assert withdrawals.fee_of(amount, speed="instant", settings=settings) == fee
    assert fee_for(amount, basis_points=basis_points) == fee
    assert withdrawals.fee_of(amount, speed="standard", settings=settings) == 0


@pytest.mark.parametrize(
    ("amount", "speed", "param"),
    [(0, "standard", "amount"), (-5, "instant", "amount"), (10**15 + 1, "instant", "amount"),
     (100, "express", "speed")],
)  # fmt: skip
def test_a_fee_of_bad_input_is_a_clear_error(amount: int, speed: str, param: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        withdrawals.fee_of(amount, speed=speed, settings=Settings())
    assert caught.value.param == param


# --- Providers ------------------------------------------------------------------------------


async def test_the_sandbox_names_one_payout_per_key() -> None:
    sandbox = SandboxPayouts()
    sandbox.ensure_available()
    first = await sandbox.create_payout(
        amount=1, currency="USD", speed="standard", destination="Bank", idempotency_key="k1"
    )
    again = await sandbox.create_payout(
        amount=1, currency="USD", speed="standard", destination="Bank", idempotency_key="k1"
    )
    other = await sandbox.create_payout(
        amount=1, currency="USD", speed="standard", destination="Bank", idempotency_key="k2"
    )
    assert first == again == CreatedPayout(payout_id=sandbox_payout_id("k1"), status="pending")
    assert first.payout_id.startswith("po_sandbox_")
    assert len(first.payout_id) == len("po_sandbox_") + 24
    assert other.payout_id != first.payout_id


async def test_with_stripe_keys_the_provider_refuses_honestly() -> None:
    assert isinstance(payouts_for(Settings()), SandboxPayouts)
    provider = payouts_for(Settings(stripe_secret_key=SecretStr("sk_test_x")))
    assert isinstance(provider, UnavailablePayouts)
    assert provider.provider == "stripe"
    with pytest.raises(PayoutsUnavailable) as caught:
        provider.ensure_available()
    assert (caught.value.status_code, caught.value.code) == (503, "payouts_unavailable")
    with pytest.raises(PayoutsUnavailable):
        await provider.create_payout(
            amount=1, currency="USD", speed="instant", destination="Bank", idempotency_key="k"
        )


@dataclass
class Recording:
    """A provider that records what it was asked and what the ledger held at that moment."""

    database_session: AsyncSession | None = None
    status: PayoutStatus = "pending"
    fail_with: Exception | None = None
    provider: Provider = "sandbox"
    calls: list[dict[str, object]] = field(default_factory=list)
    journal_seen: list[int] = field(default_factory=list)

    def ensure_available(self) -> None:
        return None

    async def create_payout(
        self, *, amount: int, currency: str, speed: Speed, destination: str, idempotency_key: str
    ) -> CreatedPayout:
        self.calls.append(
            {
                "amount": amount,
                "currency": currency,
                "speed": speed,
                "destination": destination,
                "idempotency_key": idempotency_key,
            }
        )
        session = self.database_session
        if session is not None:
            transaction_id = idempotency_key.removeprefix("withdrawal:")
            count = await session.scalar(
                text("SELECT count(*) FROM ledger_entries WHERE metadata LIKE :pattern"),
                {"pattern": f'%"{transaction_id}"%'},
            )
            self.journal_seen.append(int(count))
        if self.fail_with is not None:
            raise self.fail_with
        return CreatedPayout(
            payout_id=f"po_test_{len(self.calls)}_{idempotency_key[-8:]}",
            status=self.status,
            failure_code="account_closed" if self.status == "failed" else None,
        )


async def test_the_payout_is_created_after_the_debit_under_a_key_from_the_withdrawal(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    provider = Recording()
    async with database.session() as session:
        provider.database_session = session
        wallet = await session.get(Wallet, wallet_id)
        assert wallet is not None
        withdrawal = await withdrawals.request_withdrawal(
            session,
            wallet=wallet,
            amount=1_000,
            speed="instant",
            bank_name=" Bank of Tests ",
            settings=settings,
            provider=provider,
        )
        await session.commit()

    # The three legs of the debit were in the ledger when the provider was called.
    assert provider.journal_seen == [3]
    assert provider.calls == [
        {
            "amount": 1_000,
            "currency": "USD",
            "speed": "instant",
            "destination": "Bank of Tests",
            "idempotency_key": f"withdrawal:{withdrawal.id}",
        }
    ]
    assert withdrawal.payout_id == f"po_test_1_{withdrawal.id[-8:]}"
    assert withdrawal.bank_name == "Bank of Tests"
    assert withdrawal.description == "Instant withdrawal to Bank of Tests"
    assert await balance(database, wallet_id) == 3_985


async def test_a_provider_that_is_unavailable_refuses_before_the_ledger_is_touched(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    async with database.session() as session:
        wallet = await session.get(Wallet, wallet_id)
        assert wallet is not None
        with pytest.raises(PayoutsUnavailable):
            await withdrawals.request_withdrawal(
                session,
                wallet=wallet,
                amount=1_000,
                speed="standard",
                bank_name="Bank",
                settings=settings,
                provider=UnavailablePayouts(),
            )
        # Nothing was written, not even in this (uncommitted) transaction.
        assert await session.scalar(text("SELECT count(*) FROM ledger_entries")) == 1
        assert ledger._locked_chains(session) == set()
    assert await balance(database, wallet_id) == 5_000


async def test_a_provider_error_after_the_debit_rolls_everything_back(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    provider = Recording(fail_with=PayoutsUnavailable("the provider is down"))
    with pytest.raises(PayoutsUnavailable):
        await request(
            database,
            wallet_id,
            settings,
            amount=1_000,
            speed="instant",
            provider=provider,
        )
    assert len(provider.calls) == 1
    assert await balance(database, wallet_id) == 5_000
    assert await balance(database, PLATFORM_FEES_CHAIN) == 0
    async with database.session() as session:
        kinds = await session.scalars(select(Transaction.kind))
        assert list(kinds) == ["deposit"]


async def test_a_payout_reported_paid_at_once_completes_the_withdrawal(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    provider = Recording(status="paid")
    withdrawal = await request(database, wallet_id, settings, amount=1_000, provider=provider)
    assert withdrawal.status == "paid"
    assert withdrawal.completed_at is not None
    assert withdrawal.reversal_journal_id is None
    assert await balance(database, wallet_id) == 4_000


async def test_a_payout_reported_failed_at_once_returns_the_money_in_the_same_transaction(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    provider = Recording(status="failed")
    withdrawal = await request(
        database,
        wallet_id,
        settings,
        amount=1_000,
        speed="instant",
        provider=provider,
    )
    assert withdrawal.status == "failed"
    assert withdrawal.failure_code == "account_closed"
    assert withdrawal.reversal_journal_id is not None
    assert withdrawal.completed_at is None
    assert await balance(database, wallet_id) == 5_000
    assert await balance(database, PLATFORM_FEES_CHAIN) == 0
    async with database.session() as session:
        for chain in (wallet_id, PLATFORM_FEES_CHAIN):
            assert (await ledger.verify_chain(session, chain_id=chain)).ok


# --- Idempotency ----------------------------------------------------------------------------


def _idempotent(key: str) -> IdempotentRequest:
    return IdempotentRequest(
        scope="user:usr_test",
        key=key,
        fingerprint=idempotency.fingerprint(method="POST", path="/v1/withdrawals", body={}),
    )


async def test_the_withdrawal_id_comes_from_the_idempotency_key(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    idempotent = _idempotent("key-0123456789abcdef")
    provider = Recording()
    withdrawal = await request(
        database,
        wallet_id,
        settings,
        amount=100,
        provider=provider,
        idempotent=idempotent,
    )
    assert withdrawal.id == derived_id("txn", seed=idempotent.seed)
    assert provider.calls[0]["idempotency_key"] == f"withdrawal:{withdrawal.id}"

    # The key came back after its record expired: refused, not a second withdrawal.
    with pytest.raises(Conflict) as caught:
        await request(database, wallet_id, settings, amount=100, idempotent=idempotent)
    assert caught.value.code == "idempotency_key_reused"
    assert await balance(database, wallet_id) == 4_900


# --- Refusals -------------------------------------------------------------------------------


async def test_refusals_of_the_request_move_nothing(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 1_000)
    async with database.session() as session:
        wallet = await session.get(Wallet, wallet_id)
        assert wallet is not None
        common = {"wallet": wallet, "settings": settings, "provider": SandboxPayouts()}
        with pytest.raises(InsufficientFunds) as short:
            await withdrawals.request_withdrawal(
                session,
                amount=1_001,
                speed="standard",
                bank_name="B",
                **common,  # type: ignore[arg-type]
            )
        assert "1001" in short.value.message
        cases: list[tuple[dict[str, object], str, str]] = [
            ({"currency": "EUR"}, "currency_mismatch", "currency"),
            ({"currency": "ZZZ"}, "parameter_invalid", "currency"),
            ({"bank_name": "  "}, "parameter_invalid", "bank_name"),
            ({"bank_name": "x" * 101}, "parameter_invalid", "bank_name"),
            ({"speed": "express"}, "parameter_invalid", "speed"),
            ({"amount": 0}, "parameter_invalid", "amount"),
        ]
        for change, code, param in cases:
            arguments: dict[str, object] = {
                "amount": 100, "speed": "standard", "bank_name": "B", **common, **change
            }  # fmt: skip
            with pytest.raises(InvalidInput) as caught:
                await withdrawals.request_withdrawal(session, **arguments)  # type: ignore[arg-type]
            assert (caught.value.code, caught.value.param) == (code, param)
    assert await balance(database, wallet_id) == 1_000


# --- Transitions ----------------------------------------------------------------------------


async def test_settling_follows_only_the_arrows(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    paid = await request(database, wallet_id, settings, amount=1_000, speed="instant")
    failed = await request(database, wallet_id, settings, amount=1_000, speed="instant")
    async with database.session() as session:
        done = await withdrawals.mark_paid(session, withdrawal_id=paid.id, wallet_id=wallet_id)
        assert done.status == "paid"
        assert done.completed_at is not None
        returned = await withdrawals.mark_failed(
            session, withdrawal_id=failed.id, failure_code="no_account", failure_message="x" * 900
        )
        assert returned.status == "failed"
        assert returned.failure_message == "x" * 500
        await session.commit()
    assert await balance(database, wallet_id) == 5_000 - 1_015

    for withdrawal in (paid, failed):
        async with database.session() as session:
            with pytest.raises(WithdrawalNotPending):
                await withdrawals.mark_paid(session, withdrawal_id=withdrawal.id)
        async with database.session() as session:
            with pytest.raises(WithdrawalNotPending):
                await withdrawals.mark_failed(
                    session, withdrawal_id=withdrawal.id, failure_code="could_not_process"
                )
    async with database.session() as session:
        with pytest.raises(NotFound):
            await withdrawals.mark_paid(session, withdrawal_id=paid.id, wallet_id="wal_other")
        with pytest.raises(NotFound):
            await withdrawals.get_withdrawal(session, withdrawal_id="txn_missing")
        pending = await request(database, wallet_id, settings, amount=1)
        with pytest.raises(Conflict) as caught:
            await withdrawals.mark_paid(session, withdrawal_id=pending.id, provider="stripe")
        assert caught.value.code == "withdrawal_provider_mismatch"
    assert await balance(database, wallet_id) == 5_000 - 1_015 - 1


async def test_the_database_refuses_an_illegal_transition_too(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    withdrawal = await request(database, wallet_id, settings, amount=1_000)
    async with database.session() as session:
        await withdrawals.mark_paid(session, withdrawal_id=withdrawal.id)
        await session.commit()
    for change in ("status = 'failed'", "status = 'pending', completed_at = NULL", "amount = 1"):
        async with database.session() as session:
            with pytest.raises(DBAPIError, match="transactions"):
                await session.execute(
                    text(f"UPDATE transactions SET {change} WHERE id = :id"),
                    {"id": withdrawal.id},
                )


async def test_a_failed_withdrawal_cannot_claim_a_reversal_of_other_money(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    # What mark_failed writes is what the database checks: the reversal returns amount + fee.
    wallet_id = await new_wallet(client, database, 5_000)
    withdrawal = await request(database, wallet_id, settings, amount=1_000, speed="instant")
    async with database.session() as session:
        await ledger.lock_chains(session, chain_ids=[wallet_id])
        [entry] = await ledger.append_journal(
            session,
            legs=[ledger.Leg(wallet_id, "withdrawal_reversed", 1_000, "USD")],  # not the fee
        )
        await session.execute(
            text(
                "UPDATE transactions SET status = 'failed', reversal_journal_id = :journal "
                "WHERE id = :id"
            ),
            {"journal": entry.journal_id, "id": withdrawal.id},
        )
        # (The reversal leg's own record check, 0008, refuses it first.)
        with pytest.raises(
            DBAPIError,
            match=r"reversal .* returned 1000|no record names the withdrawal_reversed entry",
        ):
            await session.commit()


async def test_concurrent_withdrawals_through_separate_sessions_never_overdraw(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 3_000)

    async def attempt() -> str:
        try:
            await request(database, wallet_id, settings, amount=299, speed="instant")
        except InsufficientFunds:
            return "refused"
        return "ok"

    outcomes = await asyncio.gather(*(attempt() for _ in range(14)))

    # 299 + a fee of 4 (4.485) = 303: nine fit in 3,000, a tenth does not.
    assert sorted(outcomes) == ["ok"] * 9 + ["refused"] * 5
    assert await balance(database, wallet_id) == 3_000 - 9 * 303
    assert await balance(database, PLATFORM_FEES_CHAIN) == 9 * 4
    async with database.session() as session:
        for chain in (wallet_id, PLATFORM_FEES_CHAIN):
            assert (await ledger.verify_chain(session, chain_id=chain)).ok
        total = await session.scalar(
            text("SELECT sum(amount) FROM ledger_entries WHERE chain_id = :chain"),
            {"chain": wallet_id},
        )
        assert total == 3_000 - 9 * 303


async def test_concurrent_failures_of_one_withdrawal_return_the_money_once(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    wallet_id = await new_wallet(client, database, 5_000)
    withdrawal = await request(database, wallet_id, settings, amount=1_000, speed="instant")

    async def fail() -> str:
        async with database.session() as session:
            try:
                await withdrawals.mark_failed(
                    session, withdrawal_id=withdrawal.id, failure_code="could_not_process"
                )
            except WithdrawalNotPending:
                return "refused"
            await session.commit()
            return "failed"

    outcomes = await asyncio.gather(*(fail() for _ in range(6)))

    assert sorted(outcomes) == ["failed"] + ["refused"] * 5
    assert await balance(database, wallet_id) == 5_000
    assert await balance(database, PLATFORM_FEES_CHAIN) == 0
