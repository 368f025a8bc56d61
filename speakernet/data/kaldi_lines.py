"""Line scanning and typed value parsing of Kaldi data-dir files, shared by the readers
(:mod:`speakernet.data.kaldi_dir`) and the validator (:mod:`speakernet.data.validate`).

Every problem is a :class:`DataDirError` naming the file, the 1-based line and the key.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple, TypeVar

from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DataDirError(ValueError):
    """A malformed or inconsistent file in a Kaldi data directory.

    Attributes:
        path: The offending file (or directory).
        message: What is wrong, without the location.
        line: 1-based line number, if the problem is on one line.
        key: The key (first field) of that line, if known.
    """

    def __init__(self, path: PathLike, message: str, line: int | None = None, key: str | None = None):
        self.path = str(path)
        self.message = message
        self.line = line
        self.key = key
        where = self.path if line is None else f"{self.path}:{line}"
        what = "" if key is None else f" (key '{key}')"
        super().__init__(f"{where}{what}: {message}")


class _Entry(NamedTuple):
    number: int
    key: str
    value: str


def _raise(error: DataDirError) -> None:
    raise error


Reporter = Callable[[DataDirError], None]


_BOM = "\ufeff"


def _without_bom(path: Path, text: str, report: Reporter | None) -> str:
    """Drops a UTF-8 byte-order mark (Windows editors write one), saying so.

    Read as text, the BOM would become part of the first key (``\ufeffutt1``), which then
    matches nothing. Readers warn and drop it; the validator (``report``) calls it an error,
    since Kaldi's own tools would keep it.
    """
    if not text.startswith(_BOM):
        return text
    if report is not None:
        report(DataDirError(path, "starts with a UTF-8 byte-order mark (BOM), which Kaldi's tools read as part of "
                            "the first key; save the file without it (or run fix_data_dir)", 1))
    else:
        logger.warning("%s starts with a UTF-8 byte-order mark (BOM); it is ignored", path)
    return text[1:]


def _scan(path: PathLike, report: Reporter = _raise, strict: bool = False) -> list[_Entry]:
    """Splits every non-blank line into key and rest-of-line.

    ``strict`` (used by the validator) also reports blank lines, leading whitespace and
    Windows line endings, which the readers tolerate but Kaldi's tools do not.
    """
    path = Path(path)
    if not path.is_file():
        report(DataDirError(path, "file does not exist"))
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        number = error.object[: error.start].count(b"\n") + 1
        report(DataDirError(path, f"not UTF-8 text ({error.reason} at byte {error.start})", number))
        return []
    text = _without_bom(path, text, report if strict else None)
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a blank one
    entries: list[_Entry] = []
    for number, line in enumerate(lines, start=1):
        if line.endswith("\r"):
            line = line.rstrip("\r")
            if strict:
                report(DataDirError(path, "line ends with a carriage return (Windows line endings)", number))
        parts = line.split(None, 1)
        if not parts:
            if strict:
                report(DataDirError(path, "blank line", number))
            continue
        if strict and line[0].isspace():
            report(DataDirError(path, "line starts with whitespace", number, parts[0]))
        entries.append(_Entry(number, parts[0], parts[1].rstrip() if len(parts) > 1 else ""))
    return entries


def _parse_entries(
    path: PathLike, entries: Iterable[_Entry], parse_value: Callable[[str], T], report: Reporter = _raise
) -> tuple[dict[str, T], dict[str, int]]:
    """Parses scanned lines into ``{key: value}`` plus ``{key: line number}``."""
    table: dict[str, T] = {}
    lines: dict[str, int] = {}
    for entry in entries:
        if not entry.value:
            report(DataDirError(path, "line has a key but no value", entry.number, entry.key))
            continue
        if entry.key in table:
            report(DataDirError(path, f"duplicate key (first on line {lines[entry.key]})", entry.number, entry.key))
            continue
        try:
            value = parse_value(entry.value)
        except ValueError as error:
            report(DataDirError(path, str(error), entry.number, entry.key))
            continue
        table[entry.key] = value
        lines[entry.key] = entry.number
    return table, lines


def _read(path: PathLike, parse_value: Callable[[str], T]) -> dict[str, T]:
    fast = _read_two_fields(Path(path), parse_value)
    if fast is not None:
        return fast
    return _parse_entries(path, _scan(path), parse_value)[0]


# A file of "<key> <value>" lines: every line two fields, nothing odd.
_TWO_FIELD_LINE = r"\S+[ \t]+\S+[ \t]*"
_TWO_FIELD_LINES = re.compile(rf"(?:{_TWO_FIELD_LINE}\n)*(?:{_TWO_FIELD_LINE})?")


def _read_two_fields(path: Path, parse_value: Callable[[str], T]) -> dict[str, T] | None:
    """Fast path of :func:`_read` for a well-formed two-column file, or None to take the slow one.

    Most data-dir files (utt2spk, feats.scp, xvector.scp, utt2num_frames) are two columns, and
    at VoxCeleb scale (150 k lines, read by every scoring stage) the line-by-line reader, which
    keeps line numbers for its messages, costs 0.3 s a file. Here one regular expression checks
    the whole text and one split gives the fields (6x faster). Anything irregular (a BOM, blank
    lines, a third field, a duplicate key, a value the parser refuses) returns None, and the
    line-by-line reader then gives the precise error.
    """
    convert = _FAST_VALUES.get(parse_value, False)
    if convert is False:
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if text.startswith(_BOM) or not _TWO_FIELD_LINES.fullmatch(text):
        return None
    fields = text.split()
    keys = fields[0::2]
    values = fields[1::2]
    if convert is not None:
        try:
            values = convert(values)
        except ValueError:
            return None
    table = dict(zip(keys, values))
    return table if len(table) == len(keys) else None


def _positive(values: list[str], kind: type) -> list:
    """The values as positive finite numbers of ``kind``; ValueError if any is not."""
    numbers = list(map(kind, values))
    if not all(map(kind(0).__lt__, numbers)) or (kind is float and not all(map(math.isfinite, numbers))):
        raise ValueError("a value is not a positive finite number")
    return numbers


def _as_text(value: str) -> str:
    return value


def _as_token(value: str) -> str:
    fields = value.split()
    if len(fields) != 1:
        raise ValueError(f"expected one value after the key, got {len(fields)} fields: '{value}'")
    return fields[0]


def _as_tokens(value: str) -> list[str]:
    return value.split()


def _as_num_frames(value: str) -> int:
    token = _as_token(value)
    try:
        frames = int(token)
    except ValueError:
        raise ValueError(f"number of frames must be an integer, got '{token}'") from None
    if frames <= 0:
        raise ValueError(f"number of frames must be > 0, got {frames}")
    return frames


def _as_float(text: str, what: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got '{text}'") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be finite, got '{text}'")
    return number


def _as_duration(value: str) -> float:
    seconds = _as_float(_as_token(value), "duration (seconds)")
    if seconds <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {seconds}")
    return seconds


GENDERS = ("m", "f")


def _as_gender(value: str) -> str:
    gender = _as_token(value)
    if gender not in GENDERS:
        raise ValueError(f"gender must be one of {GENDERS}, got '{gender}'")
    return gender


# Value parsers with a fast path for two-column files: None keeps the text, else a converter of
# all values at once that raises ValueError where the parser would (see _read_two_fields).
_FAST_VALUES: dict[Callable, Callable[[list[str]], list] | None] = {
    _as_text: None,
    _as_token: None,
    _as_num_frames: lambda values: _positive(values, int),
    _as_duration: lambda values: _positive(values, float),
}


class Segment(NamedTuple):
    """One line of ``segments``: a span of a recording, in seconds (``end == -1``: to the end)."""

    recording: str
    start: float
    end: float


def _as_segment(value: str) -> Segment:
    fields = value.split()
    if len(fields) != 3:
        raise ValueError(f"expected '<utt> <recording> <start_s> <end_s>', got {len(fields) + 1} fields")
    start = _as_float(fields[1], "start time")
    end = _as_float(fields[2], "end time")
    if start < 0:
        raise ValueError(f"start time must be >= 0, got {fields[1]}")
    if end != -1 and end <= start:
        raise ValueError(f"end time {fields[2]} must be > start time {fields[1]} (or -1 for the end of the recording)")
    return Segment(fields[0], start, end)


def _format_float(number: float) -> str:
    """Shortest text that reads back to the same float; integers without a decimal point."""
    number = float(number)
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)
