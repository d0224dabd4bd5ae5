"""Donor receipts: ``docs/ledger-format.md`` §7.

A donation's public entry carries a salted commitment (:func:`receipt_commitment`) instead of
the donor's name. A receipt proves "this entry is my donation" against an export of the
organisation's chain (:func:`verify_receipt`): the export verifies (rule 1); its entry at the
receipt's seq is the receipt's donation (rule 2); the receipt opens the entry's commitment
(rule 3); the receipt's checkpoint covers the entry, agrees with the export and is signed by a
trusted key (rule 4).

Standard library only, plus the modules of :mod:`amply.verify`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, Final

from amply.verify.chain import MAX_AMOUNT, Progress, VerificationResult
from amply.verify.checkpoint import Checkpoint, CheckpointError, VerifierKey, parse_checkpoint
from amply.verify.crypto import HASH_PREFIX, netstring
from amply.verify.export import _Capture, _StreamedExport, verify_export
from amply.verify.parse import ExportFormatError, is_text, loads_strict

RECEIPT_FORMAT: Final = "amply-donation-receipt/v1"
COMMITMENT_VERSION: Final = "amply-receipt-commitment/v1"


def receipt_commitment(*, donation_id: str, salt: str, secret: str) -> str:
    """The salted commitment a donation's public entry carries (``receipt_commitment``):
    SHA-256 over the netstrings of the version tag, the donation id, the salt and the
    receipt secret. Without the salt and secret it reveals nothing; with them, anyone can
    check that the entry is the receipt holder's donation."""
    fields = (COMMITMENT_VERSION, donation_id, salt, secret)
    return HASH_PREFIX + sha256("".join(netstring(f) for f in fields).encode()).hexdigest()


@dataclass(slots=True)
class ReceiptResult:
    """Outcome of checking a donor's receipt against an export of the organisation's chain.
    ``broken_seq``: the export's first broken entry, or the receipt's entry when that entry
    is not the receipt's donation (§7); ``None`` when the checkpoint fails, or all holds."""

    ok: bool
    donation_id: str | None
    chain_id: str | None
    seq: int | None
    reason: str | None = None
    checkpoint: dict[str, Any] | None = None
    broken_seq: int | None = None

    def verdict(self) -> str:
        if not self.ok:
            where = f" at seq {self.broken_seq}" if self.broken_seq is not None else ""
            return f"BROKEN: receipt for donation {self.donation_id}{where}: {self.reason}"
        size = self.checkpoint["size"] if self.checkpoint else None
        pinned = (
            "" if self.checkpoint and self.checkpoint["pinned"] else " (key not pinned: pass --key)"
        )
        return (
            f"OK: donation {self.donation_id} is entry {self.seq} of chain {self.chain_id}, "
            f"the receipt opens its commitment, and checkpoint {size} covers it{pinned}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "donation_id": self.donation_id,
            "chain_id": self.chain_id,
            "seq": self.seq,
            "broken_seq": self.broken_seq,
            "reason": self.reason,
            "checkpoint": self.checkpoint,
        }


def verify_receipt(
    receipt: Mapping[str, Any], export: Mapping[str, Any], *, keys: Sequence[VerifierKey] = ()
) -> ReceiptResult:
    """Check that the receipt's donation is an entry of the (verified) export, that the
    receipt opens the entry's commitment, and that the receipt's checkpoint is consistent
    with the export and signed (§7). :class:`ExportFormatError` if either is unreadable."""

    def chain(wanted: frozenset[int]) -> tuple[VerificationResult, Mapping[int, Any]]:
        result = verify_export(export, keys=keys)
        entries = export["entries"]
        return result, {seq: entries[seq - 1] for seq in wanted if 1 <= seq <= len(entries)}

    return _receipt(receipt, chain, keys=keys)


def verify_receipt_file(
    receipt: Mapping[str, Any],
    export: Path,
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> ReceiptResult:
    """:func:`verify_receipt` against an export file, read as a stream."""

    def chain(wanted: frozenset[int]) -> tuple[VerificationResult, Mapping[int, Any]]:
        run = _StreamedExport(export, progress=progress, workers=workers, capture=_Capture(wanted))
        return run.run(keys=keys), run.captured

    _check_receipt_shape(receipt)  # before reading a long export
    return _receipt(receipt, chain, keys=keys)


Chain = Callable[[frozenset[int]], tuple[VerificationResult, Mapping[int, Any]]]


def _receipt(
    receipt: Mapping[str, Any], chain: Chain, *, keys: Sequence[VerifierKey]
) -> ReceiptResult:
    _check_receipt_shape(receipt)
    donation, entry, opening = receipt["donation"], receipt["entry"], receipt["commitment"]
    seq = entry["seq"]
    result = ReceiptResult(ok=True, donation_id=donation["id"], chain_id=entry["chain_id"], seq=seq)
    checkpoint: Checkpoint | CheckpointError
    try:
        checkpoint = parse_checkpoint(receipt["checkpoint"]["note"])
        wanted = frozenset({seq, checkpoint.size})
    except CheckpointError as error:
        checkpoint, wanted = error, frozenset({seq})
    export, entries = chain(wanted)
    if not export.ok:
        return _receipt_fails(
            result, f"the export does not verify: {export.verdict()}", seq=export.broken_seq
        )
    if export.chain_id != entry["chain_id"] or donation["organisation_id"] != export.chain_id:
        return _receipt_fails(
            result, f"the receipt is not for this export's chain ({export.chain_id})", seq=seq
        )
    if seq > export.head_seq:
        return _receipt_fails(result, f"the export has no entry {seq}", seq=seq)
    problem = _entry_problem(entries[seq], donation=donation, entry=entry, opening=opening)
    if problem is not None:
        return _receipt_fails(result, problem, seq=seq)
    try:
        if isinstance(checkpoint, CheckpointError):
            raise checkpoint
        result.checkpoint = _receipt_checkpoint(
            checkpoint,
            receipt["checkpoint"]["key"],
            export=export,
            entries=entries,
            seq=seq,
            keys=keys,
        )
    except CheckpointError as error:
        return _receipt_fails(result, f"the receipt's checkpoint: {error}", seq=None)
    return result


def _receipt_fails(result: ReceiptResult, reason: str, *, seq: int | None) -> ReceiptResult:
    result.ok, result.reason, result.broken_seq = False, reason, seq
    return result


_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_RECEIPT_SHAPE: Final[dict[str, dict[str, tuple[type, ...]]]] = {
    "donation": {
        "id": (str,),
        "organisation_id": (str,),
        "fund_id": (str, type(None)),
        "amount": (int,),
        "currency": (str,),
        "status": (str,),
        "completed_at": (str, type(None)),
    },
    "entry": {"chain_id": (str,), "seq": (int,), "id": (str,), "entry_hash": (str,)},
    "commitment": {
        "scheme": (str,),
        "salt": (str, type(None)),
        "secret": (str,),
        "value": (str, type(None)),
    },
    "checkpoint": {"note": (str,), "key": (str,)},
}


def _check_receipt_shape(receipt: Any) -> None:
    """A receipt has the members and JSON types of §7, or it is unreadable (exit 2)."""
    if not isinstance(receipt, Mapping) or receipt.get("format") != RECEIPT_FORMAT:
        raise ExportFormatError(f"not an Amply receipt (format must be {RECEIPT_FORMAT!r})")
    for part, members in _RECEIPT_SHAPE.items():
        value = receipt.get(part)
        if not isinstance(value, Mapping):
            raise ExportFormatError(f"the receipt has no {part!r} object")
        for name, kinds in members.items():
            if name not in value or type(value[name]) not in kinds:
                names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
                raise ExportFormatError(f"the receipt's {part}.{name} must be {names}")
            if type(value[name]) is str and part != "checkpoint" and not is_text(value[name]):
                raise ExportFormatError(f"the receipt's {part}.{name} is not Unicode text")
    opening = receipt["commitment"]
    if opening["scheme"] != COMMITMENT_VERSION:
        raise ExportFormatError(f"unknown commitment scheme (expected {COMMITMENT_VERSION!r})")
    if (opening["salt"] is None) != (opening["value"] is None):
        raise ExportFormatError("the receipt's salt and value are both null or both strings")
    if _HEX64.fullmatch(opening["secret"]) is None or (
        opening["salt"] is not None and _HEX64.fullmatch(opening["salt"]) is None
    ):
        raise ExportFormatError("the receipt's salt and secret are 64 lowercase hex digits")
    if (
        receipt["entry"]["seq"] < 1
        or not -MAX_AMOUNT <= receipt["donation"]["amount"] <= MAX_AMOUNT
    ):
        raise ExportFormatError("the receipt's seq or amount is out of range")


def _entry_problem(
    public: Mapping[str, Any],
    *,
    donation: Mapping[str, Any],
    entry: Mapping[str, Any],
    opening: Mapping[str, Any],
) -> str | None:
    """Rules 2 and 3 of §7, on the export's entry at the receipt's seq."""
    if (public["id"], public["entry_hash"]) != (entry["id"], entry["entry_hash"]):
        return f"entry {public['seq']} of the export is not the receipt's entry"
    try:
        metadata = loads_strict(public["metadata"].encode(), what="the entry's metadata")
    except (ExportFormatError, UnicodeEncodeError):
        metadata = None
    if not isinstance(metadata, dict):
        return f"entry {public['seq']} has metadata that is not a JSON object"
    if public["type"] != "donation_received" or metadata.get("donation_id") != donation["id"]:
        return f"entry {public['seq']} does not record this donation"
    if (public["amount"], public["currency"]) != (donation["amount"], donation["currency"]):
        return "the entry's amount or currency is not the receipt's"
    committed = metadata.get("receipt_commitment")
    if opening["salt"] is None:
        if committed is not None:
            return (
                "the receipt has no salt, but the entry carries a commitment: only a receipt "
                "that opens it proves this donation"
            )
        return None
    commitment = receipt_commitment(
        donation_id=donation["id"], salt=opening["salt"], secret=opening["secret"]
    )
    if committed != commitment:
        return "the receipt does not open the entry's commitment: it is not this donor's receipt"
    if opening["value"] != commitment:
        return "the receipt's commitment value is not the commitment of its salt and secret"
    return None


def _receipt_checkpoint(
    checkpoint: Checkpoint,
    key: str,
    *,
    export: VerificationResult,
    entries: Mapping[int, Any],
    seq: int,
    keys: Sequence[VerifierKey],
) -> dict[str, Any]:
    """Rule 4 of §7: the receipt's checkpoint covers the entry, agrees with the export, and
    is signed by a trusted key (the export's own pinned keys, or the receipt's key)."""
    if checkpoint.chain_id != export.chain_id:
        raise CheckpointError(f"it is for another chain ({checkpoint.origin})")
    if checkpoint.size < seq:
        raise CheckpointError(f"it covers {checkpoint.size} entries, not entry {seq}")
    if checkpoint.size > export.head_seq:
        raise CheckpointError("it is newer than the export: download a newer export")
    if entries[checkpoint.size]["entry_hash"] != checkpoint.root_hash:
        raise CheckpointError(
            f"the export's entry {checkpoint.size} is not the one Amply signed: "
            "the history was rewritten"
        )
    signer = checkpoint.signer(list(keys) or [VerifierKey.parse(key)])
    return {"size": checkpoint.size, "key": signer.encode(), "pinned": bool(keys)}
