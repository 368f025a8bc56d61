"""Reading and writing the files of a Kaldi data directory.

Every reader reports problems as :class:`DataDirError` naming the file, the 1-based line
number and the key, so a user can open the file at the bad line. Every writer sorts keys
in C-locale (byte) order, as Kaldi's ``LC_ALL=C sort`` does, and writes atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from speakernet.utils.fileio import PathLike, atomic_write


class DataDirError(ValueError):
    """A malformed or inconsistent file in a Kaldi data directory."""

    def __init__(self, path: PathLike, message: str, line: int | None = None, key: str | None = None):
        self.path = str(path)
        self.line = line
        self.key = key
        where = self.path if line is None else f"{self.path}:{line}"
        what = "" if key is None else f" (key '{key}')"
        super().__init__(f"{where}{what}: {message}")


def c_sort_key(key: str) -> bytes:
    """Sort key giving C-locale (byte-wise) order, as ``LC_ALL=C sort``."""
    return key.encode("utf-8")


def _lines(path: PathLike) -> Iterable[tuple[int, str]]:
    path = Path(path)
    if not path.is_file():
        raise DataDirError(path, "file does not exist")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if line.strip():
                yield number, line


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
    table: dict[str, str] = {}
    for number, line in _lines(path):
        parts = line.strip().split(maxsplit=1)
        if len(parts) < 2:
            raise DataDirError(path, "line has a key but no value", number, parts[0])
        key, value = parts[0], parts[1].strip()
        if key in table:
            raise DataDirError(path, "duplicate key", number, key)
        table[key] = value
    return table


def read_scp_lists(path: PathLike) -> dict[str, list[str]]:
    """Reads a ``<key> <item> <item> ...`` file (spk2utt, segments, ...).

    Args:
        path: File to read.

    Returns:
        Mapping from key to its whitespace-separated items, in file order.

    Raises:
        DataDirError: on a missing file, a line without items or a duplicate key.
    """
    return {key: value.split() for key, value in read_scp(path).items()}


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


def read_trials(path: PathLike) -> list[tuple[str, str, str]]:
    """Reads a Kaldi trial list ``<enroll> <test> target|nontarget``.

    Args:
        path: Trial file.

    Returns:
        ``(enroll, test, label)`` tuples in file order.

    Raises:
        DataDirError: on a line without three fields or with an unknown label.
    """
    trials = []
    for number, line in _lines(path):
        parts = line.split()
        if len(parts) != 3:
            raise DataDirError(path, f"expected '<enroll> <test> target|nontarget', got {len(parts)} fields", number)
        if parts[2] not in TRIAL_LABELS:
            raise DataDirError(path, f"label must be one of {TRIAL_LABELS}, got '{parts[2]}'", number, parts[0])
        trials.append((parts[0], parts[1], parts[2]))
    return trials


def write_trials(path: PathLike, trials: Iterable[tuple[str, str, str]]) -> None:
    """Writes a Kaldi trial list atomically, in the given order."""
    with atomic_write(path) as handle:
        for enroll, test, label in trials:
            if label not in TRIAL_LABELS:
                raise ValueError(f"trial label must be one of {TRIAL_LABELS}, got '{label}'")
            handle.write(f"{enroll} {test} {label}\n")
