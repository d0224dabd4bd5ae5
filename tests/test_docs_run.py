"""Every shell block of README.md and docs/*.md, run as a newcomer would: in order, each
document in one shell from a scratch directory, against one fresh server, with the output
each document shows after a block (a ```json block right after it) checked.

A block that cannot run here says so on the line before it, with a reason:
``<!-- not-run: the reason -->``. Such markers stay rare (see the test below).

Output a document shows is compared by shape: the same keys, the same numbers, booleans and
words; ids, tokens, hashes and timestamps (which differ on every run) only need to be of
the same kind (``org_…`` for ``org_…``, a timestamp for a timestamp), and a string the
document shortens with ``…`` needs only start the same.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amply.main import create_app
from tests.conftest import IsolatedDatabase, cheapest_settings

ROOT = Path(__file__).parents[1]
# README first, then the guides in the order the README points to them.
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "docs" / "authentication.md",
    ROOT / "docs" / "donations.md",
    ROOT / "docs" / "wallets.md",
    ROOT / "docs" / "public-api.md",
    ROOT / "docs" / "operations.md",
    ROOT / "docs" / "ledger-format.md",
    ROOT / "docs" / "architecture.md",
]
DOCUMENTED_URL = "http://127.0.0.1:8000"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)
NOT_RUN = re.compile(r"<!-- not-run: (.+?) -->\n$")
MARKER = "@@amply-docs-block@@"


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    language: str
    text: str
    not_run: str | None  # the reason, when marked
    gap: str  # the text between the previous block and this one


def blocks(document: Path) -> list[Block]:
    text = document.read_text("utf-8")
    found = []
    end = 0
    for match in FENCE.finditer(text):
        before = text[: match.start()]
        gap, end = text[end : match.start()], match.end()
        marker = NOT_RUN.search(before[-300:])
        found.append(
            Block(
                document=document,
                line=before.count("\n") + 1,
                language=match.group(1),
                text=match.group(2),
                not_run=marker.group(1) if marker else None,
                gap=gap,
            )
        )
    return found


def shell_blocks() -> Iterator[Block]:
    for document in DOCUMENTS:
        yield from (block for block in blocks(document) if block.language == "sh")


def expected_outputs(document: Path) -> dict[int, str]:
    """Shell block index (in the document) -> the ```json block right after it, if any."""
    shown: dict[int, str] = {}
    index, previous_was_shell = -1, False
    for block in blocks(document):
        if block.language == "sh":
            index += 1
            previous_was_shell = block.not_run is None
        elif previous_was_shell and block.language == "json" and _shows_output(block.gap):
            shown[index] = block.text
            previous_was_shell = False
        else:
            previous_was_shell = False
    return shown


def _shows_output(gap: str) -> bool:
    """A ```json block shows the output of the shell block before it when at most a short
    sentence (no heading) stands between them."""
    return len(gap.strip()) <= 300 and "\n#" not in gap


def test_few_blocks_are_marked_not_run_and_each_says_why() -> None:
    every = list(shell_blocks())
    skipped = [block for block in every if block.not_run]
    assert len(every) >= 40
    # At most one in four.
    assert len(skipped) * 4 <= len(every), [f"{b.document.name}:{b.line}" for b in skipped]
    for block in skipped:
        assert len(block.not_run or "") >= 15, block


def test_the_examples_need_nothing_a_newcomer_lacks() -> None:
    for block in shell_blocks():
        where = f"{block.document.name}:{block.line}"
        assert "uuidgen" not in block.text, where  # Debian lacks it
        if block.not_run:
            continue
        for line in block.text.splitlines():
            command = line.split("#")[0]
            # `amply` is in the virtualenv, not on PATH: .venv/bin/amply.
            assert not re.search(r"(^|[|;&(]\s*|\$\()amply\s", command.strip()), where


# --- Comparing output by shape -----------------------------------------------------------------

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
# A token or hash: long, and with a capital or a digit (`donation_received` is a word).
_RANDOM = re.compile(r"^(?=.*[A-Z0-9])[A-Za-z0-9_+/=:.-]{16,}$")
# An id or key prefix: `sk_test_Aj55` (its random part has a capital or a digit).
_ID = re.compile(r"^[a-z]+(?:_[a-z]+)?_(?=[A-Za-z0-9]*[A-Z0-9])[A-Za-z0-9]{4,}$")


def _kind(value: str) -> str:
    if _TIMESTAMP.match(value):
        return "timestamp"
    prefix = re.match(r"^([a-z]+(?:_[a-z]+)?[_:])", value)
    return prefix.group(1) if prefix else "random"


def matches(shown: Any, actual: Any, path: str = "$") -> list[str]:
    """Where ``actual`` differs from what a document ``shown`` (empty: it matches)."""
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return [f"{path}: an object was shown, got {actual!r}"]
        # A "…" key stands for the keys the document leaves out.
        keys = set(shown) - {"…"}
        if not (keys <= set(actual) if "…" in shown else keys == set(actual)):
            return [f"{path}: keys {sorted(shown)} shown, got {sorted(actual)}"]
        return [
            problem for key in keys for problem in matches(shown[key], actual[key], f"{path}.{key}")
        ]
    if isinstance(shown, list):
        if not isinstance(actual, list) or len(shown) != len(actual):
            return [f"{path}: {len(shown)} items shown, got {actual!r}"]
        return [
            problem
            for index, (item, got) in enumerate(zip(shown, actual, strict=True))
            for problem in matches(item, got, f"{path}[{index}]")
        ]
    if isinstance(shown, str) and isinstance(actual, str) and shown != actual:
        if "…" in shown:
            # Shortened: words must start the same; a secret need only be of the same kind.
            head = shown.split("…")[0]
            same = actual.startswith(head) if " " in head else _kind(head) == _kind(actual)
            return [] if same else [f"{path}: {shown!r} shown, got {actual!r}"]
        volatile = _TIMESTAMP.match(shown) or _RANDOM.match(shown) or _ID.match(shown)
        if volatile and _kind(shown) == _kind(actual):
            return []
        return [f"{path}: {shown!r} shown, got {actual!r}"]
    if shown != actual or type(shown) is not type(actual):
        return [f"{path}: {shown!r} shown, got {actual!r}"]
    return []


def json_values(text: str) -> list[Any]:
    """The JSON documents printed one after another (non-JSON lines skipped)."""
    decoder, values, position = json.JSONDecoder(), [], 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            newline = text.find("\n", position)
            position = len(text) if newline < 0 else newline + 1
            continue
        values.append(value)
    return values


def test_the_shape_comparison_catches_what_matters() -> None:
    shown = {"id": "org_eur3vQDmsV5vZtqr6i5Kx2vQ", "amount": 2500, "token": "sess_q1t4…"}
    other_id, other_kind = "org_X1y2Z3a4B5c6D7e8F9g0H1i2", "don_X1y2Z3a4B5c6D7e8F9g0H1i2"
    assert matches(shown, {"id": other_id, "amount": 2500, "token": "sess_9"}) == []
    assert matches(shown, {"id": other_kind, "amount": 2500, "token": "sess_9"})
    assert matches(shown, {"id": other_id, "amount": 2501, "token": "sess_9"})
    assert matches(shown, {"id": other_id, "amount": 2500})
    assert matches({"status": "held"}, {"status": "completed"})
    assert matches({"at": "2026-11-21T13:07:21.057536Z"}, {"at": "2027-01-01T00:00:00Z"}) == []
    assert matches({"prefix": "sk_test_Aj55"}, {"prefix": "sk_test_x9Zq"}) == []
    assert matches({"type": "donation_received"}, {"type": "donation_refunded"})
    assert matches({"user": {"id": "usr_vt7zMCl2027xdgoULf4eDTQA", "…": "…"}}, {"user": {}})
    assert (
        matches(
            {"user": {"id": "usr_vt7zMCl2027xdgoULf4eDTQA", "…": "…"}},
            {"user": {"id": "usr_a1B2c3D4e5F6g7H8i9J0k1L2", "name": "Ada"}},
        )
        == []
    )


# --- Running them ------------------------------------------------------------------------------


def script(document: Path, url: str) -> tuple[str, int]:
    """The document's runnable blocks as one bash script, each announced by a marker line."""
    parts = []
    runnable = 0
    for block in (b for b in blocks(document) if b.language == "sh"):
        if block.not_run:
            parts.append(f"echo {MARKER}skipped")
            continue
        runnable += 1
        parts.append(f"echo {MARKER}{block.line}\n{block.text.replace(DOCUMENTED_URL, url)}")
    return "\n".join(parts) + "\n", runnable


def environment(url: str, scratch: Path, database: IsolatedDatabase) -> dict[str, str]:
    """A newcomer's shell: no `amply` on PATH (the docs say .venv/bin/amply), the server's URL
    in AMPLY (the docs default to the documented one), a .venv in the scratch folder, and the
    server's database for `amply demo` (as the embedded one would be, when it serves)."""
    venv = Path(sys.prefix)
    (scratch / ".venv").symlink_to(venv, target_is_directory=True)
    path = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not (Path(entry) / "amply").exists()
    ]
    kept = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AMPLY_DATA_DIR", "AMPLY_STRIPE", "DATABASE_", "VIRTUAL_ENV"))
    }
    return {
        **kept,
        "PATH": os.pathsep.join(path),
        "AMPLY": url,
        "HOME": str(scratch),
        "DATABASE_URL": database.urls.app,
        "DATABASE_MIGRATION_URL": database.urls.migration,
    }


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("curl", "jq", "openssl", "xxd", "sha256sum")),
    reason="the documents use curl, jq, openssl, xxd and sha256sum",
)
async def test_every_shell_block_runs_in_order_and_prints_what_its_document_shows(
    test_database: IsolatedDatabase,
    serve_app: Callable[[Any], AbstractAsyncContextManager[str]],
    tmp_path: Path,
) -> None:
    # As `amply serve` runs by default: the development environment (plain-HTTP cookies).
    settings = cheapest_settings().model_copy(update={"environment": "development"})
    app = create_app(settings, database_url=test_database.urls.app)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    problems: list[str] = []
    ran = 0
    try:
        async with serve_app(app) as url:
            env = environment(url, scratch, test_database)
            for document in DOCUMENTS:
                text, runnable = script(document, url)
                if not runnable:
                    continue
                ran += runnable
                process = await asyncio.create_subprocess_exec(
                    "bash",
                    "-euo",
                    "pipefail",
                    "-c",
                    text,
                    env=env,
                    cwd=scratch,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                try:
                    stdout, stderr = await asyncio.wait_for(process.communicate(), 600)
                except TimeoutError:
                    process.kill()
                    stdout, stderr = await process.communicate()
                output = stdout.decode()
                name = document.relative_to(ROOT)
                if process.returncode != 0:
                    last = output.rsplit(MARKER, 1)[-1].split("\n", 1)[0]
                    problems.append(
                        f"{name}: the block at line {last} failed ({process.returncode}): "
                        f"{stderr.decode()[-1500:]}"
                    )
                    continue
                outputs = output.split(f"{MARKER}")[1:]
                for index, shown in expected_outputs(document).items():
                    printed = outputs[index].split("\n", 1)[1] if index < len(outputs) else ""
                    expected = json_values(shown)
                    actual = json_values(printed)[-len(expected) :] if expected else []
                    if len(actual) != len(expected):
                        problems.append(f"{name}: block {index + 1} printed {printed!r}")
                        continue
                    for want, got in zip(expected, actual, strict=True):
                        problems += [
                            f"{name}, after block {index + 1}: {problem}"
                            for problem in matches(want, got)
                        ]
    finally:
        await app.state.database.dispose()
    assert not problems, "\n".join(problems)
    assert ran >= 30
