"""Corpus preparers: official corpus layouts -> Kaldi data directories and trial lists.

Each corpus has its own module (:mod:`.voxceleb`, :mod:`.cnceleb`, :mod:`.pooled`); this module
holds what they share: a fast directory scanner, a reader of the official list files,
``wav.scp`` value builders, an atomic data-directory writer and the entry points' error handling.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from speakernet.data.kaldi_dir import DataDirError, utt2spk_to_spk2utt, write_scp, write_trials
from speakernet.utils.fileio import PathLike, atomic_dir

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac")


class ScannedFile(NamedTuple):
    """One audio file found by :func:`scan_audio_tree`.

    Attributes:
        dirs: Names of the directories between the scanned base and the file.
        stem: File name without its extension.
        suffix: Lower-cased extension including the dot (``".wav"``).
        path: Absolute path of the file.
    """

    dirs: tuple[str, ...]
    stem: str
    suffix: str
    path: str


def scan_audio_tree(
    base: PathLike,
    depth: int | None,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    skipped: Counter[str] | None = None,
) -> list[ScannedFile]:
    """Lists the audio files exactly ``depth`` directory levels below ``base`` (any depth if None).

    ``os.scandir`` is used level by level (its directory entries carry the file type, so no
    per-file ``stat`` call is made): VoxCeleb2's 1 M files are listed in seconds, where
    ``Path.rglob`` would stat every file. Hidden entries (names starting with ``.``) are skipped.

    Args:
        base: Directory to scan.
        depth: Number of directory levels between ``base`` and the files (0: files directly in it),
            or None for files at every depth (a directory reached twice through links is read once).
        extensions: Accepted extensions, lower case with the dot; matched case-insensitively.
        skipped: If given, counts what the scan passes over at the depths it reads: other files by
            lower-cased extension (``""`` when there is none) and hidden entries under ``"hidden"``.

    Returns:
        The files, sorted by (dirs, stem, suffix).

    Raises:
        FileNotFoundError: if ``base`` is not a directory.
    """
    base = Path(base).resolve()
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: corpus directory does not exist")
    wanted = tuple(ext.lower() for ext in extensions)
    found: list[ScannedFile] = []
    visited: set[tuple[int, int]] = set()
    started = time.perf_counter()

    def visit(directory: str, dirs: tuple[str, ...]) -> None:
        if depth is None:
            info = os.stat(directory)
            if (info.st_dev, info.st_ino) in visited:
                return
            visited.add((info.st_dev, info.st_ino))
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    if skipped is not None:
                        skipped["hidden"] += 1
                    continue
                if depth is None or len(dirs) < depth:
                    if entry.is_dir():
                        visit(entry.path, dirs + (entry.name,))
                        continue
                    if depth is not None:
                        continue
                if entry.is_file():
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix.lower() in wanted:
                        found.append(ScannedFile(dirs, stem, suffix.lower(), entry.path))
                    elif skipped is not None:
                        skipped[suffix.lower()] += 1

    visit(str(base), ())
    found.sort()
    elapsed = max(time.perf_counter() - started, 1e-9)
    logger.info("Scanned %s: %d %s files in %.2f s (%.0f files/s)", base, len(found), "/".join(wanted), elapsed,
                len(found) / elapsed)
    return found


def id_token(text: str) -> str:
    """Makes a folder or file name usable inside a Kaldi id (no whitespace): ``zoom in`` -> ``zoom_in``."""
    return re.sub(r"\s+", "_", text.strip())


def unique_by_key(files: Iterable[tuple[str, ScannedFile]], preference: Sequence[str]) -> dict[str, ScannedFile]:
    """Keeps one file per key when a recording exists in several formats (``a.flac`` and ``a.wav``).

    Args:
        files: ``(key, file)`` pairs.
        preference: Extensions, most preferred first; the first one present wins.

    Returns:
        Mapping from key to the chosen file, in input order.
    """
    rank = {ext: index for index, ext in enumerate(preference)}
    chosen: dict[str, ScannedFile] = {}
    duplicates = 0
    for key, scanned in files:
        previous = chosen.get(key)
        if previous is None:
            chosen[key] = scanned
            continue
        duplicates += 1
        if rank.get(scanned.suffix, len(rank)) < rank.get(previous.suffix, len(rank)):
            chosen[key] = scanned
    if duplicates:
        logger.info("%d recordings exist in more than one format; kept one per key, preferring %s", duplicates,
                    "/".join(preference))
    return chosen


def iter_list_fields(
    path: PathLike, num_fields: int | None, expected: str, key_field: int | None = 0
) -> Iterator[tuple[int, list[str]]]:
    """Yields the whitespace-separated fields of each non-blank line of an official corpus list.

    The corpora's own lists (trial lists with the label first, ``enroll.lst``, ``dev.lst``) are
    not Kaldi ``<key> <value>`` tables, so they are split here rather than by the readers of
    :mod:`speakernet.data.kaldi_dir`; every line must have the same number of fields.

    Args:
        path: The list file (UTF-8).
        num_fields: Number of fields each line must have, or None for any number.
        expected: What a line should look like, for the error ``expected <expected>, got N fields``.
        key_field: Index of the field that names a line in that error, or None when no field is a
            key (e.g. a label comes first).

    Yields:
        ``(line number, fields)`` with 1-based line numbers, in file order.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        DataDirError: on a line with other than ``num_fields`` fields, naming the file, the line
            and (with ``key_field``) its key.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if num_fields is not None and len(fields) != num_fields:
                key = None if key_field is None or key_field >= len(fields) else fields[key_field]
                raise DataDirError(path, f"expected {expected}, got {len(fields)} fields", number, key)
            yield number, fields


def scp_path(path: PathLike) -> str:
    """Returns the ``wav.scp`` value reading an audio file: its absolute path.

    Kaldi splits ``wav.scp`` lines at the first whitespace and takes the rest as the value, so a
    path containing whitespace is read through a quoted ``cat '<path>' |`` pipe instead (real
    corpora have such folders, e.g. Arabic Speech Commands' ``zoom in``).

    Args:
        path: Audio file.

    Returns:
        The absolute path, or ``cat <quoted absolute path> |`` if it contains whitespace.
    """
    text = os.path.abspath(os.fspath(path))
    if any(char.isspace() for char in text):
        return f"cat {shlex.quote(text)} |"
    return text


def write_data_dir(
    path: PathLike,
    wav_scp: Mapping[str, str],
    utt2spk: Mapping[str, str],
    segments: Mapping[str, tuple[str, float, float]] | None = None,
    tables: Mapping[str, Mapping[str, str]] | None = None,
    trials: Mapping[str, Sequence[tuple[str, str, str]]] | None = None,
) -> Path:
    """Writes a complete Kaldi data directory atomically (built aside, then renamed into place).

    An existing directory at ``path`` is replaced as a whole, so features or embeddings of an
    older preparation never sit next to new lists.

    Args:
        path: Data directory to (re)create.
        wav_scp: Recording (or utterance, without segments) -> path or ``cmd |``.
        utt2spk: Utterance -> speaker.
        segments: Utterance -> (recording, start s, end s), or None.
        tables: Further ``<key> <value>`` files by name (e.g. ``utt2dur``).
        trials: Trial lists by file name, each ``(enroll, test, label)`` in the order to write.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    with atomic_dir(path) as tmp:
        write_scp(tmp / "wav.scp", wav_scp)
        write_scp(tmp / "utt2spk", utt2spk)
        write_scp(tmp / "spk2utt", utt2spk_to_spk2utt(utt2spk))
        if segments is not None:
            write_scp(tmp / "segments", {utt: f"{rec} {start:.3f} {end:.3f}" for utt, (rec, start, end)
                                         in segments.items()})
        for name, table in (tables or {}).items():
            write_scp(tmp / name, table)
        for name, trial_list in (trials or {}).items():
            write_trials(tmp / name, trial_list)
    logger.info("Wrote %s: %d utterances, %d speakers%s", path, len(utt2spk), len(set(utt2spk.values())),
                "".join(f", {name} ({len(trial_list)} trials)" for name, trial_list in (trials or {}).items()))
    return path
