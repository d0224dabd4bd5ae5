"""Signed checkpoints (c2sp.org/signed-note, c2sp.org/tlog-checkpoint) and what they add to the
offline verifier: a signed export, a later export that extends an earlier one, donor receipts."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from hashlib import sha256
from typing import Any, Final

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from amply.ledger.signing import NoteSigner
from amply.verify import (
    RECEIPT_FORMAT,
    CheckpointError,
    ExportFormatError,
    VerifierKey,
    checkpoint_body,
    key_id,
    parse_checkpoint,
    receipt_commitment,
    verify_export,
    verify_extension,
    verify_receipt,
)
from tests.verify.test_verify import CHAIN, build_chain, export_of, rehash

CHECKPOINT_TIME: Final = "2026-11-21T09:30:00.000000Z"
TIME: Final = f"time {CHECKPOINT_TIME}\n"
KEY_NAME: Final = "amply.test"
# Module-level keys: the conftest's session fixture named ``signer`` reads the app's key from the
# environment, which these offline tests do not need.
GENUINE: Final = NoteSigner.generate(KEY_NAME)
FORGER: Final = NoteSigner.generate(KEY_NAME)  # same name, another key

AMOUNTS: Final = (500, 250, -100, 75, 60, -40, 30)
FIRST, MIDDLE, LAST = 0, len(AMOUNTS) // 2, len(AMOUNTS) - 1

DONATION_ID: Final = "don_X"
SALT: Final = "5a" * 32
SECRET: Final = "c3" * 32

# The example key and note of Go's golang.org/x/mod/sumdb/note (its note_test.go).
GO_SIGNER_KEY: Final = (
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
)
GO_VERIFIER_KEY: Final = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT: Final = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE: Final = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


# -- Helpers -------------------------------------------------------------------------------------


def chain(amounts: tuple[int, ...] = AMOUNTS, *, chain_id: str = CHAIN) -> list[dict[str, Any]]:
    return build_chain(list(amounts), chain_id=chain_id)


def relink(entries: list[dict[str, Any]], start: int) -> list[dict[str, Any]]:
    """Recompute every link and hash from ``entries[start]`` on: an internally valid chain."""
    for position in range(start, len(entries)):
        entry = entries[position]
        entry["prev_entry_hash"] = entries[position - 1]["entry_hash"] if position else None
        entry["entry_hash"] = rehash(entry)
    return entries


def checkpoint_over(
    entries: list[dict[str, Any]], signer: NoteSigner, *, chain_id: str | None = None
) -> dict[str, str]:
    """A checkpoint signed by ``signer`` over the last of ``entries``."""
    head = entries[-1]
    body = checkpoint_body(
        origin=f"{KEY_NAME}/ledger/{chain_id or head['chain_id']}",
        size=head["seq"],
        root_hash=head["entry_hash"],
        time=CHECKPOINT_TIME,
    )
    return {"note": signer.sign(body), "key": signer.verifier_key.encode()}


def signed_export(entries: list[dict[str, Any]], signer: NoteSigner) -> dict[str, Any]:
    """An export of ``entries`` with an embedded checkpoint over its head."""
    document = export_of(entries, chain_id=entries[0]["chain_id"])
    document["checkpoint"] = checkpoint_over(entries, signer)
    return document


def set_head(document: dict[str, Any]) -> dict[str, Any]:
    """Make the export's declared head agree with its (changed) entries."""
    last = document["entries"][-1]
    document["head"] = {"seq": last["seq"], "entry_hash": last["entry_hash"]}
    return document


def pinned() -> list[VerifierKey]:
    return [GENUINE.verifier_key]


def reason_of(result: Any) -> str:
    reason = result.reason
    assert isinstance(reason, str)
    return reason


def forged_splice() -> dict[str, Any]:
    """An export whose middle entry was rewritten and every later hash recomputed: the hash
    chain holds, only the genuine checkpoint (over the original head) can tell."""
    document = signed_export(chain(), GENUINE)
    entries = document["entries"]
    entries[MIDDLE]["metadata"] = json.dumps({"n": MIDDLE + 1, "name": "Mallory"})
    relink(entries, MIDDLE)
    return set_head(document)


def signature_line(note: str) -> str:
    return note.rstrip("\n").rpartition("\n")[2]


def with_signature(note: str, transform: Callable[[bytearray], None]) -> str:
    """``note`` with its (single) signature's raw bytes passed through ``transform``."""
    line = signature_line(note)
    prefix, _, encoded = line.rpartition(" ")
    raw = bytearray(base64.b64decode(encoded))
    transform(raw)
    new_line = f"{prefix} {base64.b64encode(bytes(raw)).decode()}"
    assert len(new_line) == len(line)
    return note.replace(line, new_line)


# -- A signed export -----------------------------------------------------------------------------


def test_an_honest_signed_export_verifies_with_the_pinned_key() -> None:
    result = verify_export(signed_export(chain(), GENUINE), keys=pinned())
    assert result.ok, result.reason
    assert result.checkpoint is not None
    assert result.checkpoint["pinned"] is True
    assert result.checkpoint["key"] == GENUINE.verifier_key.encode()
    assert result.checkpoint["size"] == len(AMOUNTS)
    assert result.checkpoint["origin"] == f"{KEY_NAME}/ledger/{CHAIN}"
    assert result.checkpoint["time"] == CHECKPOINT_TIME
    verdict = result.verdict()
    assert verdict.startswith("OK:")
    assert GENUINE.verifier_key.encode() in verdict
    assert "not pinned" not in verdict


def test_without_keys_the_embedded_key_is_used_and_the_verdict_says_not_pinned() -> None:
    result = verify_export(signed_export(chain(), GENUINE))
    assert result.ok, result.reason
    assert result.checkpoint is not None
    assert result.checkpoint["pinned"] is False
    assert result.checkpoint["key"] == GENUINE.verifier_key.encode()
    assert "not pinned" in result.verdict()


def test_a_signed_export_survives_a_json_round_trip() -> None:
    document = json.loads(json.dumps(signed_export(chain(), GENUINE), ensure_ascii=False))
    assert verify_export(document, keys=pinned()).ok


ENTRY_FIELDS: Final = (
    "chain_id",
    "seq",
    "id",
    "type",
    "amount",
    "currency",
    "balance_after",
    "metadata",
    "journal_id",
    "created_at",
    "prev_entry_hash",
    "entry_hash",
)


def changed_variants(value: Any) -> list[Any]:
    """The value with one character changed (first, middle, last), or an int plus one."""
    if type(value) is int:
        return [value + 1]
    if value is None:  # the first entry links to nothing; forge a link to something
        return ["sha256:" + "0" * 64]
    assert isinstance(value, str)
    variants = []
    for index in sorted({0, len(value) // 2, len(value) - 1}):
        replacement = "X" if value[index] != "X" else "Y"
        variants.append(value[:index] + replacement + value[index + 1 :])
    return variants


@pytest.mark.parametrize("position", [FIRST, MIDDLE, LAST], ids=["first", "middle", "last"])
@pytest.mark.parametrize("field", ENTRY_FIELDS)
def test_changing_any_single_character_of_any_field_of_any_entry_fails(
    field: str, position: int
) -> None:
    original = signed_export(chain(), GENUINE)
    assert verify_export(original, keys=pinned()).ok
    variants = changed_variants(original["entries"][position][field])
    assert variants
    for value in variants:
        document = copy.deepcopy(original)
        assert document["entries"][position][field] != value
        document["entries"][position][field] = value
        for keys in (pinned(), []):
            result = verify_export(document, keys=keys)
            assert not result.ok, (field, position, value)
            assert result.broken_seq == position + 1, (field, position, value, result.reason)


def test_a_dropped_entry_fails() -> None:
    document = signed_export(chain(), GENUINE)
    del document["entries"][MIDDLE]
    result = verify_export(document, keys=pinned())
    assert not result.ok
    assert result.broken_seq == MIDDLE + 1


def test_two_swapped_entries_fail() -> None:
    document = signed_export(chain(), GENUINE)
    entries = document["entries"]
    entries[MIDDLE], entries[MIDDLE + 1] = entries[MIDDLE + 1], entries[MIDDLE]
    result = verify_export(document, keys=pinned())
    assert not result.ok
    assert result.broken_seq == MIDDLE + 1


def test_a_truncated_export_with_a_matching_head_fails_the_checkpoint() -> None:
    document = signed_export(chain(), GENUINE)
    document["entries"] = document["entries"][:-1]
    set_head(document)
    unsigned = {key: value for key, value in document.items() if key != "checkpoint"}
    alone = verify_export(unsigned)  # the chain itself holds, but nothing signs it
    assert (alone.entries_checked, alone.broken_seq) == (len(AMOUNTS) - 1, None)
    assert "no signed checkpoint" in reason_of(alone)
    for keys in (pinned(), []):
        result = verify_export(document, keys=keys)
        assert not result.ok
        assert result.broken_seq is None
        assert "checkpoint" in reason_of(result)


def test_a_forged_splice_with_recomputed_hashes_fails_the_checkpoint() -> None:
    document = forged_splice()
    unsigned = {key: value for key, value in document.items() if key != "checkpoint"}
    alone = verify_export(unsigned)  # every hash, link and balance holds; nothing signs it
    assert (alone.entries_checked, alone.broken_seq) == (len(AMOUNTS), None)
    assert "no signed checkpoint" in reason_of(alone)
    for keys in (pinned(), []):
        result = verify_export(document, keys=keys)
        assert not result.ok
        assert result.broken_seq is None
        reason = reason_of(result)
        assert "signed checkpoint" in reason
        assert "does not match the export's head" in reason


def test_a_forged_splice_re_signed_by_a_forger_fails_when_the_genuine_key_is_pinned() -> None:
    document = forged_splice()
    document["checkpoint"] = checkpoint_over(document["entries"], FORGER)
    result = verify_export(document, keys=pinned())
    assert not result.ok
    assert "not signed by a trusted key" in reason_of(result)
    assert f"{KEY_NAME}+{FORGER.verifier_key.key_id.hex()}" in reason_of(result)


def test_a_forger_re_signed_export_passes_unpinned_but_names_the_forgers_key() -> None:
    # Why an auditor pins the key: the embedded key is whoever made the file.
    document = forged_splice()
    document["checkpoint"] = checkpoint_over(document["entries"], FORGER)
    result = verify_export(document)
    assert result.ok
    assert result.checkpoint is not None
    assert result.checkpoint["pinned"] is False
    assert result.checkpoint["key"] == FORGER.verifier_key.encode()
    assert result.checkpoint["key"] != GENUINE.verifier_key.encode()


def test_a_forger_signature_claiming_the_genuine_key_id_does_not_verify() -> None:
    document = forged_splice()
    checkpoint = checkpoint_over(document["entries"], FORGER)

    def claim_genuine_id(raw: bytearray) -> None:
        raw[:4] = GENUINE.verifier_key.key_id

    checkpoint["note"] = with_signature(checkpoint["note"], claim_genuine_id)
    document["checkpoint"] = checkpoint
    result = verify_export(document, keys=pinned())
    assert not result.ok
    assert "does not verify" in reason_of(result)


def test_a_tampered_signature_does_not_verify_with_the_pinned_key() -> None:
    document = signed_export(chain(), GENUINE)

    def flip_a_signature_byte(raw: bytearray) -> None:
        raw[4 + 10] ^= 0x01  # past the 4-byte key id

    note = document["checkpoint"]["note"]
    tampered = with_signature(note, flip_a_signature_byte)
    assert tampered != note
    assert len(tampered) == len(note)
    document["checkpoint"]["note"] = tampered
    for keys in (pinned(), []):
        result = verify_export(document, keys=keys)
        assert not result.ok
        assert "does not verify" in reason_of(result)


def test_a_checkpoint_for_another_chain_fails() -> None:
    entries = chain()
    document = signed_export(entries, GENUINE)
    document["checkpoint"] = checkpoint_over(entries, GENUINE, chain_id="org_Other")
    result = verify_export(document, keys=pinned())
    assert not result.ok
    assert "another chain" in reason_of(result)


def test_a_non_empty_export_without_a_checkpoint_never_verifies() -> None:
    # Pinned or not: a forger who strips the checkpoint gets no clean OK (§4.3).
    document = export_of(chain())
    del document["checkpoint"]
    for keys in (pinned(), []):
        result = verify_export(document, keys=keys)
        assert (result.ok, result.broken_seq) == (False, None)
        assert "no signed checkpoint" in reason_of(result)


def test_an_empty_export_that_carries_a_checkpoint_fails() -> None:
    document = export_of([])
    document["checkpoint"] = checkpoint_over(chain(), GENUINE)
    result = verify_export(document)
    assert (result.ok, result.broken_seq) == (False, None)
    assert "empty export carries no checkpoint" in reason_of(result)


def test_an_empty_export_needs_no_checkpoint_even_with_pinned_keys() -> None:
    assert verify_export(export_of([]), keys=pinned()).ok


def test_a_checkpoint_that_is_not_an_object_with_a_note_fails() -> None:
    document = signed_export(chain(), GENUINE)
    document["checkpoint"] = {"key": GENUINE.verifier_key.encode()}
    with pytest.raises(ExportFormatError, match="checkpoint must be an object with a note"):
        verify_export(document, keys=pinned())


def test_an_unpinned_checkpoint_with_a_malformed_embedded_key_fails() -> None:
    document = signed_export(chain(), GENUINE)
    document["checkpoint"]["key"] = "not a key"
    result = verify_export(document)
    assert not result.ok
    assert "malformed verifier key" in reason_of(result)


def test_any_one_of_several_pinned_keys_may_have_signed() -> None:
    other = NoteSigner.generate("amply.old")
    result = verify_export(
        signed_export(chain(), GENUINE), keys=[other.verifier_key, GENUINE.verifier_key]
    )
    assert result.ok
    assert result.checkpoint is not None
    assert result.checkpoint["key"] == GENUINE.verifier_key.encode()


# -- Keys ---------------------------------------------------------------------------------------


SHORT_KEY: Final = base64.b64encode(b"\x01" + bytes(31)).decode()
LONG_KEY: Final = base64.b64encode(b"\x01" + bytes(33)).decode()
NOT_ED25519_KEY: Final = base64.b64encode(b"\x02" + bytes(32)).decode()
ZERO_KEY: Final = base64.b64encode(b"\x01" + bytes(32)).decode()


def test_a_verifier_key_round_trips_through_its_text_form() -> None:
    key = GENUINE.verifier_key
    text = key.encode()
    assert VerifierKey.parse(text) == key
    assert VerifierKey.parse(f"  {text}\n") == key
    assert VerifierKey.parse(text).encode() == text


def test_a_verifier_key_whose_id_does_not_match_is_refused() -> None:
    name, hex_id, encoded = GENUINE.verifier_key.encode().split("+", 2)
    wrong_id = f"{int(hex_id, 16) ^ 1:08x}"
    with pytest.raises(CheckpointError, match="id does not match"):
        VerifierKey.parse(f"{name}+{wrong_id}+{encoded}")
    with pytest.raises(CheckpointError, match="id does not match"):
        VerifierKey.parse(f"another.name+{hex_id}+{encoded}")


@pytest.mark.parametrize(
    "text",
    [
        f"{KEY_NAME}+00000000+not*base64!",
        f"{KEY_NAME}+00000000+{SHORT_KEY}",
        f"{KEY_NAME}+00000000+{LONG_KEY}",
        f"{KEY_NAME}+00000000+{NOT_ED25519_KEY}",
        f"+00000000+{ZERO_KEY}",
        "",
        "just-a-name",
    ],
    ids=[
        "not base64",
        "too short",
        "too long",
        "not Ed25519",
        "no name",
        "empty",
        "no parts",
    ],
)
def test_malformed_verifier_keys_are_refused(text: str) -> None:
    with pytest.raises(CheckpointError):
        VerifierKey.parse(text)


def test_a_signer_key_round_trips_through_its_text_form() -> None:
    text = GENUINE.encode()
    assert text.startswith(f"PRIVATE+KEY+{KEY_NAME}+{GENUINE.verifier_key.key_id.hex()}+")
    parsed = NoteSigner.parse(text)
    assert parsed.encode() == text
    assert parsed.verifier_key == GENUINE.verifier_key
    body = checkpoint_body(
        origin=f"{KEY_NAME}/ledger/{CHAIN}", size=1, root_hash="00" * 32, time=CHECKPOINT_TIME
    )
    assert parsed.sign(body) == GENUINE.sign(body)  # Ed25519 is deterministic


@pytest.mark.parametrize(
    "text",
    [
        "garbage",
        "",
        "PRIVATE+KEY+",
        f"PRIVATE+KEY+{KEY_NAME}+00000000+not*base64!",
        f"PRIVATE+KEY+{KEY_NAME}+00000000+{SHORT_KEY}",
        GENUINE.verifier_key.encode(),  # the public half is not a signer key
        GENUINE.encode().replace(f"+{GENUINE.verifier_key.key_id.hex()}+", "+00000000+"),
    ],
    ids=["garbage", "empty", "prefix only", "not base64", "too short", "public key", "wrong id"],
)
def test_malformed_signer_keys_are_refused(text: str) -> None:
    with pytest.raises(CheckpointError):
        NoteSigner.parse(text)


def test_a_key_name_with_a_space_or_plus_is_refused() -> None:
    for name in ("amply test", "amply+test", ""):
        with pytest.raises(CheckpointError):
            NoteSigner.generate(name)


def test_the_key_id_follows_the_c2sp_rule() -> None:
    key = GENUINE.verifier_key
    expected = sha256(KEY_NAME.encode() + b"\n" + b"\x01" + key.public_key).digest()[:4]
    assert key_id(KEY_NAME, key.public_key) == expected
    assert key.key_id == expected
    assert key.encode().split("+")[1] == expected.hex()
    note = GENUINE.sign("hello\n")
    raw = base64.b64decode(signature_line(note).rpartition(" ")[2])
    assert raw[:4] == expected


def test_the_go_reference_keys_and_note_are_reproduced_byte_for_byte() -> None:
    go_signer = NoteSigner.parse(GO_SIGNER_KEY)
    assert go_signer.name == "PeterNeumann"
    assert go_signer.encode() == GO_SIGNER_KEY
    assert go_signer.verifier_key.encode() == GO_VERIFIER_KEY
    assert VerifierKey.parse(GO_VERIFIER_KEY) == go_signer.verifier_key
    assert go_signer.sign(GO_TEXT) == GO_NOTE
    raw = base64.b64decode(signature_line(GO_NOTE).rpartition(" ")[2])
    assert go_signer.verifier_key.verifies(raw[4:], GO_TEXT.encode())


def test_a_note_signature_verifies_with_the_raw_ed25519_api() -> None:
    entries = chain()
    note = checkpoint_over(entries, GENUINE)["note"]
    text, blank, signatures = note.partition("\n\n")
    assert blank
    signed_text = (text + "\n").encode()  # up to and including the newline before the blank
    lines = signatures.rstrip("\n").split("\n")
    assert len(lines) == 1
    assert lines[0].startswith("\u2014 amply.test ")
    raw = base64.b64decode(lines[0].split(" ")[2], validate=True)
    _name, _id, key_text = GENUINE.verifier_key.encode().split("+", 2)
    public = base64.b64decode(key_text)
    assert public[0] == 0x01
    assert raw[:4] == sha256(b"amply.test\n\x01" + public[1:]).digest()[:4]
    verifier = Ed25519PublicKey.from_public_bytes(public[1:])
    verifier.verify(raw[4:], signed_text)  # raises if it does not hold
    with pytest.raises(InvalidSignature):
        verifier.verify(raw[4:], signed_text.replace(b"\n7\n", b"\n8\n"))
    # What the note says, checked independently too.
    origin, size, root, time = text.split("\n")
    assert (origin, size, time) == (f"amply.test/ledger/{CHAIN}", "7", f"time {CHECKPOINT_TIME}")
    assert "sha256:" + base64.b64decode(root).hex() == entries[-1]["entry_hash"]


# -- Parsing checkpoints ------------------------------------------------------------------------

ROOT: Final = base64.b64encode(bytes(range(32))).decode()
SIGNATURE: Final = signature_line(GENUINE.sign("x\n"))


def note_of(body: str, *, signature: str = SIGNATURE) -> str:
    return f"{body}\n{signature}\n"


def test_a_checkpoint_note_parses() -> None:
    entries = chain()
    checkpoint = parse_checkpoint(checkpoint_over(entries, GENUINE)["note"])
    assert checkpoint.origin == f"{KEY_NAME}/ledger/{CHAIN}"
    assert checkpoint.chain_id == CHAIN
    assert checkpoint.size == len(entries)
    assert checkpoint.root_hash == entries[-1]["entry_hash"]
    assert checkpoint.time == CHECKPOINT_TIME
    assert checkpoint.body.endswith(f"time {CHECKPOINT_TIME}\n")
    assert len(checkpoint.signatures) == 1
    name, signer_id, signature = checkpoint.signatures[0]
    assert (name, signer_id, len(signature)) == (KEY_NAME, GENUINE.verifier_key.key_id, 64)
    assert checkpoint.signer([GENUINE.verifier_key]) == GENUINE.verifier_key
    with pytest.raises(CheckpointError, match="not signed by a trusted key"):
        checkpoint.signer([FORGER.verifier_key])


@pytest.mark.parametrize(
    "body",
    [
        f"o/ledger/{CHAIN}\n3\n{ROOT}\n",
        f"o/ledger/{CHAIN}\n3\n{ROOT}\ntime {CHECKPOINT_TIME}\nextra\n",
        f"o/ledger/{CHAIN}\n3\n{ROOT}\nextra\n",
        f"o/ledger/{CHAIN}\n3\n{ROOT}\nextra {CHECKPOINT_TIME}\n",
        f"o/ledger/{CHAIN}\n3\n{ROOT}\ntime 2026-11-21T09:30:00Z\n",
        f"o/ledger/{CHAIN}\n3\n{ROOT}\ntime 2026-13-21T09:30:00.000000Z\n",
    ],
    ids=["three lines", "five lines", "no time line", "not a time line", "short time", "month 13"],
)
def test_a_checkpoint_is_exactly_four_lines_ending_in_its_time(body: str) -> None:
    with pytest.raises(CheckpointError, match=r"four lines|time"):
        parse_checkpoint(note_of(body))


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (f"o\n3\n{ROOT}\n{SIGNATURE}\n", "blank line"),
        (f"o\n3\n{ROOT}\n\n{SIGNATURE}", "blank line"),
        (note_of(f"o\n03\n{ROOT}\n{TIME}"), "not a decimal number"),
        (note_of(f"o\n-3\n{ROOT}\n{TIME}"), "not a decimal number"),
        (note_of(f"o\n+3\n{ROOT}\n{TIME}"), "not a decimal number"),
        (note_of(f"o\n\u0663\n{ROOT}\n{TIME}"), "not a decimal number"),
        (note_of(f"o\n3\n{base64.b64encode(bytes(31)).decode()}\n{TIME}"), "not 32 bytes"),
        (note_of(f"o\n3\n{base64.b64encode(bytes(33)).decode()}\n{TIME}"), "not 32 bytes"),
        (note_of(f"o\n3\nnot*base64\n{TIME}"), "not base64"),
        (note_of(f"o\t\n3\n{ROOT}\n{TIME}"), "control characters"),
        (note_of(f"o\r\n3\n{ROOT}\n{TIME}"), "control characters"),
        (note_of(f"o\n3\n{ROOT}\n\x00time x\n"), "control characters"),
        (note_of(f"o\n3\n{TIME}"), "four lines"),
        (note_of(f"o\n3\n{ROOT}\n\nextra\n"), "four lines"),
        (note_of(f"o\n3\n{ROOT}\n{TIME}", signature=SIGNATURE.replace("\u2014", "-")), "signature"),
        (note_of(f"o\n3\n{ROOT}\n{TIME}", signature=SIGNATURE[2:]), "signature"),
        (note_of(f"o\n3\n{ROOT}\n{TIME}", signature="\u2014 amply.test AAAA"), "malformed note"),
        (note_of(f"o\n3\n{ROOT}\n{TIME}", signature="\u2014 amply.test not*base64"), "not base64"),
        (
            note_of(f"o\n3\n{ROOT}\n{TIME}", signature=SIGNATURE.replace(KEY_NAME, "amply+test")),
            "malformed note",
        ),
    ],
    ids=[
        "no blank line",
        "no final newline",
        "size with a leading zero",
        "negative size",
        "size with a plus sign",
        "size in non-ASCII digits",
        "31-byte root hash",
        "33-byte root hash",
        "root hash not base64",
        "tab",
        "carriage return",
        "NUL",
        "no root hash line",
        "empty body line",
        "hyphen instead of em dash",
        "no em dash",
        "signature too short",
        "signature not base64",
        "plus in signer name",
    ],
)
def test_malformed_checkpoints_are_refused(note: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint(note)


def test_a_note_body_must_be_lines_ending_in_newlines_to_be_signed() -> None:
    for text in ("no newline", "two\n\nparagraphs\n", ""):
        with pytest.raises(CheckpointError):
            GENUINE.sign(text)


# -- A later export extends an earlier one -------------------------------------------------------


def test_an_honest_extension_verifies() -> None:
    entries = chain((500, 250, -100, 75, 60, 40))
    old = signed_export(copy.deepcopy(entries[:3]), GENUINE)
    new = signed_export(entries, GENUINE)
    result = verify_extension(old, new, keys=pinned())
    assert result.ok, result.reason
    assert result.extends == {"seq": 3, "entry_hash": entries[2]["entry_hash"]}
    assert result.head_seq == 6
    assert "extends the earlier export at seq 3" in result.verdict()


def test_an_export_extends_an_identical_one() -> None:
    document = signed_export(chain(), GENUINE)
    result = verify_extension(document, copy.deepcopy(document), keys=pinned())
    assert result.ok
    assert result.extends == {"seq": len(AMOUNTS), "entry_hash": document["head"]["entry_hash"]}


def test_a_rewritten_history_fails_the_extension_at_the_first_rewritten_entry() -> None:
    amounts = (500, 250, -100, 75, 60, 40)
    old = signed_export(chain(amounts)[:3], GENUINE)
    rewritten = chain(amounts)
    rewritten[1]["metadata"] = json.dumps({"n": 2, "name": "Mallory"})
    relink(rewritten, 1)
    new = signed_export(rewritten, GENUINE)
    assert verify_export(old, keys=pinned()).ok
    assert verify_export(new, keys=pinned()).ok  # each is valid and signed on its own
    result = verify_extension(old, new, keys=pinned())
    assert not result.ok
    assert result.broken_seq == 2
    reason = reason_of(result)
    assert "rewritten" in reason
    assert "Both exports carry valid signed checkpoints" in reason


def test_a_later_export_shorter_than_the_earlier_one_is_truncated() -> None:
    entries = chain((500, 250, -100, 75, 60, 40))
    old = signed_export(entries, GENUINE)
    new = signed_export(copy.deepcopy(entries[:3]), GENUINE)
    result = verify_extension(old, new, keys=pinned())
    assert not result.ok
    assert "truncated" in reason_of(result)


def test_exports_of_different_chains_do_not_extend_each_other() -> None:
    old = signed_export(chain((500, 250)), GENUINE)
    new = signed_export(chain((500, 250, 75), chain_id="org_Other"), GENUINE)
    result = verify_extension(old, new, keys=pinned())
    assert not result.ok
    assert "different chains" in reason_of(result)


def test_an_earlier_export_that_does_not_verify_fails_the_extension() -> None:
    entries = chain((500, 250, -100, 75, 60, 40))
    old = signed_export(copy.deepcopy(entries[:3]), GENUINE)
    old["entries"][1]["amount"] += 1
    new = signed_export(entries, GENUINE)
    result = verify_extension(old, new, keys=pinned())
    assert not result.ok
    assert "the earlier export does not verify" in reason_of(result)


def test_a_later_export_that_does_not_verify_fails_the_extension() -> None:
    entries = chain((500, 250, -100, 75, 60, 40))
    old = signed_export(copy.deepcopy(entries[:3]), GENUINE)
    new = forged_splice()
    result = verify_extension(old, new, keys=pinned())
    assert not result.ok
    assert "signed checkpoint" in reason_of(result)


def test_an_extension_signed_by_a_forger_fails_when_the_genuine_key_is_pinned() -> None:
    entries = chain((500, 250, -100, 75, 60, 40))
    old = signed_export(copy.deepcopy(entries[:3]), GENUINE)
    new = signed_export(entries, FORGER)
    result = verify_extension(old, new, keys=pinned())
    assert not result.ok
    assert "not signed by a trusted key" in reason_of(result)


# -- Donor receipts ------------------------------------------------------------------------------


def receipt_chain(
    amounts: tuple[int, ...] = AMOUNTS, *, salt: str = SALT, secret: str = SECRET
) -> list[dict[str, Any]]:
    """A chain whose entry 2 records donation ``don_X`` with its salted commitment."""
    entries = chain(amounts)
    assert entries[1]["type"] == "donation_received"
    commitment = receipt_commitment(donation_id=DONATION_ID, salt=salt, secret=secret)
    entries[1]["metadata"] = json.dumps(
        {"donation_id": DONATION_ID, "receipt_commitment": commitment}
    )
    return relink(entries, 1)


def receipt_for(
    entries: list[dict[str, Any]],
    *,
    covered: list[dict[str, Any]] | None = None,
    signer: NoteSigner = GENUINE,
) -> dict[str, Any]:
    """The receipt of entry 2, with a checkpoint over ``covered`` (default: entries 1-3)."""
    entry = entries[1]
    return {
        "format": RECEIPT_FORMAT,
        "donation": {
            "id": DONATION_ID,
            "organisation_id": entry["chain_id"],
            "fund_id": None,
            "amount": entry["amount"],
            "currency": entry["currency"],
            "status": "completed",
            "completed_at": "2026-11-21T10:00:02Z",
        },
        "entry": {
            "chain_id": entry["chain_id"],
            "seq": 2,
            "id": entry["id"],
            "entry_hash": entry["entry_hash"],
        },
        "commitment": {
            "scheme": "amply-receipt-commitment/v1",
            "salt": SALT,
            "secret": SECRET,
            "value": receipt_commitment(donation_id=DONATION_ID, salt=SALT, secret=SECRET),
        },
        "checkpoint": checkpoint_over(entries[:3] if covered is None else covered, signer),
    }


def test_receipt_commitment_is_the_sha256_of_netstrings() -> None:
    fields = ("amply-receipt-commitment/v1", DONATION_ID, SALT, SECRET)
    preimage = "".join(f"{len(f.encode())}:{f}," for f in fields).encode()
    expected = "sha256:" + sha256(preimage).hexdigest()
    assert receipt_commitment(donation_id=DONATION_ID, salt=SALT, secret=SECRET) == expected
    assert receipt_commitment(donation_id=DONATION_ID, salt=SECRET, secret=SALT) != expected


def test_an_honest_receipt_verifies() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert result.ok, result.reason
    assert (result.donation_id, result.chain_id, result.seq) == (DONATION_ID, CHAIN, 2)
    assert result.checkpoint == {
        "size": 3,
        "key": GENUINE.verifier_key.encode(),
        "pinned": True,
    }
    assert result.verdict().startswith(f"OK: donation {DONATION_ID} is entry 2 of chain {CHAIN}")
    assert json.loads(json.dumps(result.as_dict()))["ok"] is True


def test_an_honest_receipt_verifies_unpinned_and_at_the_exports_own_size() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries, covered=entries)
    result = verify_receipt(receipt, signed_export(entries, GENUINE))
    assert result.ok, result.reason
    assert result.checkpoint is not None
    assert (result.checkpoint["size"], result.checkpoint["pinned"]) == (len(AMOUNTS), False)


def test_a_receipt_with_the_wrong_salt_does_not_open_the_commitment() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    receipt["commitment"]["salt"] = "00" * 32
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert not result.ok
    assert "does not open" in reason_of(result)
    assert result.verdict().startswith(f"BROKEN: receipt for donation {DONATION_ID}")


def test_a_receipt_with_the_wrong_secret_does_not_open_the_commitment() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    receipt["commitment"]["secret"] = "00" * 32
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert not result.ok
    assert "does not open" in reason_of(result)


def test_a_receipt_whose_entry_hash_differs_fails() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    receipt["entry"]["entry_hash"] = "sha256:" + "0" * 64
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert not result.ok
    assert "is not the receipt's entry" in reason_of(result)


def test_a_receipt_for_another_amount_fails() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    receipt["donation"]["amount"] += 1
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert not result.ok
    assert "amount" in reason_of(result)


def test_a_receipt_for_an_entry_the_export_lacks_fails() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    receipt["entry"]["seq"] = len(AMOUNTS) + 1
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert not result.ok
    assert "has no entry" in reason_of(result)


def test_a_receipt_checked_against_an_export_that_does_not_verify_fails() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    export = signed_export(entries, GENUINE)
    export["entries"][4]["amount"] += 1
    result = verify_receipt(receipt, export, keys=pinned())
    assert not result.ok
    assert "the export does not verify" in reason_of(result)


def test_a_receipt_whose_checkpoint_is_newer_than_the_export_fails() -> None:
    longer = receipt_chain((*AMOUNTS, 90))
    receipt = receipt_for(longer, covered=longer)
    export = signed_export(copy.deepcopy(longer[: len(AMOUNTS)]), GENUINE)
    result = verify_receipt(receipt, export, keys=pinned())
    assert not result.ok
    assert "newer than the export" in reason_of(result)


def test_a_receipt_checkpoint_from_a_rewritten_history_fails() -> None:
    entries = receipt_chain()
    other = receipt_chain()
    other[2]["metadata"] = json.dumps({"n": 3, "name": "Mallory"})
    relink(other, 2)
    assert other[1] == entries[1]  # the receipt's own entry is the same in both
    receipt = receipt_for(entries, covered=other[:3])
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert not result.ok
    assert "rewritten" in reason_of(result)


def test_a_receipt_checkpoint_that_does_not_cover_the_entry_fails() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries, covered=entries[:1])
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert not result.ok
    assert "not entry 2" in reason_of(result)


def test_a_receipt_checkpoint_signed_by_a_forger_fails_when_the_genuine_key_is_pinned() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries, signer=FORGER)
    result = verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())
    assert not result.ok
    assert "not signed by a trusted key" in reason_of(result)


def test_a_receipt_of_another_format_is_not_a_receipt() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    receipt["format"] = "amply-donation-receipt/v0"
    with pytest.raises(ExportFormatError, match="not an Amply receipt"):
        verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())


def test_an_incomplete_receipt_is_a_format_error() -> None:
    entries = receipt_chain()
    receipt = receipt_for(entries)
    del receipt["commitment"]
    with pytest.raises(ExportFormatError, match="has no 'commitment' object"):
        verify_receipt(receipt, signed_export(entries, GENUINE), keys=pinned())


@pytest.mark.parametrize("metadata", ["[]", '"a string"', "42"])
def test_a_receipt_entry_whose_metadata_is_not_a_json_object_fails_cleanly(
    metadata: str,
) -> None:
    # A signed export may carry any metadata string (the hash covers it, not its shape): a
    # receipt pointing at such an entry must be refused, not crash the verifier.
    entries = receipt_chain()
    entries[1]["metadata"] = metadata
    relink(entries, 1)
    receipt = receipt_for(entries)
    export = signed_export(entries, GENUINE)
    assert verify_export(export, keys=pinned()).ok
    try:
        result = verify_receipt(receipt, export, keys=pinned())
    except ExportFormatError:
        return
    assert not result.ok
