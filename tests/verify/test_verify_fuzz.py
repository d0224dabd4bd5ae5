"""No input makes ``amply verify`` or ``amply verify-receipt`` print a traceback: every
conformance file, and files made from them truncated, bit-flipped, re-encoded, or with NaN,
huge integers, duplicate member names and lone surrogates spliced in, end in exit 0, 1 or 2
with a one-line verdict or reason. A seeded loop: the same files on every run."""

from __future__ import annotations

import codecs
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from amply.cli import main

ROOT: Final = Path(__file__).resolve().parents[2] / "conformance"
CASES: Final = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))["cases"]
HONEST_RECEIPT: Final = ROOT / "cases" / "receipt-honest"
KEY: Final = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))["keys"]["amply"]
SPLICES: Final = (
    b"NaN",
    b"-Infinity",
    b"9" * 400,
    b"1e999",
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b"true",
    b"null",
    b"{}",
    b"[]",
    b'"seq":1,"seq":2',
    b"\xff\xfe",
    b"\xc3",
    b"\x00",
)


def mutations(data: bytes, rng: random.Random) -> Iterator[bytes]:
    """Files derived from ``data``: each kind of damage a download or a forger can do."""
    yield codecs.BOM_UTF8 + data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        yield text.encode("utf-16")
        yield text.encode("utf-16-le")
        yield text.encode("utf-32")
        yield text.encode("utf-32-be")
    for _ in range(4):
        yield data[: rng.randrange(len(data) + 1)]
    for _ in range(6):
        flipped = bytearray(data)
        if flipped:
            for _ in range(rng.randint(1, 3)):
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        yield bytes(flipped)
    for _ in range(6):
        splice = rng.choice(SPLICES)
        at = rng.randrange(len(data) + 1)
        if rng.random() < 0.5:  # replace a value after a colon, where one is likely to start
            colon = data.find(b":", at)
            if colon != -1:
                end = min(
                    (i for i in (data.find(b",", colon), data.find(b"}", colon)) if i > 0),
                    default=colon + 1,
                )
                yield data[: colon + 1] + splice + data[end:]
                continue
        yield data[:at] + splice + data[at:]
    if data.startswith(b"{"):
        yield b'{"format":"x","format":"y",' + data[1:]
        yield data.replace(b'"entries":', b'"entries":[],"entries":', 1)


def files() -> list[Path]:
    found = sorted(p for p in (ROOT / "cases").rglob("*.json") if p.is_file())
    return found[::4]  # every fourth file: the test stays quick; the conformance test reads all


def one_line(out: str) -> None:
    assert out.count("\n") == 1, out
    assert "Traceback" not in out


def test_fuzzed_files_end_in_a_verdict_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(18)  # noqa: S311 - a fixed seed, not a secret
    receipt, export = HONEST_RECEIPT / "receipt.json", HONEST_RECEIPT / "export.json"
    seen: set[int] = set()
    count = 0
    for source in files():
        for number, damaged in enumerate(mutations(source.read_bytes(), rng)):
            path = tmp_path / f"{source.parent.name}-{source.stem}-{number}.json"
            path.write_bytes(damaged)
            as_json = number % 2 == 0
            for argv in (
                ["verify", str(path), "--key", KEY],
                ["verify-receipt", str(receipt), str(path)],
                ["verify-receipt", str(path), str(export), "--key", KEY],
            ):
                code = main([*argv, "--no-progress"] + (["--json"] if as_json else []))
                assert code in (0, 1, 2), argv
                seen.add(code)
                out, err = capsys.readouterr()
                if as_json:
                    one_line(out)
                    assert err == ""
                    json.loads(out)
                elif code == 2:
                    one_line(err)
                    assert err.startswith("UNREADABLE: ")
                    assert out == ""
                else:
                    one_line(out)
                    assert out.startswith(("OK: ", "BROKEN: "))
                count += 1
            path.unlink()
    assert count > 1500
    assert seen == {0, 1, 2}


def test_every_conformance_file_as_any_argument_ends_in_a_verdict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for source in sorted(p for p in (ROOT / "cases").rglob("*") if p.is_file()):
        for argv in (
            ["verify", str(source)],
            ["verify", str(source), str(source)],
            ["verify", str(HONEST_RECEIPT / "export.json"), "--key", str(source)],
            ["verify-receipt", str(source), str(source)],
        ):
            assert main([*argv, "--no-progress", "--json"]) in (0, 1, 2)
            one_line(capsys.readouterr().out)


@pytest.mark.parametrize("depth", [200, 600, 900, 990, 5000])
def test_deep_nesting_inside_an_entry_is_refused_or_ignored_never_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], depth: int
) -> None:
    export = (HONEST_RECEIPT / "export.json").read_bytes()
    nested = b'"x":' + b"[" * depth + b"{}" + b"]" * depth + b","
    for argv in (["verify"], ["verify-receipt", str(HONEST_RECEIPT / "receipt.json")]):
        path = tmp_path / "deep.json"
        path.write_bytes(export.replace(b'{"chain_id":', b"{" + nested + b'"chain_id":', 2))
        code = main([*argv, str(path), "--key", KEY, "--json"])
        assert code in (0, 2)
        one_line(capsys.readouterr().out)
