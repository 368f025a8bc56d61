"""Noise and reverberation sources as Kaldi data directories, and any folder of noise files as one.

A *source dir* is a data dir whose "speakers" are source categories (a MUSAN subset such as
``fma``, a simulated room such as ``smallroom_Room001``, a RIR database such as ``RWCP``):
``wav.scp`` (absolute paths), ``utt2spk``, ``spk2utt``, ``utt2dur`` (seconds, from the soundfile
headers) and ``dropped.tsv`` (the audio files left out, ``<utt>\t<reason> <path>``; empty when
none). Category ids keep only ``[A-Za-z0-9_.]`` (anything else becomes ``_``) and utterance ids are
``<category>-<file stem>`` (the stem alone when it already starts with ``<category>-``), so every
utterance sorts with its category, as Kaldi requires.

:func:`prepare_noise_dir` takes any tree of wav/flac files: a file in a sub-folder belongs to the
category named by its first sub-folder, a file directly under the root to the category ``name``
(default: the root folder's name).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


from speakernet.data.audio import audio_header
from speakernet.data.prepare import AUDIO_EXTENSIONS, scan_audio_tree, scp_path, write_data_dir
from speakernet.data.validate import validate_data_dir
from speakernet.utils.dropped import DROPPED_NAME, write_dropped
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

_MAX_LISTED = 5


@dataclass
class SourceEntry:
    """One audio file of a source dir.

    Attributes:
        utt: Utterance id (see :func:`source_utt_id`).
        category: Its category (the data dir's "speaker").
        path: The audio file.
    """

    utt: str
    category: str
    path: str


@dataclass
class SourceSummary:
    """What :func:`write_source_dir` wrote.

    Attributes:
        out_dir: The data directory written.
        num_files: Utterances (audio files) in it.
        categories: Utterances per category.
        total_seconds: Their summed duration.
        dropped: Utterance -> reason, the files left out (also in ``dropped.tsv``).
    """

    out_dir: Path
    num_files: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    total_seconds: float = 0.0
    dropped: dict[str, str] = field(default_factory=dict)


def source_token(text: str) -> str:
    """A category id made of ``[A-Za-z0-9_.]`` only: ``fma-western-art`` -> ``fma_western_art``."""
    token = re.sub(r"[^A-Za-z0-9_.]", "_", text.strip())
    if not token:
        raise ValueError(f"'{text}' gives an empty category id")
    return token


def source_utt_id(category: str, stem: str) -> str:
    """``<category>-<stem>``, or the stem when it already starts with ``<category>-``; whitespace -> ``_``."""
    stem = re.sub(r"\s+", "_", stem.strip())
    return stem if stem.startswith(f"{category}-") else f"{category}-{stem}"


def listed(names: Sequence[str]) -> str:
    """The first few of ``names``, comma-separated, with the number of the others."""
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def check_out_dir(root: Path, out_dir: Path) -> None:
    """Raises ValueError if writing ``out_dir`` (replaced as a whole) would replace ``root``."""
    resolved = out_dir.resolve()
    if resolved == root or resolved in root.parents:
        raise ValueError(f"out dir {out_dir} is or contains the source root {root}; writing it would replace the audio")


def write_source_dir(
    out_dir: PathLike, entries: Sequence[SourceEntry], what: str, dropped: dict[str, str] | None = None
) -> SourceSummary:
    """Writes a source dir (see the module docstring) from its files; unreadable ones are left out with a warning.

    Args:
        out_dir: Data directory to (re)create, replaced as a whole.
        entries: The files, each with its utterance id and category.
        what: What the files are, for messages (``"MUSAN music"``).
        dropped: Files already left out by the caller (utterance -> reason), written to ``dropped.tsv`` too.

    Returns:
        The counts of what was written and left out.

    Raises:
        ValueError: if two entries share an utterance id, or none of them is readable.
    """
    summary = SourceSummary(Path(out_dir), dropped=dict(dropped or {}))
    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    utt2dur: dict[str, str] = {}
    unreadable: list[str] = []
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.utt in seen:
            raise ValueError(f"{what}: '{seen[entry.utt]}' and '{entry.path}' both give utterance id '{entry.utt}'; "
                             "rename one of them")
        seen[entry.utt] = entry.path
        header = audio_header(entry.path)
        if header is None:
            unreadable.append(entry.path)
            summary.dropped[entry.utt] = f"unreadable_audio {entry.path}"
            continue
        seconds = header[0] / header[1]
        wav_scp[entry.utt] = scp_path(entry.path)
        utt2spk[entry.utt] = entry.category
        utt2dur[entry.utt] = f"{seconds:.6g}"
        summary.categories[entry.category] += 1
        summary.total_seconds += seconds
    if unreadable:
        logger.warning("%s: %d file(s) have no readable audio header or no samples and are left out: %s", what,
                       len(unreadable), listed(unreadable))
    if not utt2spk:
        raise ValueError(f"{what}: none of the {len(entries)} audio file(s) can be read")
    write_data_dir(summary.out_dir, wav_scp, utt2spk, tables={"utt2dur": utt2dur})
    validate_data_dir(summary.out_dir)
    write_dropped(summary.out_dir / DROPPED_NAME, summary.dropped)
    summary.num_files = len(utt2spk)
    logger.info("Prepared %s (%s): %d files, %d categories, %.1f s of audio, %d left out (%s)", summary.out_dir,
                what, summary.num_files, len(summary.categories), summary.total_seconds, len(summary.dropped),
                summary.out_dir / DROPPED_NAME)
    return summary


def log_skipped(what: str, skipped: Counter[str], expected: Sequence[str] = ()) -> None:
    """Logs the entries a scan passed over: a WARNING naming the counts, INFO for ``expected`` names only."""
    unexpected = {key: count for key, count in skipped.items() if key not in expected}
    if not skipped:
        return
    text = ", ".join(f"{count} {key or '(no extension)'}" for key, count in sorted(skipped.items()))
    if unexpected:
        logger.warning("%s: skipped %d entries that are not audio sources: %s", what, sum(skipped.values()), text)
    else:
        logger.info("%s: skipped %d entries that are not audio sources: %s", what, sum(skipped.values()), text)


def prepare_noise_dir(
    root: PathLike, out_dir: PathLike, name: str | None = None, extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> SourceSummary:
    """Writes the source dir of any tree of noise files (wav/flac at any depth).

    Args:
        root: Folder of noise files.
        out_dir: Data directory to (re)create.
        name: Category of the files directly under ``root`` (default: the root folder's name).
        extensions: Audio extensions taken (lower case with the dot).

    Returns:
        The counts of what was written and left out.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
        ValueError: if it holds no audio, two files give one id, or ``out_dir`` would replace ``root``.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: noise directory does not exist")
    check_out_dir(root, Path(out_dir))
    skipped: Counter[str] = Counter()
    files = scan_audio_tree(root, depth=None, extensions=extensions, skipped=skipped)
    if not files:
        raise ValueError(f"{root}: no {'/'.join(extensions)} files at any depth (expected <root>/**/<noise>.wav)")
    log_skipped(str(root), skipped)
    top = source_token(name if name is not None else root.name)
    entries = []
    for scanned in files:
        category = source_token(scanned.dirs[0]) if scanned.dirs else top
        stem = "-".join([*scanned.dirs[1:], scanned.stem])
        entries.append(SourceEntry(source_utt_id(category, stem), category, scanned.path))
    return write_source_dir(out_dir, entries, f"noise files under {root}")


def relative(path: str, root: Path) -> str:
    """``path`` relative to ``root``, for messages."""
    return os.path.relpath(path, root)
