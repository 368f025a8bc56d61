"""Reading and writing the files of a Kaldi data directory (validation: :mod:`speakernet.data.validate`).

Every reader reports problems as :class:`DataDirError` naming the file, the 1-based line
number and the key, so a user can open the file at the bad line. Every writer sorts keys
in C-locale (byte) order, as Kaldi's ``LC_ALL=C sort`` does, and writes atomically.

Files of a data directory (all ``<key> <value>`` per line, C-sorted by key):

- ``wav.scp``: ``<rec> <path>`` or ``<rec> <command> |`` (keyed by utterance without ``segments``).
- ``segments``: ``<utt> <rec> <start_s> <end_s>``; ``end_s == -1`` means "to the end of the recording".
- ``utt2spk`` / ``spk2utt``: speaker of each utterance and its inverse.
- ``utt2num_frames`` (int frames > 0), ``utt2dur`` (float seconds > 0).
- ``feats.scp`` / ``vad.scp``: ``<utt> <ark>:<offset>`` rxspecifiers.
- ``trials``: ``<enroll> <test> target|nontarget`` (not sorted; kept in file order).
"""

from __future__ import annotations

import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from speakernet.utils.fileio import PathLike, atomic_write

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


class DataDirValidationError(DataDirError):
    """Several problems found at once by :func:`validate_data_dir`.

    The location and message of the first problem head the error; the following lines list
    up to ``max_shown`` problems so that a user can fix them in one go.

    Attributes:
        problems: Every problem found, in the order the checks ran.
    """

    def __init__(self, data_dir: PathLike, problems: Sequence[DataDirError], max_shown: int = 10):
        if not problems:
            raise ValueError("DataDirValidationError needs at least one problem")
        self.problems = list(problems)
        first = self.problems[0]
        listing = [f"data dir {data_dir} has {len(self.problems)} problem(s):"]
        listing += [f"  {number}. {problem}" for number, problem in enumerate(self.problems[:max_shown], start=1)]
        if len(self.problems) > max_shown:
            listing.append(f"  ... and {len(self.problems) - max_shown} more")
        super().__init__(first.path, first.message + "\n" + "\n".join(listing), first.line, first.key)


def c_sort_key(key: str) -> bytes:
    """Sort key giving C-locale (byte-wise) order, as ``LC_ALL=C sort``."""
    return key.encode("utf-8")


def is_pipe(value: str) -> bool:
    """True if a ``wav.scp`` value is a command whose stdout is the audio (``cmd ... |``)."""
    return value.rstrip().endswith("|")


# --------------------------------------------------------------------------------------------
# Line scanning and typed value parsing shared by readers and the validator.


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


# --------------------------------------------------------------------------------------------
# Public readers and writers.


def read_scp(path: PathLike) -> dict[str, str]:
    """Reads a ``<key> <value...>`` file (wav.scp, utt2spk, feats.scp, ...).

    The value is the rest of the line after the first run of whitespace, so a
    ``wav.scp`` command such as ``sox a.wav -t wav - |`` is kept whole.

    Args:
        path: File to read.

    Returns:
        Mapping from key to value, in file order.

    Raises:
        DataDirError: on a missing file, a line without a value or a duplicate key.
    """
    return _read(path, _as_text)


def read_wav_scp(path: PathLike) -> dict[str, str]:
    """Reads ``wav.scp``; a value is a path or a whole ``command ... |`` pipe (see :func:`is_pipe`).

    Args:
        path: File to read.

    Returns:
        Mapping from recording (or utterance) id to path or command, in file order.

    Raises:
        DataDirError: on a missing file, a line without a value or a duplicate key.
    """
    return _read(path, _as_text)


def read_utt2spk(path: PathLike) -> dict[str, str]:
    """Reads ``utt2spk``.

    Args:
        path: File to read.

    Returns:
        Mapping from utterance to speaker, in file order.

    Raises:
        DataDirError: on a line without exactly one speaker, or a duplicate utterance.
    """
    return _read(path, _as_token)


def read_spk2utt(path: PathLike) -> dict[str, list[str]]:
    """Reads ``spk2utt``.

    Args:
        path: File to read.

    Returns:
        Mapping from speaker to its utterances, in file order.

    Raises:
        DataDirError: on a line without utterances or a duplicate speaker.
    """
    return _read(path, _as_tokens)


def read_segments(path: PathLike) -> dict[str, Segment]:
    """Reads ``segments`` (``<utt> <rec> <start_s> <end_s>``).

    Args:
        path: File to read.

    Returns:
        Mapping from utterance to :class:`Segment`, in file order.

    Raises:
        DataDirError: on a wrong field count, a non-numeric or non-finite time, ``start < 0``,
            ``end <= start`` (other than ``end == -1``) or a duplicate utterance.
    """
    return _read(path, _as_segment)


def read_utt2num_frames(path: PathLike) -> dict[str, int]:
    """Reads ``utt2num_frames``.

    Args:
        path: File to read.

    Returns:
        Mapping from utterance to its number of frames (> 0).

    Raises:
        DataDirError: on a value that is not a positive integer, or a duplicate utterance.
    """
    return _read(path, _as_num_frames)


def read_utt2dur(path: PathLike) -> dict[str, float]:
    """Reads ``utt2dur``.

    Args:
        path: File to read.

    Returns:
        Mapping from utterance to its duration in seconds (> 0).

    Raises:
        DataDirError: on a value that is not a positive finite number, or a duplicate utterance.
    """
    return _read(path, _as_duration)


def read_feats_scp(path: PathLike) -> dict[str, str]:
    """Reads ``feats.scp`` (``<utt> <ark>:<offset>``); the rxspecifier is kept whole.

    Raises:
        DataDirError: on a missing file, a line without a value or a duplicate key.
    """
    return _read(path, _as_text)


def read_vad_scp(path: PathLike) -> dict[str, str]:
    """Reads ``vad.scp`` (``<utt> <ark>:<offset>``); the rxspecifier is kept whole.

    Raises:
        DataDirError: on a missing file, a line without a value or a duplicate key.
    """
    return _read(path, _as_text)


def read_id_list(path: PathLike) -> list[str]:
    """Reads a list of ids, one per line; only the first field counts (so an ``utt2spk`` works too).

    Args:
        path: File to read.

    Returns:
        The ids in file order.

    Raises:
        DataDirError: on a missing file or a repeated id.
    """
    ids: list[str] = []
    seen: dict[str, int] = {}
    for entry in _scan(path):
        if entry.key in seen:
            raise DataDirError(path, f"id repeated (first on line {seen[entry.key]})", entry.number, entry.key)
        seen[entry.key] = entry.number
        ids.append(entry.key)
    return ids


def write_scp(path: PathLike, table: Mapping[str, str | Sequence[str]], sort: bool = True) -> None:
    """Writes a ``<key> <value>`` file atomically, C-sorted by key.

    Args:
        path: Destination file.
        table: Mapping from key to a string value or a list of items (joined by spaces).
        sort: Sort keys in C-locale order (Kaldi requires it for most files).
    """
    keys = sorted(table, key=c_sort_key) if sort else list(table)
    with atomic_write(path) as handle:
        for key in keys:
            value = table[key]
            if not isinstance(value, str):
                value = " ".join(str(item) for item in value)
            handle.write(f"{key} {value}\n")


def write_spk2utt(path: PathLike, spk2utt: Mapping[str, Sequence[str]]) -> None:
    """Writes ``spk2utt`` atomically, C-sorted by speaker and within each speaker's list.

    Args:
        path: Destination file.
        spk2utt: Mapping from speaker to its utterances.
    """
    write_scp(path, {spk: sorted(utts, key=c_sort_key) for spk, utts in spk2utt.items()})


def write_segments(path: PathLike, segments: Mapping[str, Segment | tuple[str, float, float]]) -> None:
    """Writes ``segments`` atomically, C-sorted by utterance; times in seconds.

    Args:
        path: Destination file.
        segments: Mapping from utterance to ``(recording, start_s, end_s)``.
    """
    write_scp(path, {
        utt: f"{rec} {_format_float(start)} {_format_float(end)}" for utt, (rec, start, end) in segments.items()
    })


def write_utt2num_frames(path: PathLike, utt2num_frames: Mapping[str, int]) -> None:
    """Writes ``utt2num_frames`` atomically, C-sorted.

    Args:
        path: Destination file.
        utt2num_frames: Mapping from utterance to its number of frames.
    """
    write_scp(path, {utt: str(int(frames)) for utt, frames in utt2num_frames.items()})


def write_utt2dur(path: PathLike, utt2dur: Mapping[str, float]) -> None:
    """Writes ``utt2dur`` atomically, C-sorted; durations in seconds, written without rounding.

    Args:
        path: Destination file.
        utt2dur: Mapping from utterance to its duration in seconds.
    """
    write_scp(path, {utt: _format_float(seconds) for utt, seconds in utt2dur.items()})


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> dict[str, list[str]]:
    """Inverts utt2spk; utterance lists are C-sorted, like Kaldi's ``utt2spk_to_spk2utt.pl``."""
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk, key=c_sort_key):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return spk2utt


def spk2utt_to_utt2spk(spk2utt: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Inverts spk2utt."""
    return {utt: spk for spk, utts in spk2utt.items() for utt in utts}


TRIAL_LABELS = ("target", "nontarget")


def _as_trial(value: str) -> tuple[str, str]:
    fields = value.split()
    if len(fields) != 2:
        raise ValueError(f"expected '<enroll> <test> target|nontarget', got {len(fields) + 1} fields")
    if fields[1] not in TRIAL_LABELS:
        raise ValueError(f"label must be one of {TRIAL_LABELS}, got '{fields[1]}'")
    return fields[0], fields[1]


def _parse_trials(
    path: PathLike, entries: Iterable[_Entry], report: Reporter = _raise
) -> list[tuple[int, str, str, str]]:
    trials = []
    for entry in entries:
        try:
            test, label = _as_trial(entry.value)
        except ValueError as error:
            report(DataDirError(path, str(error), entry.number, entry.key))
            continue
        trials.append((entry.number, entry.key, test, label))
    return trials


def read_trials(path: PathLike) -> list[tuple[str, str, str]]:
    """Reads a Kaldi trial list ``<enroll> <test> target|nontarget``.

    Args:
        path: Trial file.

    Returns:
        ``(enroll, test, label)`` tuples in file order.

    Raises:
        DataDirError: on a line without three fields or with an unknown label.
    """
    # Fast path for the common, well-formed file (VoxCeleb-E/H lists have ~0.6 M lines): one
    # regular expression checks that every line is "<key> <key> <label>", then one split of the
    # whole text gives the fields (3x faster than splitting line by line). Past a million lines
    # the fields are interned so that repeated utterance ids share one string (10 M trials: 1.2
    # GB less); below, interning would cost more time (0.4 s at 0.55 M) than its memory is worth.
    # Any irregularity (blank lines, stray fields, odd whitespace) falls through to the
    # line-by-line reader, which names the bad line.
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    if text:
        text = _without_bom(path, text, None)
    if text and _WELL_FORMED_TRIALS.fullmatch(text):
        fields = text.split()
        if len(fields) > 3 * INTERN_TRIALS_ABOVE:
            fields = list(map(sys.intern, fields))
        return list(zip(fields[0::3], fields[1::3], fields[2::3]))
    return [(enroll, test, label) for _, enroll, test, label in _parse_trials(path, _scan(path))]


INTERN_TRIALS_ABOVE = 1_000_000
_TRIAL_LINE = r"\S+[ \t]+\S+[ \t]+(?:target|nontarget)[ \t]*"
_WELL_FORMED_TRIALS = re.compile(rf"(?:{_TRIAL_LINE}\r?\n)*(?:{_TRIAL_LINE})?")



def write_trials(path: PathLike, trials: Iterable[tuple[str, str, str]]) -> None:
    """Writes a Kaldi trial list atomically, in the given order."""
    with atomic_write(path) as handle:
        for enroll, test, label in trials:
            if label not in TRIAL_LABELS:
                raise ValueError(f"trial label must be one of {TRIAL_LABELS}, got '{label}'")
            handle.write(f"{enroll} {test} {label}\n")
