"""Typed views of a Transaction row: one per kind, refused for a row of another kind, each
field read from the row (with the enums the database guarantees)."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from amply.kit.db import Database
from amply.models import Transaction
from amply.models.enums import (
    DepositSource,
    DepositStatus,
    Provider,
    RiskRule,
    TransactionKind,
    TransferStatus,
    WithdrawalSpeed,
    WithdrawalStatus,
)
from amply.models.transactions import (
    DepositView,
    DonationView,
    RiskFlagView,
    TransactionView,
    TransferView,
    WelcomeBonusView,
    WithdrawalView,
    WrongKind,
    view_of,
)
from tests.factories import sign_up, wallet_id_of

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
COMPLETED = CREATED + timedelta(minutes=1)
VIEWS: list[type[TransactionView]] = [
    TransferView,
    DepositView,
    WithdrawalView,
    DonationView,
    WelcomeBonusView,
]


def row(kind: TransactionKind, **columns: Any) -> Transaction:
    """A row of ``kind`` as the database would hold it (columns the kind lacks are NULL)."""
    base: dict[str, Any] = {
        "id": f"txn_{kind.value}",
        "kind": kind,
        "wallet_id": "wal_sender",
        "amount": 2_500,
        "fee": 0,
        "currency": "EUR",
        "description": f"a {kind.value}",
        "risk_flags": [],
        "created_at": CREATED,
        "updated_at": CREATED,
    }
    return Transaction(**{**base, **columns})


ROWS: dict[TransactionKind, Transaction] = {
    TransactionKind.TRANSFER: row(
        TransactionKind.TRANSFER,
        status="pending_confirmation",
        counterparty_wallet_id="wal_recipient",
        money_request_id="req_1",
        risk_flags=[{"rule": "new_recipient", "reason": "A first transfer."}],
        hold_expires_at=COMPLETED,
    ),
    TransactionKind.DEPOSIT: row(
        TransactionKind.DEPOSIT,
        status="completed",
        source="card",
        card_id="card_1",
        provider="stripe",
        payment_intent_id="pi_1",
        journal_id="jrn_deposit",
        completed_at=COMPLETED,
    ),
    TransactionKind.WITHDRAWAL: row(
        TransactionKind.WITHDRAWAL,
        status="failed",
        speed="instant",
        fee=38,
        bank_name="Demo Bank",
        provider="sandbox",
        payout_id="po_sandbox_1",
        failure_code="account_closed",
        failure_message="The account is closed.",
        journal_id="jrn_withdrawal",
        reversal_journal_id="jrn_reversal",
    ),
    TransactionKind.DONATION: row(
        TransactionKind.DONATION,
        status="completed",
        organisation_id="org_1",
        fund_id="fund_1",
        public_name="Ada",
        journal_id="jrn_donation",
        completed_at=COMPLETED,
    ),
    TransactionKind.WELCOME_BONUS: row(
        TransactionKind.WELCOME_BONUS,
        status="completed",
        journal_id="jrn_bonus",
        completed_at=COMPLETED,
    ),
}


@pytest.mark.parametrize("view", VIEWS, ids=lambda view: view.__name__)
def test_a_view_of_another_kind_is_refused(view: type[TransactionView]) -> None:
    for kind, other in ROWS.items():
        if kind == view.kind:
            continue
        with pytest.raises(WrongKind, match=f"is a {kind.value}, not a {view.kind.value}"):
            view.of(other)


def test_a_transfer_shows_its_parties_and_hold() -> None:
    transfer = TransferView.of(ROWS[TransactionKind.TRANSFER])
    assert transfer == TransferView(
        id="txn_transfer",
        status=TransferStatus.PENDING_CONFIRMATION,
        sender_wallet_id="wal_sender",
        recipient_wallet_id="wal_recipient",
        money_request_id="req_1",
        amount=2_500,
        currency="EUR",
        description="a transfer",
        risk_flags=(RiskFlagView(rule=RiskRule.NEW_RECIPIENT, reason="A first transfer."),),
        blocked_reason=None,
        hold_expires_at=COMPLETED,
        journal_id=None,
        created_at=CREATED,
        completed_at=None,
    )
    assert type(transfer.status) is TransferStatus
    assert type(transfer.risk_flags[0].rule) is RiskRule


def test_a_deposit_shows_where_its_money_came_from() -> None:
    deposit = DepositView.of(ROWS[TransactionKind.DEPOSIT])
    assert (deposit.status, deposit.source, deposit.provider) == (
        DepositStatus.COMPLETED,
        DepositSource.CARD,
        Provider.STRIPE,
    )
    assert (deposit.card_id, deposit.payment_intent_id, deposit.journal_id) == (
        "card_1",
        "pi_1",
        "jrn_deposit",
    )
    assert (deposit.bank_name, deposit.failure_code, deposit.completed_at) == (
        None,
        None,
        COMPLETED,
    )


def test_a_withdrawal_shows_its_payout_and_reversal() -> None:
    withdrawal = WithdrawalView.of(ROWS[TransactionKind.WITHDRAWAL])
    assert (withdrawal.status, withdrawal.speed, withdrawal.provider) == (
        WithdrawalStatus.FAILED,
        WithdrawalSpeed.INSTANT,
        Provider.SANDBOX,
    )
    assert (withdrawal.fee, withdrawal.bank_name, withdrawal.payout_id) == (
        38,
        "Demo Bank",
        "po_sandbox_1",
    )
    assert (withdrawal.journal_id, withdrawal.reversal_journal_id) == (
        "jrn_withdrawal",
        "jrn_reversal",
    )
    assert (withdrawal.failure_code, withdrawal.failure_message) == (
        "account_closed",
        "The account is closed.",
    )


def test_a_gift_and_a_bonus_are_complete_when_written() -> None:
    gift = DonationView.of(ROWS[TransactionKind.DONATION])
    assert (gift.organisation_id, gift.fund_id, gift.public_name) == ("org_1", "fund_1", "Ada")
    assert (gift.journal_id, gift.completed_at) == ("jrn_donation", COMPLETED)
    bonus = WelcomeBonusView.of(ROWS[TransactionKind.WELCOME_BONUS])
    assert (bonus.wallet_id, bonus.amount, bonus.journal_id) == ("wal_sender", 2_500, "jrn_bonus")


@pytest.mark.parametrize("kind", list(TransactionKind), ids=str)
def test_every_field_of_a_view_comes_from_its_row(kind: TransactionKind) -> None:
    source = ROWS[kind]
    view = view_of(source)
    assert view.kind == kind
    renamed = {"sender_wallet_id": "wallet_id", "recipient_wallet_id": "counterparty_wallet_id"}
    for field in fields(view):
        value = getattr(view, field.name)
        if field.name == "risk_flags":
            value = [{"rule": flag.rule, "reason": flag.reason} for flag in value]
        assert value == getattr(source, renamed.get(field.name, field.name)), field.name


def test_a_row_missing_what_its_kind_guarantees_is_refused() -> None:
    broken = row(TransactionKind.TRANSFER, status="completed")  # no recipient
    with pytest.raises(ValueError, match="has no recipient"):
        TransferView.of(broken)


async def test_views_of_stored_rows_carry_the_enums(
    client: httpx.AsyncClient, database: Database
) -> None:
    alice, bob = await sign_up(client), await sign_up(client)
    response = await client.post(
        "/v1/transfers",
        json={"recipient": bob.username, "amount": 1_500, "description": "Lunch"},
        headers={**alice.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    wallet_id = await wallet_id_of(database, alice.user_id)
    async with database.session() as session:
        rows = {
            item.kind: item
            for item in await session.scalars(
                select(Transaction).where(Transaction.wallet_id == wallet_id)
            )
        }
    assert rows.keys() == {TransactionKind.TRANSFER, TransactionKind.WELCOME_BONUS}
    transfer = TransferView.of(rows[TransactionKind.TRANSFER])
    assert transfer.id == response.json()["id"]
    assert transfer.status is TransferStatus.PENDING_CONFIRMATION
    assert transfer.recipient_wallet_id == await wallet_id_of(database, bob.user_id)
    assert [flag.rule for flag in transfer.risk_flags] == [RiskRule.NEW_RECIPIENT]
    bonus = WelcomeBonusView.of(rows[TransactionKind.WELCOME_BONUS])
    assert bonus.journal_id
    assert bonus.completed_at
    with pytest.raises(WrongKind):
        WithdrawalView.of(rows[TransactionKind.TRANSFER])
