"""The auditor's documentation stays true: its example chain and verifier sketch really work."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from amply.kit.settings import Settings
from amply.verify import VerifierKey, verify_export
from tests.verify.test_crypto import load_vectors

ROOT = Path(__file__).parents[1]
LEDGER_FORMAT = ROOT / "docs" / "ledger-format.md"


def code_blocks(language: str) -> list[str]:
    text = LEDGER_FORMAT.read_text("utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def example_export() -> dict[str, Any]:
    [block] = code_blocks("json")
    document: dict[str, Any] = json.loads(block)
    return document


def run_sketch(export: dict[str, Any], directory: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    [sketch] = code_blocks("python")
    (directory / "export.json").write_text(json.dumps(export, ensure_ascii=False), "utf-8")
    monkeypatch.chdir(directory)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(sketch, {})  # noqa: S102 - the documented verifier, run as an auditor would
    return printed.getvalue().split("#")[0].strip()


def test_the_example_export_verifies() -> None:
    result = verify_export(example_export())
    assert result.ok, result.verdict()
    assert result.entries_checked == 3


def test_the_example_entries_are_the_committed_vectors() -> None:
    vectors = [vector["entry"] for vector in load_vectors()[:3]]
    assert example_export()["entries"] == vectors


def test_the_worked_example_preimage_is_the_vectors() -> None:
    [shell] = code_blocks("sh")[:1]
    preimage = re.search(r"printf '%s' '(.*)' \| sha256sum", shell)
    assert preimage is not None
    assert preimage.group(1) == load_vectors()[0]["preimage_utf8"]
    assert load_vectors()[0]["preimage_sha256_hex"] in shell


def test_the_documented_verifier_sketch_accepts_and_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = example_export()
    assert run_sketch(export, tmp_path, monkeypatch) == "None"
    export["entries"][1]["metadata"] = export["entries"][1]["metadata"].replace("1Abc", "1Abd")
    assert run_sketch(export, tmp_path, monkeypatch) == "2"


def test_the_byte_count_example_is_right() -> None:
    metadata = example_export()["entries"][2]["metadata"]
    text = LEDGER_FORMAT.read_text("utf-8")
    assert f"{len(metadata)}\ncharacters but {len(metadata.encode())} bytes" in text


EXAMPLE_KEY = "amply.example+98351fbe+AS7S0Ro65NYUXSh7oqCZ3EhqCHKvcha2lvZwXu5J4N2E"


def test_the_example_export_is_signed_by_the_example_key() -> None:
    result = verify_export(example_export(), keys=[VerifierKey.parse(EXAMPLE_KEY)])
    assert result.ok, result.verdict()
    assert result.checkpoint is not None
    assert result.checkpoint["key"] == EXAMPLE_KEY


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("openssl", "xxd", "base64", "sha256sum")),
    reason="the by-hand check needs openssl, xxd, base64 and sha256sum",
)
def test_the_checkpoint_can_be_checked_by_hand_as_documented(tmp_path: Path) -> None:
    [block] = [b for b in code_blocks("sh") if "openssl pkeyutl" in b]
    lines = block.splitlines()
    # A comment right after a command is what that command prints.
    expected = [
        line.removeprefix("# ")
        for before, line in itertools.pairwise(lines)
        if line.startswith("# ") and before and not before.startswith("#")
    ]
    printed = subprocess.run(
        [shutil.which("bash") or "bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert printed == expected
    assert len(expected) == 4


def test_every_setting_is_in_the_configuration_reference_and_the_example_env() -> None:
    reference = (ROOT / "docs" / "operations.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        variable = (
            str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"AMPLY_{name.upper()}"
        )
        assert f"`{variable}`" in reference, variable
        assert f"{variable}=" in example, variable
