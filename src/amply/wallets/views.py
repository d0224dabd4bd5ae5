"""Response shapes shared by the wallet routes: transfers, requests and history items, with
the usernames and ledger entries they show, fetched in one query each per page."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from amply.ledger import service as ledger
from amply.models import MoneyRequest, Transaction
from amply.models.enums import TransactionKind, TransactionStatus
from amply.models.transactions import DepositView, TransferView
from amply.wallets import deposits, money_requests, transfers
from amply.wallets import service as wallets
from amply.wallets.deposits_schemas import DepositEntryOut, DepositOut
from amply.wallets.schemas import (
    LedgerLegOut,
    MoneyRequestOut,
    PartyOut,
    RiskFlagOut,
    TransactionOut,
    TransferOut,
)

_HISTORY_TYPES = {
    TransactionKind.DEPOSIT: "deposit",
    TransactionKind.WITHDRAWAL: "withdrawal",
    TransactionKind.DONATION: "donation",
    TransactionKind.WELCOME_BONUS: "bonus",
}


class Views:
    """Usernames and journal entries for a page of transactions, as one viewer sees them."""

    def __init__(
        self,
        *,
        viewer_wallet_id: str,
        names: dict[str, str],
        journals: dict[str, list[ledger.Entry]],
    ) -> None:
        self.viewer_wallet_id = viewer_wallet_id
        self.names = names
        self.journals = journals
        self.now = datetime.now(UTC)

    @classmethod
    async def load(
        cls,
        session: AsyncSession,
        *,
        viewer_wallet_id: str,
        items: Sequence[Transaction],
        extra_wallet_ids: Sequence[str] = (),
    ) -> Views:
        wallet_ids = {viewer_wallet_id, *extra_wallet_ids}
        journal_ids: list[str] = []
        for item in items:
            wallet_ids.add(item.wallet_id)
            if item.counterparty_wallet_id:
                wallet_ids.add(item.counterparty_wallet_id)
            journal_ids += [j for j in (item.journal_id, item.reversal_journal_id) if j]
        return cls(
            viewer_wallet_id=viewer_wallet_id,
            names=await wallets.usernames(session, wallet_ids=wallet_ids),
            journals=await ledger.get_journals(session, journal_ids=journal_ids),
        )

    def party(self, wallet_id: str) -> PartyOut:
        return PartyOut(wallet_id=wallet_id, username=self.names.get(wallet_id, ""))

    def legs(self, item: Transaction) -> list[LedgerLegOut]:
        legs: list[LedgerLegOut] = []
        for journal_id in (item.journal_id, item.reversal_journal_id):
            for entry in self.journals.get(journal_id or "", []):
                own = entry.chain_id == self.viewer_wallet_id
                legs.append(
                    LedgerLegOut(
                        chain_id=entry.chain_id,
                        seq=entry.seq,
                        entry_id=entry.id,
                        type=entry.type,
                        amount=entry.amount,
                        currency=entry.currency,
                        # Another wallet's balance is its owner's business.
                        balance_after=entry.balance_after if own else None,
                        entry_hash=entry.entry_hash,
                    )
                )
        return legs

    def history_item(self, item: Transaction) -> TransactionOut:
        """A transaction as the viewer's history shows it."""
        counterparty = None
        status = item.status
        if item.kind == TransactionKind.TRANSFER:
            transfer = TransferView.of(item)
            outgoing = transfer.sender_wallet_id == self.viewer_wallet_id
            kind = "sent" if outgoing else "received"
            other = transfer.recipient_wallet_id if outgoing else transfer.sender_wallet_id
            counterparty = self.party(other)
            status = TransactionStatus(transfers.effective_status(transfer, at=self.now))
        else:
            kind = _HISTORY_TYPES[item.kind]
        return TransactionOut(
            id=item.id,
            type=kind,
            status=status,
            direction="in" if kind in ("received", "deposit", "bonus") else "out",
            amount=item.amount,
            fee=item.fee,
            currency=item.currency,
            description=item.description,
            counterparty=counterparty,
            organisation_id=item.organisation_id,
            money_request_id=item.money_request_id,
            created_at=item.created_at,
            completed_at=item.completed_at,
            ledger_entries=self.legs(item),
        )

    def transfer(self, item: Transaction) -> TransferOut:
        transfer = TransferView.of(item)
        return TransferOut(
            id=transfer.id,
            status=transfers.effective_status(transfer, at=self.now),
            sender=self.party(transfer.sender_wallet_id),
            recipient=self.party(transfer.recipient_wallet_id),
            amount=transfer.amount,
            currency=transfer.currency,
            description=transfer.description,
            risk_flags=[
                RiskFlagOut(rule=flag.rule, reason=flag.reason) for flag in transfer.risk_flags
            ],
            blocked_reason=transfer.blocked_reason,
            hold_expires_at=transfer.hold_expires_at,
            money_request_id=transfer.money_request_id,
            created_at=transfer.created_at,
            completed_at=transfer.completed_at,
            ledger_entries=self.legs(item),
        )


async def transfer_view(
    session: AsyncSession, *, viewer_wallet_id: str, item: Transaction
) -> TransferOut:
    views = await Views.load(session, viewer_wallet_id=viewer_wallet_id, items=[item])
    return views.transfer(item)


async def request_views(
    session: AsyncSession, *, viewer_wallet_id: str, items: Sequence[MoneyRequest]
) -> list[MoneyRequestOut]:
    """Requests with their payment: the payer sees a payment awaiting confirmation, both
    parties a completed one."""
    payments = await money_requests.payments_of(session, requests=items)
    parties = [w for r in items for w in (r.requester_wallet_id, r.payer_wallet_id)]
    views = await Views.load(
        session,
        viewer_wallet_id=viewer_wallet_id,
        items=list(payments.values()),
        extra_wallet_ids=parties,
    )
    out = []
    for request in items:
        payment = payments.get(request.id)
        # A payment awaiting confirmation is the payer's business until it completes.
        held = payment is not None and payment.status != "completed"
        if held and viewer_wallet_id != request.payer_wallet_id:
            payment = None
        out.append(
            MoneyRequestOut(
                id=request.id,
                status=money_requests.effective_status(request, at=views.now),
                requester=views.party(request.requester_wallet_id),
                payer=views.party(request.payer_wallet_id),
                amount=request.amount,
                currency=request.currency,
                description=request.description,
                expires_at=request.expires_at,
                created_at=request.created_at,
                resolved_at=request.resolved_at,
                payment=views.transfer(payment) if payment is not None else None,
            )
        )
    return out


async def deposit_views(session: AsyncSession, items: Sequence[Transaction]) -> list[DepositOut]:
    entries = await deposits.ledger_entries(session, deposits=items)
    return [_deposit_out(DepositView.of(deposit), entries.get(deposit.id)) for deposit in items]


async def deposit_out(session: AsyncSession, deposit: Transaction) -> DepositOut:
    [out] = await deposit_views(session, [deposit])
    return out


def _deposit_out(deposit: DepositView, entry: ledger.Entry | None) -> DepositOut:
    return DepositOut(
        id=deposit.id,
        status=deposit.status,
        amount=deposit.amount,
        currency=deposit.currency,
        source=deposit.source,
        card_id=deposit.card_id,
        bank_name=deposit.bank_name,
        provider=deposit.provider,
        payment_intent_id=deposit.payment_intent_id,
        description=deposit.description,
        failure_code=deposit.failure_code,
        failure_message=deposit.failure_message,
        created_at=deposit.created_at,
        completed_at=deposit.completed_at,
        ledger_entry=DepositEntryOut(
            chain_id=entry.chain_id,
            seq=entry.seq,
            entry_id=entry.id,
            amount=entry.amount,
            balance_after=entry.balance_after,
            entry_hash=entry.entry_hash,
        )
        if entry
        else None,
    )
