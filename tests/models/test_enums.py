"""Each status and kind is a StrEnum in amply.models.enums, and the database lists exactly the
same values: in its CHECK constraints and in the trigger functions that sort or guard them."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import get_args

from amply.ledger import service as ledger
from amply.models.enums import (
    TRANSACTION_STATUSES,
    ApiKeyMode,
    ChainKind,
    ChargeBalanceKind,
    ConnectedPayoutStatus,
    DepositSource,
    DonationStatus,
    EntryType,
    FundStatus,
    KeyStatus,
    MemberRole,
    MoneyRequestStatus,
    Provider,
    RefundReason,
    RefundStatus,
    SandboxBalanceType,
    SessionRevokedReason,
    StripeEventOutcome,
    StripeEventSource,
    TransactionKind,
    TransactionStatus,
    WithdrawalSpeed,
)
from amply.wallets import deposit_reversals
from amply.webhooks import stripe_events
from tests.conftest import SuperuserSql

# Every column whose values a CHECK lists, and the enum that must list the same ones.
COLUMN_ENUMS: dict[tuple[str, str], type[StrEnum]] = {
    ("api_keys", "mode"): ApiKeyMode,
    ("auth_sessions", "revoked_reason"): SessionRevokedReason,
    ("cards", "provider"): Provider,
    ("charge_balance_transactions", "kind"): ChargeBalanceKind,
    ("checkpoint_keys", "status"): KeyStatus,
    ("connected_payouts", "status"): ConnectedPayoutStatus,
    ("donation_refunds", "reason"): RefundReason,
    ("donation_refunds", "status"): RefundStatus,
    ("donations", "provider"): Provider,
    ("donations", "status"): DonationStatus,
    ("funds", "status"): FundStatus,
    ("money_requests", "status"): MoneyRequestStatus,
    ("organisation_members", "role"): MemberRole,
    ("sandbox_balance_transactions", "type"): SandboxBalanceType,
    ("stripe_events", "outcome"): StripeEventOutcome,
    ("stripe_events", "source"): StripeEventSource,
    ("transactions", "kind"): TransactionKind,
    ("transactions", "provider"): Provider,
    ("transactions", "source"): DepositSource,
    ("transactions", "speed"): WithdrawalSpeed,
    ("transactions", "status"): TransactionStatus,
}

_LIST = re.compile(r"\b(\w+) = ANY \(ARRAY\[([^\]]*)\]\)")
_WHOLE = re.compile(r"^CHECK \(\((\w+) = ANY \(ARRAY\[[^\]]*\]\)\)\)$")
_VALUE = re.compile(r"'([^']*)'::text")
_KIND_BRANCH = re.compile(r"WHEN '(\w+)'::text THEN \(status = ANY \(ARRAY\[([^\]]*)\]\)\)")
_ELSE_BRANCH = re.compile(r"ELSE \(status = '(\w+)'::text\)")


def _checks(superuser_sql: SuperuserSql) -> list[tuple[str, str, str]]:
    rows = superuser_sql(
        """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
             FROM pg_constraint
            WHERE contype = 'c' AND connamespace = 'public'::regnamespace
            ORDER BY 1, 2"""
    )
    return [(str(table), str(name), str(definition)) for table, name, definition in rows]


def _values(listed: str) -> set[str]:
    return set(_VALUE.findall(listed))


def _function_source(superuser_sql: SuperuserSql, name: str) -> str:
    [(source,)] = superuser_sql(
        "SELECT prosrc FROM pg_proc WHERE proname = %s AND pronamespace = 'public'::regnamespace",
        name,
    )
    return str(source)


def test_every_status_check_lists_exactly_its_enum(superuser_sql: SuperuserSql) -> None:
    whole: dict[tuple[str, str], set[str]] = {}
    unmapped: list[str] = []
    not_in_enum: list[str] = []
    for table, name, definition in _checks(superuser_sql):
        for column, listed in _LIST.findall(definition):
            enum = COLUMN_ENUMS.get((table, column))
            if enum is None:
                unmapped.append(f"{name}: {table}.{column} lists {sorted(_values(listed))}")
            elif not _values(listed) <= set(enum):
                not_in_enum.append(f"{name}: {sorted(_values(listed) - set(enum))}")
        if (match := _WHOLE.match(definition)) is not None:
            whole[(table, match.group(1))] = _values(definition)

    assert unmapped == [], "a CHECK lists values of a column no enum in models.enums names"
    assert not_in_enum == [], "a CHECK names values its column's enum does not have"
    assert whole.keys() == COLUMN_ENUMS.keys(), "each mapped column has one CHECK listing all"
    for column, enum in COLUMN_ENUMS.items():
        assert whole[column] == {member.value for member in enum}, column


def test_each_kind_of_transaction_has_exactly_its_statuses(superuser_sql: SuperuserSql) -> None:
    [definition] = [
        definition
        for table, _, definition in _checks(superuser_sql)
        if table == "transactions" and "CASE kind" in definition and "THEN (status" in definition
    ]
    listed = {kind: _values(values) for kind, values in _KIND_BRANCH.findall(definition)}
    [otherwise] = _ELSE_BRANCH.findall(definition)
    for kind in TransactionKind:
        expected = {member.value for member in TRANSACTION_STATUSES[kind]}
        assert listed.get(kind, {otherwise}) == expected, kind
    # The column's own CHECK lists every kind's statuses together.
    assert set(TransactionStatus) == {s for e in TRANSACTION_STATUSES.values() for s in e}


def test_transactions_start_only_in_statuses_of_their_kind(superuser_sql: SuperuserSql) -> None:
    source = _function_source(superuser_sql, "transactions_guard_insert")
    pairs = re.findall(r"\('(\w+)', '(\w+)'\)", source)
    assert {kind for kind, _ in pairs} == set(TransactionKind)
    for kind, status in pairs:
        allowed = {member.value for member in TRANSACTION_STATUSES[TransactionKind(kind)]}
        assert status in allowed, (kind, status)


def test_entry_types_in_the_flow_function_match_the_enum(superuser_sql: SuperuserSql) -> None:
    source = _function_source(superuser_sql, "ledger_entry_flow")
    flows = {
        flow: set(re.findall(r"'(\w+)'", listed))
        for listed, flow in re.findall(r"WHEN entry_type IN \(([^)]*)\) THEN '(\w+)'", source)
    }
    assert flows.keys() == {"external", "internal"}
    assert not flows["external"] & flows["internal"]
    assert flows["external"] | flows["internal"] == {member.value for member in EntryType}
    assert flows["internal"] == ledger.INTERNAL_TYPES
    assert set(EntryType) == ledger.ENTRY_TYPES


def test_chain_kinds_in_the_chain_guard_match_the_enum(superuser_sql: SuperuserSql) -> None:
    source = _function_source(superuser_sql, "ledger_chains_guard")
    prefixes = dict(re.findall(r"WHEN '(\w+)' THEN '(\w+)'", source))
    assert prefixes.keys() == {member.value for member in ChainKind}


def test_the_two_result_types_that_are_not_stored_stay_within_their_enums() -> None:
    """A deposit reversal's kinds are the deposit kinds of ``ChargeBalanceKind``; the webhook's
    answer adds ``duplicate`` (an event seen before) to the outcomes it stores."""
    assert set(get_args(deposit_reversals.Kind)) <= set(ChargeBalanceKind)
    assert set(get_args(stripe_events.Outcome)) == {*StripeEventOutcome, "duplicate"}
