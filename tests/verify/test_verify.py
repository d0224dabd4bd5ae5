from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from amply.ledger.signing import NoteSigner
from amply.verify import (
    EXPORT_FORMAT,
    ChainVerifier,
    ExportFormatError,
    checkpoint_body,
    verify_entries,
    verify_export,
    verify_export_file,
)
from amply.verify import chain as chain_module
from amply.verify import export as export_module
from amply.verify import parse as parse_module
from amply.verify.crypto import entry_hash

CHAIN = "org_Verify1"


def build_chain(amounts: list[int], *, chain_id: str = CHAIN) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    balance, prev = 0, None
    for seq, amount in enumerate(amounts, start=1):
        balance += amount
        entry = {
            "chain_id": chain_id,
            "seq": seq,
            "id": f"led_{seq:06d}",
            "type": "donation_received" if amount > 0 else "donation_refunded",
            "amount": amount,
            "currency": "EUR",
            "balance_after": balance,
            "metadata": json.dumps({"n": seq, "name": "Zoë 🎉"}, ensure_ascii=False),
            "journal_id": f"jrn_{seq:06d}",
            "created_at": f"2026-11-21T10:00:{seq % 60:02d}.000000Z",
            "prev_entry_hash": prev,
        }
        entry["entry_hash"] = rehash(entry)
        prev = entry["entry_hash"]
        entries.append(entry)
    return entries


def rehash(entry: dict[str, Any]) -> str:
    return entry_hash(entry)


# Signs the checkpoints of these offline exports (a non-empty export without one never
# verifies: docs/ledger-format.md §4).
SIGNER = NoteSigner.generate("amply.test")


def export_of(
    entries: list[dict[str, Any]], *, kind: str = "organisation", chain_id: str = CHAIN
) -> dict[str, Any]:
    head = entries[-1] if entries else None
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "chain": {"id": chain_id, "kind": kind},
        "head": {
            "seq": head["seq"] if head else 0,
            "entry_hash": head["entry_hash"] if head else None,
        },
        "entries": entries,
    }
    if head is not None and isinstance(head.get("seq"), int):
        body = checkpoint_body(
            origin=f"amply.test/ledger/{chain_id}",
            size=head["seq"],
            root_hash=str(head["entry_hash"]),
            time="2026-11-21T09:30:00.000000Z",
        )
        document["checkpoint"] = {"note": SIGNER.sign(body), "key": SIGNER.verifier_key.encode()}
    return document


def test_an_honest_chain_verifies() -> None:
    result = verify_export(export_of(build_chain([500, 250, -100, 75])))
    assert result.ok
    assert result.entries_checked == 4
    assert result.balances == {"EUR": 725}
    assert result.verdict().startswith("OK: chain org_Verify1 verifies, 4 entries")


def test_an_empty_chain_verifies() -> None:
    assert verify_export(export_of([])).ok


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("amount", 501, "balance_after"),
        ("metadata", '{"n":3,"name":"Zoe"}', "entry_hash"),
        ("created_at", "2026-11-21T10:00:03.000001Z", "entry_hash"),
        ("type", "donation_refunded", "entry_hash"),
        ("id", "led_forged", "entry_hash"),
        ("journal_id", "jrn_forged", "entry_hash"),
        ("entry_hash", "sha256:" + "0" * 64, "entry_hash"),
        ("prev_entry_hash", "sha256:" + "1" * 64, "prev_entry_hash"),
        ("seq", 4, "sequence number"),
        ("chain_id", "org_Other", "belongs to chain"),
        ("amount", "250", "not a int"),
    ],
)
def test_tampering_with_any_field_names_the_entry(field: str, value: Any, reason: str) -> None:
    entries = build_chain([500, 250, 100, 75, 60])
    entries[2][field] = value
    result = verify_export(export_of(entries))
    assert not result.ok
    assert result.broken_seq == 3
    assert reason in (result.reason or "")


def test_a_recomputed_hash_still_breaks_the_next_link() -> None:
    entries = build_chain([500, 250, 100, 75])
    entries[1]["metadata"] = '{"forged":true}'
    entries[1]["entry_hash"] = rehash(entries[1])
    result = verify_export(export_of(entries))
    assert result.broken_seq == 3
    assert "prev_entry_hash" in (result.reason or "")


def test_a_dropped_entry_is_a_gap() -> None:
    entries = build_chain([500, 250, 100, 75])
    del entries[1]
    result = verify_export(export_of(entries))
    assert (result.broken_seq, result.ok) == (2, False)


def test_reordered_entries_are_detected() -> None:
    entries = build_chain([500, 250, 100, 75])
    entries[1], entries[2] = entries[2], entries[1]
    assert verify_export(export_of(entries)).broken_seq == 2


def test_truncated_export_disagrees_with_its_declared_head() -> None:
    entries = build_chain([500, 250, 100])
    document = export_of(entries)
    document["entries"] = entries[:2]
    result = verify_export(document)
    assert not result.ok
    assert result.broken_seq == 3
    assert "declared head" in (result.reason or "")


def test_wallet_chains_may_not_go_negative() -> None:
    wallet = "wal_Verify1"
    result = verify_export(
        export_of(build_chain([100, -150], chain_id=wallet), kind="wallet", chain_id=wallet)
    )
    assert result.broken_seq == 2
    assert "negative" in (result.reason or "")
    assert verify_export(export_of(build_chain([100, -150]))).ok


def test_an_export_cannot_relabel_a_wallet_chain() -> None:
    wallet = "wal_Verify1"
    document = export_of(
        build_chain([100, -150], chain_id=wallet), kind="organisation", chain_id=wallet
    )
    with pytest.raises(ExportFormatError, match="must start with 'org_'"):
        verify_export(document)


def test_booleans_are_not_amounts() -> None:
    entries = build_chain([1])
    entries[0]["amount"] = True
    assert verify_entries(CHAIN, kind="organisation", entries=entries).broken_seq == 1


def test_non_object_entries_are_reported() -> None:
    document = export_of(build_chain([5]))
    document["entries"].append("not an entry")
    result = verify_export(document)
    assert (result.broken_seq, result.reason) == (2, "entry is not an object")


@pytest.mark.parametrize(
    "document",
    [
        {"format": "something-else"},
        {"format": EXPORT_FORMAT, "chain": "org_x", "head": {}, "entries": []},
        {
            "format": EXPORT_FORMAT,
            "chain": {"id": "org_x", "kind": "org"},
            "head": {},
            "entries": [],
        },
        {"format": EXPORT_FORMAT, "chain": {"id": "org_x", "kind": "wallet"}, "entries": []},
    ],
)
def test_documents_that_are_not_exports_are_refused(document: dict[str, Any]) -> None:
    with pytest.raises(ExportFormatError):
        verify_export(document)


def test_export_files_are_read_and_verified(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(export_of(build_chain([5, 6]))), "utf-8")
    assert verify_export_file(good).ok
    for name, content in (("bad.json", "{not json"), ("list.json", "[]")):
        path = tmp_path / name
        path.write_text(content, "utf-8")
        with pytest.raises(ExportFormatError):
            verify_export_file(path)
    with pytest.raises(ExportFormatError):
        verify_export_file(tmp_path / "missing.json")


def test_text_that_cannot_be_encoded_breaks_the_entry_instead_of_crashing() -> None:
    entries = build_chain([5, 6])
    entries[1]["metadata"] = '{"k":"\ud800"}'
    result = verify_export(export_of(entries))
    assert result.broken_seq == 2
    assert "not valid Unicode" in (result.reason or "")


@pytest.mark.parametrize(
    "content",
    ['{"format": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000, b"\xff\xfe{"],
    ids=["huge integer", "deep nesting", "not UTF-8"],
)
def test_hostile_files_are_unreadable_not_crashes(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "hostile.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, "utf-8")
    with pytest.raises(ExportFormatError):
        verify_export_file(path)


def test_result_as_dict_is_json_serialisable() -> None:
    document = export_of(build_chain([5]))
    broken = copy.deepcopy(document)
    broken["entries"][0]["amount"] = 6
    for result in (verify_export(document), verify_export(broken)):
        assert json.loads(json.dumps(result.as_dict()))["ok"] is result.ok


def _mutations(entry: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One random change to one field: a new value of the same type, or of another type."""
    name = rng.choice(sorted(entry))
    value = entry[name]
    choices: list[Any] = [None, True, 1.0, "1", [], {}, 0]
    if isinstance(value, int) and not isinstance(value, bool):
        choices += [value + rng.choice([-1, 1]), str(value), float(value)]
    if isinstance(value, str):
        cut = rng.randrange(len(value) + 1)
        choices += [value[:cut] + "é" + value[cut:], value[:cut] + "\ud800", value.upper()]
    return {**entry, name: rng.choice(choices)}


def test_the_fast_loop_and_the_plain_rules_always_agree() -> None:
    rng = random.Random(20261121)  # noqa: S311 - reproducible test data, not secrets
    for _ in range(2000):
        kind, chain = rng.choice([("organisation", CHAIN), ("wallet", "wal_Verify1")])
        entries = build_chain([rng.randrange(-50, 500) or 1 for _ in range(6)], chain_id=chain)
        position = rng.randrange(len(entries))
        entries[position] = _mutations(entries[position], rng)

        fast = ChainVerifier(chain, kind=kind)
        fast.add_all(entries)
        plain = ChainVerifier(chain, kind=kind)
        for entry in entries:
            if not plain.add(entry):
                break

        assert fast.result().as_dict() == plain.result().as_dict(), entries[position]


@pytest.mark.parametrize("broken", [None, 3, 9], ids=["intact", "first half", "second half"])
def test_two_processes_reach_the_verdict_of_one(
    monkeypatch: pytest.MonkeyPatch, broken: int | None
) -> None:
    monkeypatch.setattr(chain_module, "PARALLEL_MINIMUM", 4)
    entries = build_chain([500, 250, -100, 75, 60, 40, 30, 20, 10, 5, 1])
    if broken is not None:
        entries[broken - 1]["metadata"] = '{"forged":true}'
    checked: list[int] = []

    alone = verify_export(export_of(copy.deepcopy(entries)))
    in_two = verify_export(
        export_of(entries), workers=2, progress=lambda done, _: checked.append(done)
    )

    assert in_two.as_dict() == alone.as_dict()
    assert in_two.ok is (broken is None)
    assert checked


def test_two_processes_cope_with_an_entry_the_child_cannot_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chain_module, "PARALLEL_MINIMUM", 4)
    entries: list[Any] = build_chain([500, 250, -100, 75, 60, 40])
    entries[1]["currency"] = ["EUR"]  # unhashable: the child gives up, the parent decides

    result = verify_export(export_of(entries), workers=2)

    assert (result.ok, result.broken_seq) == (False, 2)


def test_verify_entries_in_two_processes_matches_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_module, "PARALLEL_MINIMUM", 4)
    entries = build_chain([500, 250, -100, 75, 60, 40, 30, 20])
    entries[6]["amount"] = 31

    alone = verify_entries(CHAIN, kind="organisation", entries=entries)
    in_two = verify_entries(CHAIN, kind="organisation", entries=entries, workers=2)

    assert in_two.as_dict() == alone.as_dict()
    assert in_two.broken_seq == 7


class Row:
    """Like an asyncpg record: values by position and by name, keys() in column order."""

    def __init__(self, entry: dict[str, Any], columns: list[str]) -> None:
        self.columns, self.values = columns, [entry[name] for name in columns]

    def keys(self) -> list[str]:
        return self.columns

    def get(self, name: str) -> Any:
        return self.values[self.columns.index(name)] if name in self.columns else None

    def __getitem__(self, name: str) -> Any:
        return self.values[self.columns.index(name)]

    def __iter__(self) -> Any:
        return iter(self.values)


def test_database_rows_read_by_position_get_the_verdict_of_names() -> None:
    rng = random.Random(20261122)  # noqa: S311 - reproducible test data, not secrets
    export_order = list(build_chain([1])[0])
    assert chain_module._row_type([Row(build_chain([1])[0], export_order)]) is Row
    for _ in range(500):
        entries = build_chain([rng.randrange(-50, 500) or 1 for _ in range(6)])
        position = rng.randrange(len(entries))
        entries[position] = _mutations(entries[position], rng)
        shuffled = rng.sample(export_order, len(export_order))
        # The first row decides that rows are read by position; later ones may be laid out
        # otherwise (another query's records), and must still be judged by their names.
        rows = [Row(entries[0], export_order)] + [
            Row(entry, rng.choice([export_order, shuffled])) for entry in entries[1:]
        ]

        by_rows = ChainVerifier(CHAIN, kind="organisation")
        by_rows.add_all(rows)
        plain = ChainVerifier(CHAIN, kind="organisation")
        for entry in entries:
            if not plain.add(entry):
                break

        assert by_rows.result().as_dict() == plain.result().as_dict(), entries[position]


# -- Streamed files (docs/ledger-format.md §4.2): the same verdicts, whatever the reading ------


def _tamperings(entries: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Ways to break a chain around its middle, where the second process starts."""
    cases: list[tuple[str, list[dict[str, Any]]]] = [("intact", entries)]
    for position in range(len(entries) // 2 - 3, len(entries) // 2 + 4):
        for name, change in (
            ("hash", lambda e: e.update(metadata='{"forged":true}')),
            ("balance", lambda e: e.update(balance_after=e["balance_after"] + 1)),
            ("link", lambda e: e.update(prev_entry_hash="sha256:" + "0" * 64)),
            ("seq", lambda e: e.update(seq=e["seq"] + 1)),
            ("currency", lambda e: e.update(currency="JPY")),
        ):
            changed = copy.deepcopy(entries)
            change(changed[position])
            if name != "hash":
                for later in range(position, len(changed)):  # a forger's recomputed hashes
                    if later > position:
                        changed[later]["prev_entry_hash"] = changed[later - 1]["entry_hash"]
                    changed[later]["entry_hash"] = rehash(changed[later])
            cases.append((f"{name}@{position + 1}", changed))
    return cases


def test_a_file_read_in_two_processes_gets_the_verdict_of_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parse_module, "_CHUNK", 512)
    monkeypatch.setattr(export_module, "PARALLEL_FILE_MINIMUM", 0)
    amounts = [((-1) ** n) * (n % 7 + 1) * 10 + 100 for n in range(60)]
    entries = build_chain(amounts)
    for n in range(1, len(entries), 3):  # several currencies, each with its own balance
        entries[n]["currency"] = "USD"
    balances: dict[str, int] = {}
    for n, entry in enumerate(entries):
        balances[entry["currency"]] = balances.get(entry["currency"], 0) + entry["amount"]
        entry["balance_after"] = balances[entry["currency"]]
        entry["prev_entry_hash"] = entries[n - 1]["entry_hash"] if n else None
        entry["entry_hash"] = rehash(entry)
    merged: list[int] = []
    merge = export_module._StreamedExport._merge

    def counted(self: Any, verifier: Any, state: Any, *, first: int) -> bool:
        merged.append(first)
        return merge(self, verifier, state, first=first)

    monkeypatch.setattr(export_module._StreamedExport, "_merge", counted)
    for name, changed in _tamperings(entries):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(export_of(changed), separators=(",", ":")), "utf-8")
        alone = verify_export_file(path, workers=1)
        in_two = verify_export_file(path, workers=2)
        assert in_two.as_dict() == alone.as_dict(), name
        assert alone.ok is (name == "intact")
    assert len(merged) > 20


def test_a_file_is_read_in_small_chunks_with_the_same_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = build_chain([500, 250, -100, 75])
    entries[2]["metadata"] = json.dumps({"name": "Zoë 🎉 日本"}, ensure_ascii=False)
    for n in range(2, 4):
        entries[n]["prev_entry_hash"] = entries[n - 1]["entry_hash"]
        entries[n]["entry_hash"] = rehash(entries[n])
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_of(entries), ensure_ascii=False, indent=1), "utf-8")
    expected = verify_export_file(path).as_dict()
    for size in (1, 2, 3, 5):  # chunk edges inside multi-byte characters and every token
        monkeypatch.setattr(parse_module, "_CHUNK", size)
        assert verify_export_file(path).as_dict() == expected
    assert expected["ok"]


def test_an_export_larger_than_a_value_limit_is_fine_but_a_huge_value_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parse_module, "MAX_VALUE_CHARS", 2000)
    monkeypatch.setattr(parse_module, "_CHUNK", 256)
    entries = build_chain([5] * 40)  # about 20 kB in all, no value over 2,000 characters
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export_of(entries)), "utf-8")
    assert verify_export_file(path).ok
    entries[3]["metadata"] = json.dumps({"long": "x" * 5000})
    path.write_text(json.dumps(export_of(entries)), "utf-8")
    with pytest.raises(ExportFormatError, match="longer than"):
        verify_export_file(path)
