"""Two downloads of one chain, OLD and NEW: ``docs/ledger-format.md`` §4.4.

Each must verify (§4). Then NEW extends OLD if it is of the same chain, has at least as many
entries, and its entry at OLD's head seq has OLD's head hash: each hash covers all before it,
so that one comparison proves the whole of OLD is in NEW unchanged. Otherwise the verdict
names the first entry that differs.

Standard library only, plus the modules of :mod:`amply.verify`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from amply.verify.chain import Progress, VerificationResult
from amply.verify.checkpoint import VerifierKey
from amply.verify.export import _Capture, _StreamedExport, verify_export

# Every this many entries, OLD's and NEW's hashes are kept to find where they part.
_SAMPLE_STRIDE: Final = 1024


def verify_extension(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """Verify both exports, then that ``new`` extends ``old``: the same chain, and the same
    entry at old's head (each hash covers all before it, so the whole prefix is the same)."""
    earlier = verify_export(old, keys=keys, workers=workers)
    if not earlier.ok:
        return _earlier_fails(earlier)
    later = verify_export(new, keys=keys, progress=progress, workers=workers)
    if not later.ok:
        return later
    old_entries, new_entries = old["entries"], new["entries"]

    def first_difference() -> int:
        pairs = zip(old_entries, new_entries, strict=False)
        return next(
            n for n, (a, b) in enumerate(pairs, start=1) if a["entry_hash"] != b["entry_hash"]
        )

    return _extends(
        earlier,
        later,
        new_hash_at=lambda seq: new_entries[seq - 1]["entry_hash"],
        first_difference=first_difference,
    )


def verify_extension_files(
    old: Path,
    new: Path,
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """:func:`verify_extension` of two export files, each read as a stream."""
    sampled = _Capture(stride=_SAMPLE_STRIDE)
    first = _StreamedExport(old, progress=None, workers=workers, capture=sampled)
    earlier = first.run(keys=keys)
    if not earlier.ok:
        return _earlier_fails(earlier)
    wanted = _Capture(seqs=frozenset({earlier.head_seq}), stride=_SAMPLE_STRIDE)
    second = _StreamedExport(new, progress=progress, workers=workers, capture=wanted)
    later = second.run(keys=keys)
    if not later.ok:
        return later

    def first_difference() -> int:
        # Hashes agree up to some entry and differ from the next on (each covers all before
        # it): the samples bracket it, a second reading of that stretch finds it.
        low, high = 0, earlier.head_seq
        for seq in sorted(s for s in first.captured if s in second.captured):
            if first.captured[seq]["entry_hash"] != second.captured[seq]["entry_hash"]:
                high = seq
                break
            low = seq
        stretch = _Capture(seqs=frozenset(range(low + 1, high + 1)))
        a = _StreamedExport(old, progress=None, workers=workers, capture=stretch)
        b = _StreamedExport(new, progress=None, workers=workers, capture=stretch)
        a.run(keys=keys)
        b.run(keys=keys)
        return next(
            n
            for n in range(low + 1, high + 1)
            if a.captured[n]["entry_hash"] != b.captured[n]["entry_hash"]
        )

    return _extends(
        earlier,
        later,
        new_hash_at=lambda seq: second.captured[seq]["entry_hash"],
        first_difference=first_difference,
    )


def _earlier_fails(earlier: VerificationResult) -> VerificationResult:
    return earlier.fail(
        f"the earlier export does not verify (OLD, at seq {earlier.broken_seq}): {earlier.reason}",
        broken_seq=earlier.broken_seq,
    )


def _extends(
    earlier: VerificationResult,
    later: VerificationResult,
    *,
    new_hash_at: Callable[[int], Any],
    first_difference: Callable[[], int],
) -> VerificationResult:
    """NEW (``later``, verified) extends OLD (``earlier``, verified): §4.4."""
    if later.chain_id != earlier.chain_id:
        return later.fail(f"the exports are of different chains ({earlier.chain_id})")
    if later.head_seq < earlier.head_seq:
        return later.fail(
            f"the later export has fewer entries ({later.head_seq}) than the earlier one "
            f"({earlier.head_seq}): history was truncated",
            broken_seq=later.head_seq + 1,
        )
    if earlier.head_seq and new_hash_at(earlier.head_seq) != earlier.head_hash:
        differs = first_difference()
        signed = earlier.checkpoint is not None and later.checkpoint is not None
        proof = " Both exports carry valid signed checkpoints: together they prove it." * signed
        return later.fail(
            f"history was rewritten: entry {differs} differs from the earlier export.{proof}",
            broken_seq=differs,
        )
    later.extends = {"seq": earlier.head_seq, "entry_hash": earlier.head_hash}
    return later
