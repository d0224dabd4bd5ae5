"""The conformance vectors (``conformance/``): ``amply verify`` and ``amply verify-receipt``
give every case's exit code and name its seq; the committed files are what
``conformance/generate.py`` writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from amply.cli import main
from amply.verify import export as export_module
from amply.verify import parse as parse_module

ROOT: Final = Path(__file__).resolve().parents[2] / "conformance"
MANIFEST: Final = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
CASES: Final[list[dict[str, Any]]] = MANIFEST["cases"]


def test_the_suite_has_at_least_a_hundred_cases_each_with_its_files() -> None:
    assert len(CASES) >= 100
    assert len({case["id"] for case in CASES}) == len(CASES)
    for case in CASES:
        assert case["command"] in ("verify", "verify-receipt")
        assert case["exit"] in (0, 1, 2)
        assert (ROOT / "cases" / case["id"]).is_dir()
    size = sum(path.stat().st_size for path in ROOT.rglob("*") if path.is_file())
    assert size < 2_000_000


def test_every_exit_code_of_both_commands_is_exercised() -> None:
    seen = {(case["command"], case["exit"]) for case in CASES}
    assert seen == {(c, e) for c in ("verify", "verify-receipt") for e in (0, 1, 2)}


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_amply_passes_the_case(
    case: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code = main([case["command"], "--json", "--no-progress", *case["args"]])
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out
    verdict = json.loads(out)
    assert code == case["exit"], verdict
    if code == 1:
        assert verdict["broken_seq"] == case["seq"], verdict
    if code == 2:
        assert verdict["ok"] is False
        assert verdict["error"]


@pytest.mark.parametrize("reading", ["in 7-byte chunks", "in two processes"])
def test_the_verdicts_do_not_depend_on_how_the_file_is_read(
    reading: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chunk boundaries fall inside every token, and the second process starts at every entry
    # it can find (a wrong guess is ignored): the verdict is the same.
    monkeypatch.chdir(ROOT)
    merged: list[int] = []
    if reading == "in 7-byte chunks":
        monkeypatch.setattr(parse_module, "_CHUNK", 7)
    else:
        monkeypatch.setattr(parse_module, "_CHUNK", 64)
        monkeypatch.setattr(export_module, "PARALLEL_FILE_MINIMUM", 0)
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        merge = export_module._StreamedExport._merge

        def counted(self: Any, verifier: Any, state: Any, *, first: int) -> bool:
            merged.append(first)
            return merge(self, verifier, state, first=first)

        monkeypatch.setattr(export_module._StreamedExport, "_merge", counted)
    for case in CASES:
        code = main([case["command"], "--json", "--no-progress", *case["args"]])
        verdict = json.loads(capsys.readouterr().out)
        assert code == case["exit"], (case["id"], verdict)
        if code == 1:
            assert verdict["broken_seq"] == case["seq"], (case["id"], verdict)
    assert len(merged) > (10 if reading == "in two processes" else -1)


@pytest.mark.parametrize(
    "name", ["honest-organisation", "rule7-metadata", "unreadable-bom", "receipt-wrong-salt"]
)
def test_the_installed_command_passes_cases_in_a_process_of_its_own(name: str) -> None:
    case = next(case for case in CASES if case["id"] == name)
    run = subprocess.run(
        [sys.executable, "-m", "amply.cli", case["command"], *case["args"]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT.parent / "src")},
    )
    assert run.returncode == case["exit"], run.stderr
    assert "Traceback" not in run.stderr
    line = run.stdout if case["exit"] != 2 else run.stderr
    assert line.count("\n") == 1
    if case["exit"] == 1 and case["seq"] is not None:
        assert f" at seq {case['seq']}:" in line


def test_the_committed_vectors_are_what_the_generator_writes(tmp_path: Path) -> None:
    copy = tmp_path / "conformance"
    copy.mkdir()
    (copy / "generate.py").write_bytes((ROOT / "generate.py").read_bytes())
    subprocess.run(
        [sys.executable, str(copy / "generate.py")],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT.parent / "src")},
    )
    generated = {p.relative_to(copy) for p in copy.rglob("*") if p.is_file()}
    committed = {p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file()}
    assert generated - {Path("generate.py")} == committed - {
        Path("generate.py"),
        Path("README.md"),
    }
    for path in generated:
        assert (copy / path).read_bytes() == (ROOT / path).read_bytes(), path
