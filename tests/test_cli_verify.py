"""``amply verify``, ``amply verify-receipt`` and ``amply keygen``: signed checkpoints, pinned
keys and exit codes (0 valid, 1 broken, 2 unreadable), offline."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Final

import pytest

from amply.cli import main
from amply.ledger.signing import NoteSigner
from amply.verify import VerifierKey
from tests.ledger.test_signing import (
    GENUINE,
    chain,
    forged_splice,
    receipt_chain,
    receipt_for,
    relink,
    signed_export,
)

VKEY: Final = GENUINE.verifier_key.encode()
AMOUNTS: Final = (500, 250, -100, 75, 60, 40)


def write(path: Path, document: dict[str, Any]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False)
    return path


def honest(tmp_path: Path, name: str = "export.json") -> Path:
    return write(tmp_path / name, signed_export(chain(AMOUNTS), GENUINE))


def old_and_new(tmp_path: Path, *, rewritten: bool = False) -> tuple[Path, Path]:
    entries = chain(AMOUNTS)
    old = write(tmp_path / "old.json", signed_export(copy.deepcopy(entries[:3]), GENUINE))
    if rewritten:
        entries[1]["metadata"] = json.dumps({"n": 2, "name": "Mallory"})
        relink(entries, 1)
    return old, write(tmp_path / "new.json", signed_export(entries, GENUINE))


def test_verify_with_a_pinned_key_prints_one_ok_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(honest(tmp_path)), "--key", VKEY]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK:")
    assert out.count("\n") == 1
    assert VKEY in out
    assert "not pinned" not in out


def test_verify_without_a_key_says_the_key_was_not_pinned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(honest(tmp_path))]) == 0
    assert "not pinned" in capsys.readouterr().out


def test_verify_a_tampered_export_exits_1_with_a_broken_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = signed_export(chain(AMOUNTS), GENUINE)
    document["entries"][2]["metadata"] = document["entries"][2]["metadata"].replace("Zoë", "Zoe")
    path = write(tmp_path / "bad.json", document)
    assert main(["verify", str(path), "--key", VKEY]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN: chain org_Verify1 at seq 3:")
    assert out.count("\n") == 1


def test_verify_a_forged_splice_exits_1_naming_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = forged_splice()  # hashes recomputed, checkpoint still over the genuine head
    path = write(tmp_path / "forged.json", document)
    assert main(["verify", str(path), "--key", VKEY]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN:")
    assert "signed checkpoint" in out


@pytest.mark.parametrize(
    "content", ["{not json", "[]", '{"format": "something-else"}'], ids=["junk", "list", "other"]
)
def test_verify_an_unreadable_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "junk.json"
    path.write_text(content, "utf-8")
    assert main(["verify", str(path), "--key", VKEY]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "UNREADABLE" in captured.err


def test_verify_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "absent.json")]) == 2
    assert "UNREADABLE" in capsys.readouterr().err


def test_verify_json_prints_an_object_with_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--json", "--key", VKEY, str(honest(tmp_path))]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert isinstance(printed, dict)
    assert printed["ok"] is True
    assert printed["checkpoint"]["pinned"] is True
    assert printed["checkpoint"]["key"] == VKEY
    assert printed["head_seq"] == len(AMOUNTS)


def test_verify_json_of_a_broken_export_says_not_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = signed_export(chain(AMOUNTS), GENUINE)
    del document["checkpoint"]
    path = write(tmp_path / "unsigned.json", document)
    assert main(["verify", "--json", "--key", VKEY, str(path)]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False
    assert "no signed checkpoint" in printed["reason"]


def test_verify_json_of_an_unreadable_file_says_not_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--json", str(tmp_path / "absent.json")]) == 2
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False
    assert "error" in printed


def test_verify_old_new_accepts_an_honest_extension(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = old_and_new(tmp_path)
    assert main(["verify", str(old), str(new), "--key", VKEY]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK:")
    assert "extends the earlier export at seq 3" in out


def test_verify_old_new_refuses_a_rewritten_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = old_and_new(tmp_path, rewritten=True)
    assert main(["verify", str(new), "--key", VKEY]) == 0  # valid and signed on its own
    capsys.readouterr()
    assert main(["verify", str(old), str(new), "--key", VKEY]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN: chain org_Verify1 at seq 2:")
    assert "rewritten" in out


def test_key_accepts_a_file_holding_the_keys_endpoint_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    retired = NoteSigner.generate("amply.test").verifier_key
    listing = {
        "object": "list",
        "data": [
            {
                "key": retired.encode(),
                "name": retired.name,
                "key_id": retired.key_id.hex(),
                "algorithm": "ed25519",
                "public_key": "",
                "status": "retired",
            },
            {
                "key": VKEY,
                "name": GENUINE.name,
                "key_id": GENUINE.verifier_key.key_id.hex(),
                "algorithm": "ed25519",
                "public_key": "",
                "status": "active",
            },
        ],
    }
    keys = write(tmp_path / "keys.json", listing)
    assert main(["verify", str(honest(tmp_path)), "--key", str(keys)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK:")
    assert VKEY in out
    assert "not pinned" not in out


def test_key_accepts_a_text_file_with_one_key_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = NoteSigner.generate("amply.old").verifier_key.encode()
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{other}\n\n{VKEY}\n", "utf-8")
    assert main(["verify", str(honest(tmp_path)), "--key", str(keys)]) == 0
    assert capsys.readouterr().out.startswith("OK:")


def test_an_export_signed_by_an_unknown_key_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = NoteSigner.generate("amply.test").verifier_key.encode()
    assert main(["verify", str(honest(tmp_path)), "--key", stranger]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN:")
    assert "not signed by a trusted key" in out


@pytest.mark.parametrize(
    "key",
    ["amply.test+00000000+AAAA", "not-a-key-and-not-a-file", VKEY.replace("+", "+0", 1)],
    ids=["short", "neither key nor file", "wrong id"],
)
def test_a_malformed_key_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    assert main(["verify", str(honest(tmp_path)), "--key", key]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "UNREADABLE" in captured.err


def test_an_empty_key_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("\n", "utf-8")
    assert main(["verify", str(honest(tmp_path)), "--key", str(keys)]) == 2
    assert "holds no verifier key" in capsys.readouterr().err


def test_progress_is_written_to_standard_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "--progress", str(honest(tmp_path)), "--key", VKEY]) == 0
    captured = capsys.readouterr()
    assert "verifying" in captured.err
    assert "reading export.json" in captured.err
    assert captured.err.endswith("\n")
    assert captured.out.startswith("OK:")


def test_no_progress_by_default_when_standard_error_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(honest(tmp_path)), "--key", VKEY]) == 0
    assert "verifying" not in capsys.readouterr().err


def write_receipt(tmp_path: Path, receipt: dict[str, Any]) -> tuple[Path, Path]:
    entries = receipt_chain()
    return (
        write(tmp_path / "receipt.json", receipt),
        write(tmp_path / "export.json", signed_export(entries, GENUINE)),
    )


def test_verify_receipt_accepts_an_honest_receipt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receipt, export = write_receipt(tmp_path, receipt_for(receipt_chain(), signer=GENUINE))
    assert main(["verify-receipt", str(receipt), str(export), "--key", VKEY]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: donation don_X is entry 2 of chain org_Verify1")


def test_verify_receipt_refuses_a_receipt_with_the_wrong_salt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = receipt_for(receipt_chain(), signer=GENUINE)
    document["commitment"]["salt"] = "00" * 32
    receipt, export = write_receipt(tmp_path, document)
    assert main(["verify-receipt", str(receipt), str(export), "--key", VKEY]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN: receipt for donation don_X")
    assert "does not open" in out


def test_verify_receipt_refuses_a_checkpoint_from_a_rewritten_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = receipt_chain()
    other[2]["metadata"] = json.dumps({"n": 3, "name": "Mallory"})
    relink(other, 2)
    document = receipt_for(receipt_chain(), covered=other[:3], signer=GENUINE)
    receipt, export = write_receipt(tmp_path, document)
    assert main(["verify-receipt", str(receipt), str(export), "--key", VKEY]) == 1
    out = capsys.readouterr().out
    assert out.startswith("BROKEN:")
    assert "rewritten" in out


def test_verify_receipt_json_prints_an_object_with_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receipt, export = write_receipt(tmp_path, receipt_for(receipt_chain(), signer=GENUINE))
    assert main(["verify-receipt", "--json", str(receipt), str(export), "--key", VKEY]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is True
    assert printed["seq"] == 2


def test_verify_receipt_of_something_that_is_not_a_receipt_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receipt, export = write_receipt(tmp_path, {"format": "not-a-receipt"})
    assert main(["verify-receipt", str(receipt), str(export), "--key", VKEY]) == 2
    assert "UNREADABLE" in capsys.readouterr().err


def test_keygen_prints_a_signer_key_and_its_verifier_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["keygen", "--name", "x.example"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    secret = lines[0].split()[-1]
    public = lines[1].split()[-1]
    assert secret.startswith("PRIVATE+KEY+x.example+")
    assert "PRIVATE+KEY+" not in lines[1]
    verifier = VerifierKey.parse(public)
    assert verifier.name == "x.example"
    assert NoteSigner.parse(secret).verifier_key == verifier


def test_verify_json_keeps_its_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--json", str(honest(tmp_path)), "--key", VKEY]) == 0
    assert list(json.loads(capsys.readouterr().out)) == [
        "chain_id",
        "ok",
        "entries_checked",
        "head_seq",
        "head_hash",
        "balances",
        "broken_seq",
        "reason",
        "checkpoint",
        "extends",
    ]


def test_progress_counts_entries_as_the_stream_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from amply.verify import parse

    monkeypatch.setattr(parse, "_CHUNK", 64)
    monkeypatch.setattr(parse, "_BATCH", 1)
    assert main(["verify", "--progress", str(honest(tmp_path)), "--key", VKEY]) == 0
    err = capsys.readouterr().err
    assert err.count("verifying [") >= len(AMOUNTS)
    assert f"{len(AMOUNTS)}/{len(AMOUNTS)} entries" in err
    assert err.endswith("\n")


def test_a_key_file_with_a_plus_in_its_name_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "amply+keys.txt"
    keys.write_text(VKEY + "\n", encoding="utf-8")
    assert main(["verify", str(honest(tmp_path)), "--key", str(keys)]) == 0
    assert capsys.readouterr().out.startswith("OK:")


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"data": null}',
        '{"data": [{"status": "active"}]}',
        '{"data": [{"key": "x", "key": "y"}]}',
        f'{{"data": [{{"key": "{VKEY}", "status": "paused"}}]}}',
    ],
)
def test_a_malformed_keys_document_exits_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(content, encoding="utf-8")
    assert main(["verify", str(honest(tmp_path)), "--key", str(keys)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("UNREADABLE: ")
    assert err.count("\n") == 1


def test_a_verdict_holding_characters_the_terminal_lacks_is_still_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    document = signed_export(chain(AMOUNTS), GENUINE)
    document["entries"][1]["chain_id"] = "org_Zoë"
    assert main(["verify", str(write(tmp_path / "x.json", document)), "--key", VKEY]) == 1
    ascii_out.seek(0)
    assert ascii_out.read().count("\n") == 1
