"""Reading and writing the files of a Kaldi data directory (validation: :mod:`speakernet.data.validate`).

Every reader reports problems as :class:`DataDirError` naming the file, the 1-based line
number and the key, so a user can open the file at the bad line. Every writer sorts keys
in C-locale (byte) order, as Kaldi's ``LC_ALL=C sort`` does, and writes atomically.

Files of a data directory (all ``<key> <value>`` per line, C-sorted by key):

- ``wav.scp``: ``<rec> <path>`` or ``<rec> <command> |`` (keyed by utterance without ``segments``).
- ``segments``: ``<utt> <rec> <start_s> <end_s>``; ``end_s == -1`` means "to the end of the recording".
- ``utt2spk`` / ``spk2utt``: speaker of each utterance and its inverse.
- ``utt2num_frames`` (int frames > 0), ``utt2dur`` (float seconds > 0).
- ``spk2gender``: ``<spk> m|f``.
- ``feats.scp`` / ``vad.scp``: ``<utt> <ark>:<offset>`` rxspecifiers.
- ``trials``: ``<enroll> <test> target|nontarget`` (not sorted; kept in file order).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from speakernet.data.kaldi_lines import (
    DataDirError,
    Reporter,
    Segment,
    _as_duration,
    _as_gender,
    _as_num_frames,
    _as_segment,
    _as_text,
    _as_token,
    _as_tokens,
    _Entry,
    _format_float,
    _raise,
    _read,
    _scan,
    _without_bom,
)
from speakernet.utils.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)


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
        if len(self.problems) == 1:  # the problem itself says it all
            super().__init__(first.path, first.message, first.line, first.key)
            return
        listing = [f"data dir {data_dir} has {len(self.problems)} problems:"]
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


def read_spk2gender(path: PathLike) -> dict[str, str]:
    """Reads ``spk2gender`` (``<spk> m|f``).

    Args:
        path: File to read.

    Returns:
        Mapping from speaker to ``"m"`` or ``"f"``, in file order.

    Raises:
        DataDirError: on a missing file, a value other than ``m`` or ``f``, or a duplicate speaker.
    """
    return _read(path, _as_gender)


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
