"""An export and its checkpoint: ``docs/ledger-format.md`` §4 and §4.3.

:func:`verify_export` checks a parsed export: what the document is (``format`` and ``chain``),
every entry by the rules of §3 (:mod:`amply.verify.chain`), that its ``head`` is its last entry,
then the signed checkpoint that must cover that head (§4.3; checkpoints themselves are
:mod:`amply.verify.checkpoint`, §6). :func:`verify_export_file` does the same while reading the
file as a stream (:mod:`amply.verify.parse`, §4.1): memory stays flat whatever the chain's
length, and a long file is read in two processes, whose verdict is the one a single reading
gives.

Standard library only, plus the modules of :mod:`amply.verify` named above.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from amply.verify.chain import (
    INT64_MAX,
    KIND_PREFIXES,
    ChainVerifier,
    Progress,
    VerificationResult,
    _check,
)
from amply.verify.checkpoint import CheckpointError, VerifierKey, parse_checkpoint
from amply.verify.parse import (
    _EXPORT_ORDER,
    ExportFormatError,
    _collector_paused,
    _plain,
    _split_point,
    _Stream,
    _Unreadable,
    is_text,
)

EXPORT_FORMAT: Final = "amply-ledger-export/v1"


def verify_export(
    document: Mapping[str, Any],
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """Verify a parsed export document (``docs/ledger-format.md`` §3, §4 and §6).

    With ``keys`` (pinned keys, such as Amply's published one) the checkpoint must be signed
    by one of them; without, it is checked against the key the export names, and the result
    says that key was not pinned. A non-empty export without a checkpoint never verifies.
    With ``workers`` > 1 a long chain is checked in two processes. A file is better read
    with :func:`verify_export_file`, which streams it.
    """
    if not isinstance(document, Mapping):
        raise ExportFormatError("an export must be a JSON object")
    chain_id, kind = _check_format(document)
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ExportFormatError("export must have an entries array")
    _check_shapes(document)
    verifier = ChainVerifier(chain_id, kind=kind)
    total = len(entries)
    _check(verifier, entries, progress=progress, total=total, workers=workers)
    if progress is not None:
        progress(verifier.seq, total)
    return _finish(verifier, document, keys=keys)


def verify_export_file(
    path: Path,
    *,
    keys: Sequence[VerifierKey] = (),
    progress: Progress | None = None,
    workers: int = 1,
) -> VerificationResult:
    """Read and verify an export file as a stream (memory stays flat whatever its length);
    :class:`ExportFormatError` if it is not a readable export (§3, §4.1)."""
    return _StreamedExport(path, progress=progress, workers=workers, capture=_Capture()).run(
        keys=keys
    )


def _check_format(members: Mapping[str, Any]) -> tuple[str, str]:
    """The members that say what the document is (§4): ``format`` and ``chain``."""
    if members.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(f"not an Amply ledger export (format must be {EXPORT_FORMAT!r})")
    chain = members.get("chain")
    if not isinstance(chain, dict) or type(chain.get("id")) is not str:
        raise ExportFormatError("export has no chain object with a string id")
    chain_id, kind = chain["id"], chain.get("kind")
    if not is_text(chain_id):
        raise ExportFormatError("the chain id is not Unicode text")
    if type(kind) is not str or kind not in KIND_PREFIXES:
        raise ExportFormatError(f"unknown chain kind {kind!r}")
    if not chain_id.startswith(KIND_PREFIXES[kind]):
        raise ExportFormatError(
            f"chain {chain_id!r} cannot be of kind {kind!r}: its id must start with "
            f"{KIND_PREFIXES[kind]!r}"
        )
    return chain_id, kind


_ABSENT: Final = object()


def _check_shapes(members: Mapping[str, Any]) -> None:
    """``head`` and ``checkpoint`` have the JSON types of §4, or the export is unreadable."""
    head = members.get("head")
    if not isinstance(head, dict):
        raise ExportFormatError("export must have a head object")
    seq, head_hash = head.get("seq"), head.get("entry_hash")
    if type(seq) is not int or not 0 <= seq <= INT64_MAX:
        raise ExportFormatError("the head's seq must be an integer from 0")
    if head_hash is not None and (type(head_hash) is not str or not is_text(head_hash)):
        raise ExportFormatError("the head's entry_hash must be a string or null")
    checkpoint = members.get("checkpoint", _ABSENT)
    if checkpoint is not _ABSENT and not (
        isinstance(checkpoint, dict)
        and type(checkpoint.get("note")) is str
        and type(checkpoint.get("key")) is str
    ):
        raise ExportFormatError("the export's checkpoint must be an object with a note and a key")


def _expected_total(members: Mapping[str, Any]) -> int:
    head = members.get("head")
    seq = head.get("seq") if isinstance(head, dict) else None
    return seq if type(seq) is int and seq >= 0 else 0


def _finish(
    verifier: ChainVerifier, members: Mapping[str, Any], *, keys: Sequence[VerifierKey]
) -> VerificationResult:
    """The head (§3) and the checkpoint (§4) of an export whose entries were all given."""
    _check_shapes(members)
    result = verifier.result(expected_head=members["head"])
    if result.ok:
        _check_checkpoint(result, members.get("checkpoint", _ABSENT), keys=keys)
    return result


def _check_checkpoint(
    result: VerificationResult, embedded: Any, *, keys: Sequence[VerifierKey]
) -> None:
    """The export's checkpoint must be Amply's signature on exactly this head (§4): a
    non-empty export carries one, an empty one none. A failure names no seq."""
    if embedded is _ABSENT:
        if result.head_seq > 0:
            result.fail(
                "the export carries no signed checkpoint: nothing shows that Amply published "
                "these entries"
            )
        return
    if result.head_seq == 0:
        result.fail("an empty export carries no checkpoint, and this one does")
        return
    try:
        checkpoint = parse_checkpoint(embedded["note"])
        if checkpoint.chain_id != result.chain_id:
            raise CheckpointError(f"the checkpoint is for another chain ({checkpoint.origin})")
        if (checkpoint.size, checkpoint.root_hash) != (result.head_seq, result.head_hash):
            raise CheckpointError(
                f"the signed checkpoint (seq {checkpoint.size}, {checkpoint.root_hash}) does "
                f"not match the export's head: its entries are not the ones that were signed"
            )
        trusted = list(keys) or [VerifierKey.parse(embedded["key"])]
        signer = checkpoint.signer(trusted)
    except CheckpointError as error:
        result.fail(str(error))
        return
    result.checkpoint = {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "time": checkpoint.time,
        "key": signer.encode(),
        "pinned": bool(keys),
    }


# -- Reading an export file, in one process or two -------------------------------------------------


# Export files at least this large are read in two processes when there are two cores.
PARALLEL_FILE_MINIMUM: Final = 16 << 20


@dataclass(frozen=True, slots=True)
class _Capture:
    """Entries to keep while streaming, by position: some seqs, and every ``stride``-th."""

    seqs: frozenset[int] = frozenset()
    stride: int = 0

    def within(self, first: int, last: int) -> list[int]:
        picked = [seq for seq in self.seqs if first <= seq <= last]
        if self.stride:
            picked.extend(range(-(-first // self.stride) * self.stride, last + 1, self.stride))
        return picked


def _entry_dict(entry: Any) -> Any:
    return dict(zip(_EXPORT_ORDER, entry, strict=True)) if type(entry) is tuple else entry


class _StreamedExport:
    """Verifies an export file as it reads it, the second half in another process when the
    file is long and there are two cores (docs/ledger-format.md §4.3)."""

    def __init__(
        self,
        path: Path,
        *,
        progress: Progress | None,
        workers: int,
        capture: _Capture,
    ) -> None:
        self.path, self.progress, self.workers, self.capture = path, progress, workers, capture
        self.verifier: ChainVerifier | None = None
        self.captured: dict[int, Any] = {}
        self.total = self.size = 0
        self.stream: _Stream | None = None

    def run(self, *, keys: Sequence[VerifierKey]) -> VerificationResult:
        try:
            handle = self.path.open("rb")
        except OSError as error:
            raise ExportFormatError(f"cannot read {self.path}: {error.strerror}") from error
        with handle, _collector_paused():
            try:
                self.size = os.fstat(handle.fileno()).st_size
                self.stream = _Stream(handle)
                members = self.stream.members(self._entries, resume=False)
            except OSError as error:
                raise ExportFormatError(f"cannot read {self.path}: {error.strerror}") from error
        if self.verifier is None:
            _check_format(members)
            raise ExportFormatError("export must have an entries array")
        if self.progress is not None:
            self.progress(self.verifier.seq, max(self.total, self.verifier.seq))
        return _finish(self.verifier, members, keys=keys)

    def _entries(self, members: dict[str, Any]) -> dict[str, Any] | None:
        chain_id, kind = _check_format(members)  # format and chain come first (§4.1)
        self.verifier = verifier = ChainVerifier(chain_id, kind=kind)
        self.total = _expected_total(members)
        stream = self.stream
        assert stream is not None
        child = None
        if self.workers > 1 and self.size >= PARALLEL_FILE_MINIMUM and hasattr(os, "fork"):
            child = self._fork(chain_id, kind, after=stream.offset)
        step = 1 if child is None else 2
        try:
            for batch in stream.entries():
                self._take(verifier, batch, first=stream.count - len(batch) + 1)
                if self.progress is not None:
                    self.progress(min(stream.count * step, self.total), self.total)
        finally:
            if child is not None and not stream.handed_over:
                _stop(*child)
        if child is None or not stream.handed_over:
            return None
        pid, reader = child
        with os.fdopen(reader) as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
        state = json.loads(answer or "null")
        if state is not None and "unreadable" in state:
            raise ExportFormatError(state["unreadable"])
        if state is not None and self._merge(verifier, state, first=stream.count + 1):
            return dict(state["trailing"])
        # The other process could not start there, or started from a state this half does
        # not end in (the chain breaks about there): read on here, for the exact verdict.
        stream.handed_over = False
        stream.split = stream.split_at = None
        for batch in stream.entries(opened=True):
            self._take(verifier, batch, first=stream.count - len(batch) + 1)
        return None

    def _take(self, verifier: ChainVerifier, batch: list[Any], *, first: int) -> None:
        for seq in self.capture.within(first, first + len(batch) - 1):
            self.captured[seq] = _entry_dict(batch[seq - first])
        try:
            if verifier.add_all(batch):
                return
            for entry in batch:  # the rest is only read: it must still be readable
                if type(entry) is tuple:
                    _plain(list(entry))
        except _Unreadable as error:
            raise ExportFormatError(f"refused JSON in an entry: {error}") from error

    def _fork(self, chain_id: str, kind: str, *, after: int) -> tuple[int, int] | None:
        split = _split_point(self.path, self.size)
        if split is None or split < after:
            return None
        assert self.stream is not None
        self.stream.split = split
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which coverage does not follow
            os.close(reader)
            state: dict[str, Any] | None = None
            try:
                state = _second_half(self.path, split, chain_id, kind, self.capture)
            finally:  # whatever happens, the child never returns into the caller's code
                with os.fdopen(writer, "w") as pipe:
                    pipe.write(json.dumps(state))
                os._exit(0)
        os.close(writer)
        return pid, reader

    def _merge(self, verifier: ChainVerifier, state: dict[str, Any], *, first: int) -> bool:
        """Join the second half's verdict to the first's, if the second half started from
        the state the first ends in: the next seq, its last hash, and per currency the
        balance it ends with. False if not (the chain breaks at the seam)."""
        if verifier.broken_seq is None and (
            state["first_seq"] != first
            or state["first_prev"] != verifier.head_hash
            or any(
                verifier.balances.get(currency, 0) != opening
                for currency, (opening, _, _) in state["openings"].items()
            )
        ):
            return False
        self.captured.update({int(seq): entry for seq, entry in state["captured"].items()})
        if verifier.broken_seq is None:
            verifier.seq, verifier.head_hash = state["seq"], state["head"]
            verifier.balances.update(state["balances"])
            verifier.broken_seq, verifier.reason = state["broken_seq"], state["reason"]
        return True


def _stop(pid: int, reader: int) -> None:
    """End the second process this one started (its guess at an entry's start was wrong)."""
    os.close(reader)
    with suppress(ProcessLookupError):  # it may have finished already
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _second_half(
    path: Path, split: int, chain_id: str, kind: str, capture: _Capture
) -> dict[str, Any] | None:  # pragma: no cover - runs in the child
    """The second process's work: the entries from byte ``split`` on, from the state the
    first entry there claims (its seq and link; per currency, the balance before it), and the
    rest of the file. The first process checks those claims against where it ends."""
    with path.open("rb") as handle, _collector_paused():
        handle.seek(split)
        stream = _Stream(handle, start=split)
        verifier = ChainVerifier(chain_id, kind=kind)
        captured: dict[str, Any] = {}
        try:
            batches = stream.entries(opened=True)
            opening = next(batches, None)
            if opening is None:
                return None
            first = opening[0]
            if type(first) is not tuple or type(first[1]) is not int or type(first[10]) is not str:
                return None
            first_seq, first_prev = first[1], first[10]
            verifier.resume_after(seq=first_seq - 1, head_hash=first_prev, balances={})
            verifier.openings = {}
            for batch in itertools.chain([opening], batches):
                start = first_seq + stream.count - len(batch)
                for seq in capture.within(start, start + len(batch) - 1):
                    captured[str(seq)] = _entry_dict(batch[seq - start])
                if not verifier.add_all(batch):
                    for entry in batch:
                        if type(entry) is tuple:
                            _plain(list(entry))
            trailing = stream.members(lambda _: None, resume=True)
        except (ExportFormatError, _Unreadable) as error:
            return {"unreadable": str(error)}
    return {
        "first_seq": first_seq,
        "first_prev": first_prev,
        "count": stream.count,
        "seq": verifier.seq,
        "head": verifier.head_hash,
        "balances": verifier.balances,
        "openings": verifier.openings,
        "broken_seq": verifier.broken_seq,
        "reason": verifier.reason,
        "trailing": trailing,
        "captured": captured,
    }
