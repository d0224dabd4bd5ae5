"""Reconciliation: each organisation's public chain against its Stripe balance transactions.

The chain says what Stripe moved on the organisation's connected account; Stripe's balance
transactions (``GET /v1/balance_transactions`` with ``Stripe-Account``) are what it moved.
:func:`reconcile` reads the chains in one short transaction, then asks Stripe with no
transaction open, and compares them group by group.

**Groups.** Every balance transaction belongs to the Stripe object it is about:

- a charge: its own ``charge``/``payment`` transaction (source the charge, ``ch_…``/``py_…``),
  its refunds' (source ``re_…``, the refund names the charge) and its disputes' (source
  ``dp_…``/``du_…``, the dispute names the charge); the list is asked with
  ``expand[]=data.source`` so that one paginated listing says which charge each belongs to;
- a payout (source ``po_…``): the payout, and its ``payout_failure``/``payout_cancel``;
- anything else: its own group, by balance transaction id.

Chain entries join the group their public metadata names: ``payout``, else ``charge``, else
the group of the balance transaction they name (``balance_transaction``, as fee entries do),
else the charge of another entry of the same donation (``donation_id``: a failed refund's
reversal names only the refund). An entry that names none of these is a group of its own.
Wallet gifts (``wallet_donation_received`` and every other internal entry type) are Amply's
own money moving between chains, never Stripe's: they are left out.

**Compared per group and currency:** the gross (the sum of ``amount`` of the balance
transactions against the sum of the chain's amount entries) and the fee (the sum of ``fee``
against minus the sum of the chain's fee entries: ``payment_processing_fee``, ``dispute_fee``
and their refunds). Each difference is one row: ``missing_on_chain``,
``missing_at_stripe``, ``amount_differs``, ``fee_differs``. Only balance transactions that
exist (``available`` or ``pending``) and were created by the time the chain was read count;
an event still being delivered shows as a difference until it lands.

In sandbox mode the balance transactions are the sandbox's own simulation
(``sandbox_balance_transactions``, written as the sandbox simulates payments, refunds and
payouts: ``webhooks/sandbox.py``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import stripe
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from stripe.params import BalanceTransactionListParams

from amply.kit.db import Database
from amply.kit.observability import (
    RECONCILIATION_DIFFERENCES,
    RECONCILIATION_LAST_SUCCESS,
    RECONCILIATION_RUNS,
)
from amply.kit.settings import Settings
from amply.ledger import service as ledger
from amply.models import Organisation
from amply.webhooks import sandbox

logger = logging.getLogger(__name__)

DifferenceKind = Literal["missing_on_chain", "missing_at_stripe", "amount_differs", "fee_differs"]
GroupKind = Literal["charge", "payout", "balance_transaction", "entry"]
FEE_TYPES: Final = frozenset(
    {
        "payment_processing_fee",
        "payment_processing_fee_refunded",
        "dispute_fee",
        "dispute_fee_refunded",
    }
)
COUNTED_STATUSES: Final = frozenset({"available", "pending"})
PAGE_SIZE: Final = 100

_CHAIN_SQL: Final = text("""
    SELECT id, type, amount, currency, metadata
      FROM ledger_entries
     WHERE chain_id = :chain_id
     ORDER BY seq
""")


class ReconciliationUnavailable(Exception):
    """Stripe (or the database) could not be asked: nothing can be said about the chain."""


@dataclass(frozen=True, slots=True)
class BalanceTxn:
    """One balance transaction, with the group it belongs to."""

    id: str
    type: str
    amount: int
    fee: int
    currency: str
    status: str
    created: int
    group: tuple[GroupKind, str]


@dataclass(frozen=True, slots=True)
class ChainEntry:
    id: str
    type: str
    amount: int
    currency: str
    metadata: Mapping[str, object]  # the entry's public metadata, as the ledger stores it


@dataclass(frozen=True, slots=True)
class Difference:
    organisation_id: str
    kind: DifferenceKind
    group: str  # "charge ch_…", "payout po_…", …
    currency: str
    stripe: int  # Stripe's gross (amount rows) or fee (fee rows)
    chain: int  # the chain's, likewise


@dataclass(slots=True)
class Report:
    """One organisation's reconciliation."""

    organisation_id: str
    account_id: str
    differences: list[Difference] = field(default_factory=list)
    balance_transactions: int = 0
    entries: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Chain:
    organisation_id: str
    account_id: str
    entries: list[ChainEntry]


class BalanceSource(Protocol):
    """Where an account's balance transactions come from: Stripe, or the sandbox."""

    async def balance_transactions(self, *, account_id: str) -> list[BalanceTxn]: ...

    def owns_account(self, account_id: str) -> bool: ...


# --- Grouping ------------------------------------------------------------------------------------


def _reference(value: object) -> str | None:
    """An id, whether ``value`` is the id or the (expanded) object."""
    if isinstance(value, str):
        return value
    found = getattr(value, "id", None)
    return found if isinstance(found, str) else None


def group_of(
    *, transaction_id: str, type_: str, source: object, charge: object = None
) -> tuple[GroupKind, str]:
    """The Stripe object a balance transaction belongs to (``source`` an id or an expanded
    object; ``charge`` the source's charge, when known apart from it)."""
    source_id = _reference(source)
    if source_id is None:
        return ("balance_transaction", transaction_id)
    if type_ in ("charge", "payment") or source_id.startswith(("ch_", "py_")):
        return ("charge", source_id)
    if source_id.startswith("po_"):
        return ("payout", source_id)
    if source_id.startswith(("re_", "pyr_", "dp_", "du_")):
        charge_id = _reference(charge if charge is not None else getattr(source, "charge", None))
        if charge_id is not None:
            return ("charge", charge_id)
    return ("balance_transaction", transaction_id)


def _chain_groups(
    entries: Sequence[ChainEntry], transactions: Sequence[BalanceTxn]
) -> dict[str, tuple[GroupKind, str]]:
    """Each counted entry's group (internal entries are left out)."""
    by_transaction = {transaction.id: transaction.group for transaction in transactions}
    donation_charge: dict[str, str] = {}
    for entry in entries:
        donation, charge = entry.metadata.get("donation_id"), entry.metadata.get("charge")
        if isinstance(donation, str) and isinstance(charge, str):
            donation_charge.setdefault(donation, charge)
    groups: dict[str, tuple[GroupKind, str]] = {}
    for entry in entries:
        if entry.type in ledger.INTERNAL_TYPES:
            continue  # wallet gifts and the like: Amply's money, not Stripe's
        meta = entry.metadata
        payout, charge = meta.get("payout"), meta.get("charge")
        transaction, donation = meta.get("balance_transaction"), meta.get("donation_id")
        if isinstance(payout, str):
            groups[entry.id] = ("payout", payout)
        elif isinstance(charge, str):
            groups[entry.id] = ("charge", charge)
        elif isinstance(transaction, str) and transaction in by_transaction:
            groups[entry.id] = by_transaction[transaction]
        elif isinstance(donation, str) and donation in donation_charge:
            groups[entry.id] = ("charge", donation_charge[donation])
        else:
            groups[entry.id] = ("entry", entry.id)
    return groups


@dataclass(slots=True)
class _Sums:
    stripe_amount: int = 0
    stripe_fee: int = 0
    chain_amount: int = 0
    chain_fee: int = 0
    stripe_seen: bool = False
    chain_seen: bool = False


def compare(
    *,
    organisation_id: str,
    account_id: str,
    entries: Sequence[ChainEntry],
    transactions: Sequence[BalanceTxn],
) -> Report:
    """Every difference between a chain and its account's balance transactions."""
    counted = [t for t in transactions if t.status in COUNTED_STATUSES]
    groups = _chain_groups(entries, counted)
    sums: dict[tuple[GroupKind, str, str], _Sums] = {}
    for transaction in counted:
        kind, reference = transaction.group
        row = sums.setdefault((kind, reference, transaction.currency), _Sums())
        row.stripe_amount += transaction.amount
        row.stripe_fee += transaction.fee
        row.stripe_seen = True
    for entry in entries:
        group = groups.get(entry.id)
        if group is None:
            continue
        row = sums.setdefault((group[0], group[1], entry.currency), _Sums())
        if entry.type in FEE_TYPES:
            row.chain_fee -= entry.amount
        else:
            row.chain_amount += entry.amount
        row.chain_seen = True
    report = Report(
        organisation_id=organisation_id,
        account_id=account_id,
        balance_transactions=len(counted),
        entries=len(groups),
    )
    for (kind, reference, currency), row in sorted(sums.items()):
        found: list[tuple[DifferenceKind, int, int]] = []
        if not row.chain_seen:
            found.append(("missing_on_chain", row.stripe_amount, 0))
        elif not row.stripe_seen:
            found.append(("missing_at_stripe", 0, row.chain_amount))
        else:
            if row.stripe_amount != row.chain_amount:
                found.append(("amount_differs", row.stripe_amount, row.chain_amount))
            if row.stripe_fee != row.chain_fee:
                found.append(("fee_differs", row.stripe_fee, row.chain_fee))
        report.differences.extend(
            Difference(organisation_id, what, f"{kind} {reference}", currency, stripe_side, chain)
            for what, stripe_side, chain in found
        )
    return report


# --- Reading both sides ------------------------------------------------------------------------


async def read_chains(
    database: Database, *, organisation_id: str | None, source: BalanceSource
) -> tuple[list[_Chain], int]:
    """The chains of the organisations to reconcile (those with an account ``source`` can
    answer for), and when they were read (epoch seconds): one short transaction."""
    async with database.session() as session, session.begin():
        statement = select(Organisation.id, Organisation.stripe_account_id).order_by(
            Organisation.id
        )
        if organisation_id is not None:
            statement = statement.where(Organisation.id == organisation_id)
        rows = (await session.execute(statement)).all()
        if organisation_id is not None and not rows:
            raise LookupError(f"no organisation {organisation_id}")
        read_at = int(await session.scalar(text("SELECT extract(epoch FROM now())::bigint")) or 0)
        chains = []
        for org_id, account_id in rows:
            if account_id is None or not source.owns_account(account_id):
                continue
            result = await session.execute(_CHAIN_SQL, {"chain_id": org_id})
            entries = [
                ChainEntry(
                    id=row.id,
                    type=row.type,
                    amount=int(row.amount),
                    currency=row.currency,
                    metadata=_metadata(row.metadata),
                )
                for row in result
            ]
            chains.append(_Chain(org_id, account_id, entries))
    return chains, read_at


def _metadata(raw: object) -> Mapping[str, object]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


class StripeBalance:
    """Balance transactions of connected accounts, from Stripe (``Stripe-Account``, all pages)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.stripe_secret_key is not None
        base = settings.stripe_api_base
        self._client = stripe.StripeClient(
            settings.stripe_secret_key.get_secret_value(),
            base_addresses={"api": base} if base else {},
            http_client=stripe.HTTPXClient(
                timeout=settings.stripe_timeout_seconds, allow_sync_methods=False
            ),
            max_network_retries=2,
        )

    def owns_account(self, account_id: str) -> bool:
        return not account_id.startswith("acct_sandbox_")

    async def balance_transactions(self, *, account_id: str) -> list[BalanceTxn]:
        params: BalanceTransactionListParams = {"limit": PAGE_SIZE, "expand": ["data.source"]}
        found: list[BalanceTxn] = []
        try:
            page = await self._client.v1.balance_transactions.list_async(
                params=params, options={"stripe_account": account_id}
            )
            async for item in page.auto_paging_iter():
                found.append(
                    BalanceTxn(
                        id=item.id,
                        type=item.type,
                        amount=item.amount,
                        fee=item.fee,
                        currency=item.currency.upper(),
                        status=item.status,
                        created=item.created,
                        group=group_of(transaction_id=item.id, type_=item.type, source=item.source),
                    )
                )
        except stripe.StripeError as error:
            raise ReconciliationUnavailable(
                f"Stripe did not list the balance transactions of {account_id}: {error}"
            ) from error
        return found


class SandboxBalance:
    """The sandbox's simulated balance transactions (``sandbox_balance_transactions``)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def owns_account(self, account_id: str) -> bool:
        return account_id.startswith("acct_sandbox_")

    async def balance_transactions(self, *, account_id: str) -> list[BalanceTxn]:
        async with self._database.session() as session, session.begin():
            rows = await sandbox.balance_transactions(session, account_id=account_id)
        return [
            BalanceTxn(
                id=row.id,
                type=row.type,
                amount=row.amount,
                fee=row.fee,
                currency=row.currency,
                status="available",
                created=int(row.created_at.timestamp()),
                group=group_of(
                    transaction_id=row.id, type_=row.type, source=row.source, charge=row.charge
                ),
            )
            for row in rows
        ]


def balance_source(settings: Settings, database: Database) -> BalanceSource:
    if settings.sandbox_mode:
        return SandboxBalance(database)
    return StripeBalance(settings)


async def reconcile(
    database: Database, *, source: BalanceSource, organisation_id: str | None = None
) -> list[Report]:
    """Reconcile one organisation, or all with an account: the chains first (one short
    transaction), then each account's balance transactions (no transaction open)."""
    chains, read_at = await read_chains(database, organisation_id=organisation_id, source=source)
    reports = []
    for chain in chains:
        try:
            transactions = await source.balance_transactions(account_id=chain.account_id)
        except ReconciliationUnavailable as error:
            reports.append(Report(chain.organisation_id, chain.account_id, error=str(error)))
            continue
        # What Stripe did after the chain was read cannot be on it yet.
        settled = [t for t in transactions if t.created <= read_at]
        reports.append(
            compare(
                organisation_id=chain.organisation_id,
                account_id=chain.account_id,
                entries=chain.entries,
                transactions=settled,
            )
        )
    return reports


# --- Presenting ------------------------------------------------------------------------------


HEADERS: Final = ("organisation", "difference", "group", "currency", "stripe", "chain")


def table(reports: Sequence[Report]) -> str:
    """The differences as a text table (a header line only, when there are none)."""
    rows = [
        (d.organisation_id, d.kind, d.group, d.currency, str(d.stripe), str(d.chain))
        for report in reports
        for d in report.differences
    ]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(HEADERS)]
    lines = [HEADERS, *rows]
    return "\n".join(
        "  ".join(
            cell.rjust(widths[i]) if i >= 4 else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ).rstrip()
        for line in lines
    )


# --- The periodic job ------------------------------------------------------------------------

_AWAY: Final = (OSError, SQLAlchemyError)


def record_metrics(reports: Sequence[Report]) -> None:
    """Differences per organisation; the time of the last pass that could ask every account."""
    for report in reports:
        if report.error is None:
            RECONCILIATION_DIFFERENCES.labels(organisation=report.organisation_id).set(
                len(report.differences)
            )
    failed = any(report.error is not None for report in reports)
    RECONCILIATION_RUNS.labels(outcome="error" if failed else "ok").inc()
    if not failed:
        RECONCILIATION_LAST_SUCCESS.set(time.time())


async def reconcile_once(database: Database, *, source: BalanceSource) -> list[Report]:
    """One pass over every organisation: logs each difference, updates the metrics."""
    reports = await reconcile(database, source=source)
    for report in reports:
        if report.error is not None:
            logger.warning("reconciliation of %s failed: %s", report.organisation_id, report.error)
        for d in report.differences:
            logger.warning(
                "reconciliation: %s %s %s %s: Stripe %d, chain %d",
                d.organisation_id,
                d.kind,
                d.group,
                d.currency,
                d.stripe,
                d.chain,
            )
    record_metrics(reports)
    return reports


async def run_reconciliation(database: Database, *, source: BalanceSource, interval: float) -> None:
    """A pass every ``interval`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await reconcile_once(database, source=source)
        except _AWAY as error:  # the database is away: try again next time
            RECONCILIATION_RUNS.labels(outcome="error").inc()
            logger.warning("reconciliation pass failed: %s", error)
