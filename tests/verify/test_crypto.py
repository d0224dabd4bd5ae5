from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from amply.verify.crypto import canonical_preimage, entry_hash, format_timestamp

VECTORS_FILE = Path(__file__).parents[1] / "vectors" / "ledger_entry_hashes.json"


def load_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text("utf-8"))["vectors"]
    return vectors


@pytest.mark.parametrize("vector", load_vectors(), ids=lambda vector: vector["description"])
def test_committed_vectors_hash_identically_in_python(vector: dict[str, Any]) -> None:
    entry = vector["entry"]
    preimage = canonical_preimage(entry)
    assert preimage == vector["preimage_utf8"].encode("utf-8")
    assert hashlib.sha256(preimage).hexdigest() == vector["preimage_sha256_hex"]
    assert entry_hash(entry) == entry["entry_hash"]


def test_vectors_cover_non_ascii_and_emoji_metadata() -> None:
    metadata = [vector["entry"]["metadata"] for vector in load_vectors()]
    assert any("ö" in text for text in metadata)
    assert any("🍕" in text for text in metadata)


def test_netstring_lengths_count_utf8_bytes_not_characters() -> None:
    entry = load_vectors()[0]["entry"] | {"metadata": '{"n":"🍕"}'}
    preimage = canonical_preimage(entry)
    # 9 characters, 12 bytes: the emoji is 4 bytes of UTF-8.
    assert b'12:{"n":"\xf0\x9f\x8d\x95"},' in preimage


def test_every_field_changes_the_hash() -> None:
    base = load_vectors()[1]["entry"]
    original = entry_hash(base)
    changes = {
        "chain_id": "org_other",
        "seq": base["seq"] + 1,
        "id": "led_other",
        "type": "donation_refunded",
        "amount": base["amount"] - 1,
        "currency": "USD",
        "balance_after": base["balance_after"] + 1,
        "metadata": base["metadata"] + " ",
        "journal_id": "jrn_other",
        "created_at": "2026-11-21T09:30:01.250001Z",
        "prev_entry_hash": None,
    }
    assert set(changes) == set(base) - {"entry_hash"}
    for field, value in changes.items():
        assert entry_hash(base | {field: value}) != original, field


def test_moving_characters_between_fields_changes_the_hash() -> None:
    base = load_vectors()[0]["entry"]
    moved = base | {"chain_id": base["chain_id"] + "l", "id": base["id"][1:]}
    assert entry_hash(moved) != entry_hash(base)


def test_timestamps_format_in_utc_with_six_fractional_digits() -> None:
    moment = datetime(2026, 11, 21, 10, 30, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-11-21T09:30:00.000005Z"
    assert format_timestamp(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000000Z"


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2026, 1, 1))


@pytest.mark.parametrize("field", ["chain_id", "id", "type", "journal_id"])
def test_non_ascii_outside_metadata_is_still_counted_in_bytes(field: str) -> None:
    value = "ünïcode🍕"
    entry = load_vectors()[2]["entry"] | {field: value}
    netstring = f"{len(value.encode())}:{value},".encode()
    assert len(value.encode()) == 13
    assert canonical_preimage(entry).count(netstring) == 1
