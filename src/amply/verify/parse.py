"""Reading JSON strictly: ``docs/ledger-format.md`` §4.1, "The JSON a verifier accepts".

An export, a receipt and a keys document are RFC 8259 JSON in UTF-8 without a byte order mark,
with no duplicate member names and no NaN or Infinity. A document that is not is *unreadable*
(:class:`ExportFormatError`: exit 2), which differs from *broken* (a readable export whose
entries break a rule of §3). A small document is read whole (:func:`loads_strict`,
:func:`read_export`); an export file is read as a stream, in chunks (:class:`_Stream`), so
memory stays flat whatever the chain's length.

Standard library only.
"""

from __future__ import annotations

import codecs
import gc
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final


class ExportFormatError(ValueError):
    """The file is not an Amply ledger export at all (as opposed to a tampered one)."""


def loads_strict(data: bytes, *, what: str = "the file") -> Any:
    """Parse a whole (small) JSON document as the format demands: UTF-8 without a byte order
    mark, RFC 8259 only, no duplicate member names. :class:`ExportFormatError` otherwise."""
    if data.startswith(codecs.BOM_UTF8):
        raise ExportFormatError(f"{what} starts with a byte order mark: not the format's JSON")
    try:
        text = data.decode("utf-8")
        value, end = _STRICT.raw_decode(text, _ws(text, 0))
    except (ValueError, RecursionError) as error:
        # ValueError covers malformed JSON, bad UTF-8, duplicates and over-long integers.
        raise ExportFormatError(f"{what} is not strict UTF-8 JSON: {_short(error)}") from error
    if _ws(text, end) != len(text):
        raise ExportFormatError(f"{what} has text after its JSON value")
    return value


def read_export(path: Path) -> dict[str, Any]:
    """Read a small JSON document (a receipt, a keys list, or an export to hold in memory)
    strictly (§4.1); :class:`ExportFormatError` if it is not a JSON object."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ExportFormatError(f"cannot read {path}: {error.strerror}") from error
    with _collector_paused():
        document = loads_strict(data, what=str(path))
    if not isinstance(document, dict):
        raise ExportFormatError(f"{path} must hold a JSON object")
    return document


def is_text(value: str) -> bool:
    """Whether a string is Unicode text (no lone surrogate, which JSON escapes can make)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# -- How the json module is made strict ------------------------------------------------------------


class _Unreadable(ValueError):
    """JSON that the format refuses: duplicate member names, NaN or Infinity."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _Unreadable("duplicate member name in a JSON object")
    return document


def _constant(name: str) -> Any:
    raise _Unreadable(f"{name} is not JSON")


# Objects as dicts, refusing duplicate names and NaN/Infinity.
_STRICT: Final = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)
# Objects as tuples of (name, value) pairs: the C scanner builds them without a Python call,
# and an entry whose names are exactly those of §1 in export order has no duplicate.
_PAIRS: Final = json.JSONDecoder(object_pairs_hook=tuple, parse_constant=_constant)


def _as_dict(pairs: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    return _pairs([(name, _plain(value)) for name, value in pairs])


def _nested(value: Any) -> Any:
    if type(value) is tuple:
        return _as_dict(value)
    if type(value) is list:
        return [_nested(item) for item in value]
    return value


def _plain(value: Any) -> Any:
    """A value parsed by ``_PAIRS`` as :data:`_STRICT` would have parsed it: objects as
    dicts, refusing duplicate names (:class:`_Unreadable`, also for too deep a nesting)."""
    try:
        return _nested(value)
    except RecursionError as error:
        raise _Unreadable("JSON nested too deeply") from error


_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")


def _ws(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    assert match is not None
    return match.end()


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.encode("ascii", "backslashreplace").decode()[:200]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector during bulk work. Reading or checking a long chain
    makes millions of short-lived objects, and each of the collector's full passes walks
    every entry already read: with it paused, the work is a third faster. Nothing here makes
    reference cycles, so nothing is left for it to collect afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- An export file, read as a stream --------------------------------------------------------------


# The fields of an entry in export order (docs/ledger-format.md §4), as the export query and
# the export's JSON objects have them.
_EXPORT_ORDER: Final = (
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


# A single JSON value of an export (an entry, the head, a checkpoint…) is at most this long.
MAX_VALUE_CHARS: Final = 8 << 20
_CHUNK: Final = 1 << 20
_BATCH: Final = 4096
_WS_CHARS: Final = frozenset(" \t\n\r")
_ENTRY_START: Final = b'{"chain_id":'


class _Stream:
    """A strict JSON reader over a file read in chunks (§4.1). The export's top level and its
    ``entries`` array are walked here; each value in them (an entry, the head…) is parsed
    whole by the json module's C scanner. Memory holds one chunk and one batch of entries."""

    def __init__(self, handle: IO[bytes], *, start: int = 0) -> None:
        self.handle = handle
        self.text = ""
        self.pos = 0
        self.eof = False
        self.carry = b""
        self.offset = start  # file offset of the next byte read
        self.count = 0  # entries read
        self.split: int | None = None  # byte offset where a second process starts reading
        self.split_at: int | None = None  # that offset as an index into ``text``
        self.handed_over = False

    def more(self) -> bool:
        """Read the next chunk; False at the end of the file."""
        if self.eof:
            return False
        raw = self.handle.read(_CHUNK)
        if self.offset == 0 and raw.startswith(codecs.BOM_UTF8):
            raise ExportFormatError("the file starts with a byte order mark: not UTF-8 JSON")
        base = self.offset - len(self.carry)
        self.offset += len(raw)
        data = self.carry + raw
        if not raw:
            self.eof = True
            if data:
                self._append(data, base)
            return bool(data)
        cut, back = len(data), 0
        # Keep an incomplete UTF-8 sequence at the end for the next read.
        while back < 3 and back < cut and data[cut - back - 1] & 0xC0 == 0x80:
            back += 1
        if back < cut and data[cut - back - 1] >= 0xC0:
            cut -= back + 1
        self.carry = data[cut:]
        self._append(data[:cut], base)
        return True

    def _append(self, data: bytes, base: int) -> None:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ExportFormatError(f"the file is not UTF-8 ({_short(error)})") from error
        kept = self.text[self.pos :]
        if self.split_at is not None:
            self.split_at -= self.pos
        if (
            self.split is not None
            and self.split_at is None
            and base <= self.split < base + len(data)
        ):
            self.split_at = len(kept) + len(data[: self.split - base].decode("utf-8"))
        self.text, self.pos = kept + text, 0

    def _grow(self) -> bool:
        if len(self.text) - self.pos > MAX_VALUE_CHARS:
            raise ExportFormatError(f"a JSON value longer than {MAX_VALUE_CHARS:,} characters")
        return self.more()

    def char(self) -> str:
        """The next character that is not white space ("" at the end), not consumed."""
        while True:
            self.pos = _ws(self.text, self.pos)
            if self.pos < len(self.text):
                return self.text[self.pos]
            if not self.more():
                return ""

    def expect(self, char: str, where: str) -> None:
        if self.char() != char:
            raise ExportFormatError(f"malformed JSON: expected {char!r} {where}")
        self.pos += 1

    def value(self, decoder: json.JSONDecoder = _STRICT) -> Any:
        self.char()
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as error:
                if self._grow():
                    continue
                raise ExportFormatError(f"malformed JSON: {_short(error)}") from error
            except (ValueError, RecursionError) as error:  # duplicates, NaN, huge integers
                raise ExportFormatError(f"refused JSON: {_short(error)}") from error
            if end == len(self.text) and self._grow():
                continue
            self.pos = end
            return value

    def members(
        self, on_entries: Callable[[dict[str, Any]], dict[str, Any] | None], *, resume: bool
    ) -> dict[str, Any]:
        """Walk the top-level object; ``on_entries`` reads the entries array, and may return
        the members after it (read by another process), which ends the walk. With ``resume``,
        start just after a member's value (a second process, after the entries array)."""
        members: dict[str, Any] = {}
        if not resume:
            self.expect("{", "at the start of the export")
            if self.char() == "}":
                self.pos += 1
                return self._end(members)
        while True:
            if resume:
                resume = False
            else:
                if self.char() != '"':
                    raise ExportFormatError("malformed JSON: expected a member name")
                name = self.value()
                if name in members:
                    raise ExportFormatError(f"duplicate member name {name!r}")
                self.expect(":", f"after the member name {name!r}")
                if name == "entries":
                    members[name] = None
                    rest = on_entries(members)
                    if rest is not None:
                        for later, value in rest.items():
                            if later in members:
                                raise ExportFormatError(f"duplicate member name {later!r}")
                            members[later] = value
                        return members
                else:
                    members[name] = self.value()
            separator = self.char()
            self.pos += 1
            if separator == "}":
                return self._end(members)
            if separator != ",":
                raise ExportFormatError("malformed JSON: expected ',' or '}' between members")

    def _end(self, members: dict[str, Any]) -> dict[str, Any]:
        if self.char() != "":
            raise ExportFormatError("the file has text after its JSON object")
        return members

    def entries(self, *, opened: bool = False) -> Iterator[list[Any]]:
        """The entries array, in batches: an entry whose names are those of §1 in export
        order as the tuple of its values, any other value as a plain one. Stops early (with
        ``handed_over``) at the byte where a second process reads on."""
        if not opened:
            self.expect("[", "to open the entries array")
            if self.char() == "]":
                self.pos += 1
                return
        scan, order, ws = _PAIRS.scan_once, _EXPORT_ORDER, _WS_CHARS  # type: ignore[attr-defined]
        batch: list[Any] = []
        append, limit = batch.append, _BATCH
        text, pos, split_at = self.text, self.pos, self.split_at
        size = len(text)
        while True:
            if split_at is not None and pos >= split_at:
                if pos == split_at:
                    self.pos, self.handed_over = pos, True
                    if batch:
                        yield batch
                    return
                self.split = self.split_at = split_at = None  # the other process guessed wrong
            try:
                value, end = scan(text, pos)
            except (json.JSONDecodeError, StopIteration) as error:
                self.pos = pos
                if self._grow():
                    text, pos, split_at = self.text, self.pos, self.split_at
                    size = len(text)
                    continue
                message = _short(error) if isinstance(error, ValueError) else "expected a value"
                raise ExportFormatError(
                    f"malformed JSON in entry {self.count + 1}: {message}"
                ) from error
            except (ValueError, RecursionError) as error:
                raise ExportFormatError(
                    f"refused JSON in entry {self.count + 1}: {_short(error)}"
                ) from error
            if end == size:
                self.pos = pos
                if self._grow():
                    text, pos, split_at = self.text, self.pos, self.split_at
                    size = len(text)
                    continue
            if type(value) is tuple and len(value) == 12:
                names, values = zip(*value, strict=False)
                append(values if names == order else self._plain(value))
            else:
                append(self._plain(value))
            self.count += 1
            if end < size and text[end] not in ws:
                separator, pos = text[end], end + 1
            else:
                self.pos = end
                separator = self.char()
                text, pos, split_at = self.text, self.pos + 1, self.split_at
                size = len(text)
            if separator == ",":
                if pos >= size or text[pos] in ws:
                    self.pos = pos
                    self.char()
                    text, pos, split_at = self.text, self.pos, self.split_at
                    size = len(text)
                if len(batch) >= limit:
                    self.pos = pos
                    yield batch
                    batch = []
                    append = batch.append
                    text, pos, split_at = self.text, self.pos, self.split_at
                    size = len(text)
                continue
            self.pos = pos
            if separator == "]":
                if batch:
                    yield batch
                return
            raise ExportFormatError(f"malformed JSON: expected ',' or ']' after entry {self.count}")

    def _plain(self, value: Any) -> Any:
        try:
            return _plain(value)
        except _Unreadable as error:
            raise ExportFormatError(f"refused JSON in entry {self.count + 1}: {error}") from error


def _split_point(path: Path, size: int) -> int | None:
    """A byte near the middle of the file where an entry seems to start, in the layout Amply
    writes (``,{"chain_id":``). Only a guess: the first process confirms it by arriving at
    exactly that byte at the start of an entry, or ignores the second process."""
    with path.open("rb") as handle:
        handle.seek(size // 2)
        data = handle.read(_CHUNK)
    found = data.find(_ENTRY_START)
    while found != -1:
        before = data[:found].rstrip(b" \t\r\n")
        if before.endswith(b","):
            return size // 2 + found
        found = data.find(_ENTRY_START, found + 1)
    return None
