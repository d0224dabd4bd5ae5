"""The run's PostgreSQL is the major it is meant to be: the embedded one (the newest supported),
or the one ``AMPLY_TEST_POSTGRES_BIN`` names (CI runs the migrations, the ledger, the guards and
the concurrency tests again on Debian's PostgreSQL 15, the oldest supported)."""

from __future__ import annotations

import os

import psycopg

from amply.embedded import EMBEDDED_MAJOR
from tests.conftest import Cluster
from tests.support.postgres import TEST_MAJOR_VARIABLE, test_binaries

OLDEST_SUPPORTED, NEWEST_SUPPORTED = 15, 18


def test_the_server_is_the_major_this_run_is_for(cluster: Cluster) -> None:
    named = os.environ.get(TEST_MAJOR_VARIABLE)
    if test_binaries() is None:
        expected = int(named or EMBEDDED_MAJOR)
    else:
        assert named, f"{TEST_MAJOR_VARIABLE} must say which major AMPLY_TEST_POSTGRES_BIN is"
        expected = int(named)
    with psycopg.connect(cluster.superuser_url) as connection:
        row = connection.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None
    assert row[0] // 10000 == expected
    assert OLDEST_SUPPORTED <= expected <= NEWEST_SUPPORTED
    assert EMBEDDED_MAJOR == NEWEST_SUPPORTED  # the embedded server is the newest supported
