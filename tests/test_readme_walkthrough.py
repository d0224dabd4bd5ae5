"""The README's sandbox walk-through, run as written against a served app."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from amply.kit.settings import Settings
from amply.main import create_app
from tests.conftest import IsolatedDatabase, SuperuserSql

README = Path(__file__).parents[1] / "README.md"
BLOCK = re.compile(r"<!-- walkthrough:start -->\n```sh\n(.*?)```\n<!-- walkthrough:end -->", re.S)


def walkthrough() -> str:
    match = BLOCK.search(README.read_text())
    assert match, "the README lost its walk-through markers"
    return match.group(1)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl, jq")
async def test_the_readme_sandbox_walkthrough_works_as_written(
    settings: Settings,
    test_database: IsolatedDatabase,
    serve_app: Callable[[Any], AbstractAsyncContextManager[str]],
    superuser_sql: SuperuserSql,
) -> None:
    app = create_app(settings, database_url=test_database.urls.app)
    async with serve_app(app) as url:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-euo",
            "pipefail",
            "-c",
            walkthrough(),
            env={**os.environ, "AMPLY": url},
            cwd=README.parent,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
    await app.state.database.dispose()

    assert process.returncode == 0, stderr.decode()
    output = stdout.decode()
    assert output.startswith("true\n"), output
    assert '"status": "completed"' in output
    assert '"processing_fee": 103' in output
    assert '"amount_refunded": 500' in output
    assert '"platform_fee": 0' in output
    assert '"net": 1897' in output
    assert "OK: chain org_" in output
    assert "checkpoint signed by amply.test+" in output
    assert "(key not pinned" not in output
    assert re.search(r"OK: donation don_\w+ is entry 1 of chain org_", output)
    assert '"rule": "new_recipient"' in output
    assert '"balance": 10750' in output
    assert '"public_name": "Anonymous"' in output
    organisation_chain = superuser_sql(
        "SELECT type, amount, currency FROM ledger_entries WHERE chain_id LIKE 'org%' ORDER BY seq"
    )
    assert organisation_chain == [
        ("donation_received", 2500, "EUR"),
        ("payment_processing_fee", -103, "EUR"),
        ("donation_refunded", -500, "EUR"),
        ("wallet_donation_received", 500, "USD"),
    ]
