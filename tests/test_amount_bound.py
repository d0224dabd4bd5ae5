"""The amount bound of docs/ledger-format.md §1 is PostgreSQL's own (migration
0010_amount_bound): an entry of more than 10^15 minor units, either way, is refused whoever
writes it, so that no honest chain can break rule 1 of the offline verifier."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import SuperuserSql


def insert(amount: int) -> str:
    return (
        "INSERT INTO ledger_entries (id, chain_id, type, amount, currency, metadata, journal_id) "
        f"VALUES ('led_Bound{abs(amount)}', 'org_AmountBound', 'donation_received', {amount}, "
        "'EUR', '{}', 'jrn_Bound')"
    )


@pytest.mark.parametrize("amount", [10**15 + 1, -(10**15) - 1, 2**62])
def test_the_database_refuses_an_amount_beyond_the_bound(
    superuser_sql: SuperuserSql, amount: int
) -> None:
    superuser_sql("INSERT INTO ledger_chains (id, kind) VALUES ('org_AmountBound', 'organisation')")
    with pytest.raises(psycopg.errors.CheckViolation, match="ledger_entries_amount_bound"):
        superuser_sql(insert(amount))
    assert superuser_sql(
        "SELECT count(*) FROM ledger_entries WHERE chain_id = 'org_AmountBound'"
    ) == [(0,)]
