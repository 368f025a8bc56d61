"""Any speaker-per-folder tree of audio files -> a Kaldi data directory.

Layout: ``<root>/<speaker>/**/<name>.<ext>``: each folder directly under the root is one speaker,
and its audio files may sit at any depth below it. Ids:

* speaker: the folder name, whitespace replaced by ``_``;
* utterance: ``<speaker>-<sub>-...-<name>``, the path below the speaker folder without the
  extension, ``/`` replaced by ``-`` and whitespace by ``_`` (``spk1/day 2/a.wav`` ->
  ``spk1-day_2-a``). Being prefixed by its speaker, an utterance sorts with it, as Kaldi requires.

Two files that give one utterance id (``a.wav`` next to ``a.flac``, or ``x/y.wav`` next to
``x-y.wav``) are an error naming both: which one is meant cannot be guessed, and ``--extensions``
keeps one format. Nothing is dropped silently: other files and hidden entries are counted and
logged, speaker folders without audio are listed in a warning, and audio directly under the root
(no speaker folder) or an empty tree is an error.

``wav.scp`` reads wav/flac/ogg/mp3 files directly (libsndfile decodes them); any other
extension (``.m4a``) is decoded by an ``ffmpeg`` pipe to mono wav at the given rate. ``utt2dur``
comes from the soundfile headers and is written when every file has one (not with m4a).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


from speakernet.data.kaldi_dir import c_sort_key
from speakernet.data.audio import audio_header, ffmpeg_pipe
from speakernet.data.prepare import ScannedFile, id_token, scan_audio_tree, scp_path, write_data_dir
from speakernet.data.validate import validate_data_dir
from speakernet.utils.fileio import PathLike
from speakernet.utils.dropped import DROPPED_NAME, write_dropped

logger = logging.getLogger(__name__)

#: Extensions taken when none are given.
DEFAULT_EXTENSIONS = (".wav", ".flac", ".mp3", ".m4a", ".ogg")
#: Extensions libsndfile (1.1+) reads, so ``wav.scp`` names the file itself; others go through ffmpeg.
SOUNDFILE_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
#: Separator of the parts of an utterance id.
ID_SEPARATOR = "-"
_MAX_LISTED = 5


@dataclass
class FolderSummary:
    """What :func:`prepare_folder` found and wrote.

    Attributes:
        out_dir: The data directory written.
        num_speakers: Speakers in it.
        num_utts: Utterances in it.
        formats: Number of utterances per extension (``".wav"``).
        skipped: Files left out, by lower-cased extension (``""``: none; ``"hidden"``: hidden entries).
        empty_speakers: Speaker folders without audio (left out).
        unreadable: Soundfile-format files whose header could not be read or that hold no audio (left out).
        has_utt2dur: Whether ``utt2dur`` was written.
    """

    out_dir: Path
    num_speakers: int = 0
    num_utts: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    empty_speakers: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    has_utt2dur: bool = False


def parse_extensions(text: str | Iterable[str]) -> tuple[str, ...]:
    """Parses ``"wav,flac"`` (or a list, with or without dots) into ``(".wav", ".flac")``, lower case.

    Raises:
        ValueError: if no extension is given.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    extensions = []
    for item in items:
        item = item.strip().lower()
        if item:
            ext = item if item.startswith(".") else f".{item}"
            if ext not in extensions:
                extensions.append(ext)
    if not extensions:
        raise ValueError(f"no audio extensions given (got '{text}')")
    return tuple(extensions)


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else "")


def _describe_skipped(skipped: Counter[str]) -> str:
    parts = [f"{count} hidden" if key == "hidden" else f"{count} {key or '(no extension)'}"
             for key, count in sorted(skipped.items(), key=lambda item: (-item[1], item[0]))]
    return ", ".join(parts)


def _check_speaker_order(speaker_dirs: dict[str, str], root: Path) -> None:
    """Raises if some utterance ids would not sort with their speakers.

    With ids ``<spk>-...``, speakers ``s`` and ``t`` sort like their utterances unless ``s`` is a
    prefix of ``t`` followed by a character that sorts at or before ``-`` (``a`` and ``a-b``:
    ``a-b-1`` < ``a-c`` while ``a`` < ``a-b``); Kaldi's tools then see an unsorted ``utt2spk``.
    """
    for speaker in speaker_dirs:
        for end, char in enumerate(speaker):
            if c_sort_key(char) <= c_sort_key(ID_SEPARATOR) and speaker[:end] in speaker_dirs:
                raise ValueError(
                    f"{root}: speaker folders '{speaker_dirs[speaker[:end]]}' and '{speaker_dirs[speaker]}' give "
                    f"utterance ids that do not sort with their speakers (Kaldi requires it); rename one so that "
                    f"neither name is the other's start followed by '{char}'")


def _header(path: str) -> tuple[float, int] | None:
    """(seconds, sample rate in Hz) from the file's header, or None if it cannot be read or holds no audio."""
    header = audio_header(path)
    return None if header is None else (header[0] / header[1], header[1])


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.6g}"


def prepare_folder(
    root: PathLike,
    out_dir: PathLike,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    sample_rate: int = 16000,
) -> FolderSummary:
    """Writes the Kaldi data directory of a speaker-per-folder tree (see the module docstring).

    Args:
        root: Tree root; each folder directly under it is a speaker.
        out_dir: Data directory to (re)create (``wav.scp``, ``utt2spk``, ``spk2utt``, and ``utt2dur``
            when every file has a soundfile header), replaced as a whole; ``dropped.tsv`` lists the
            audio files left out (``<utt>\tunreadable_audio <path>``), empty when none.
        extensions: Audio extensions to take (lower case with the dot, see :func:`parse_extensions`).
        sample_rate: Rate in Hz of the ffmpeg pipes (m4a etc.); files read directly keep their rate
            (the feature stage resamples).

    Returns:
        The counts of what was found, skipped and written.

    Raises:
        FileNotFoundError: if ``root`` is not a directory.
        ValueError: on an ``out_dir`` that is or contains ``root``, audio directly under the root,
            no audio at all, two files giving one utterance (or two folders one speaker) id,
            speaker names whose utterance ids would not sort with them, or a non-positive rate.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    root = Path(root).resolve()
    out_dir = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus directory does not exist")
    resolved_out = out_dir.resolve()
    if resolved_out == root or resolved_out in root.parents:
        raise ValueError(f"out dir {out_dir} is or contains the corpus root {root}; writing it would replace the audio")
    extensions = parse_extensions(extensions)
    summary = FolderSummary(out_dir)

    files = scan_audio_tree(root, depth=None, extensions=extensions, skipped=summary.skipped)
    at_root = [scanned for scanned in files if not scanned.dirs]
    if at_root:
        raise ValueError(f"{root}: {len(at_root)} audio file(s) directly under the root, e.g. "
                         f"'{os.path.basename(at_root[0].path)}'; the layout is <root>/<speaker>/**/<file>, "
                         "so move them into a folder per speaker")
    if not files:
        skipped = f" (skipped: {_describe_skipped(summary.skipped)})" if summary.skipped else ""
        raise ValueError(f"{root}: no {'/'.join(extensions)} files under any speaker folder{skipped}")

    speaker_dirs: dict[str, str] = {}
    for folder in sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")):
        speaker = id_token(folder)
        if speaker in speaker_dirs:
            raise ValueError(f"{root}: speaker folders '{speaker_dirs[speaker]}' and '{folder}' both give speaker id "
                             f"'{speaker}'; rename one of them")
        speaker_dirs[speaker] = folder

    by_utt: dict[str, ScannedFile] = {}
    utt2spk: dict[str, str] = {}
    for scanned in files:
        speaker = id_token(scanned.dirs[0])
        utt = ID_SEPARATOR.join([speaker, *(id_token(name) for name in scanned.dirs[1:]), id_token(scanned.stem)])
        if utt in by_utt:
            first, second = (os.path.relpath(item.path, root) for item in (by_utt[utt], scanned))
            raise ValueError(f"{root}: '{first}' and '{second}' both give utterance id '{utt}'; remove or rename "
                             "one (or keep one format with --extensions)")
        by_utt[utt] = scanned
        utt2spk[utt] = speaker
    with_audio = set(utt2spk.values())
    summary.empty_speakers = [folder for speaker, folder in speaker_dirs.items() if speaker not in with_audio]
    used = {speaker: folder for speaker, folder in speaker_dirs.items() if speaker in with_audio}
    _check_speaker_order(used, root)

    wav_scp: dict[str, str] = {}
    utt2dur: dict[str, str] = {}
    rates: Counter[int] = Counter()
    left_out: dict[str, str] = {}
    piped = 0
    for utt, scanned in by_utt.items():
        if scanned.suffix in SOUNDFILE_EXTENSIONS:
            header = _header(scanned.path)
            if header is None:
                summary.unreadable.append(os.path.relpath(scanned.path, root))
                left_out[utt] = f"unreadable_audio {summary.unreadable[-1]}"
                del utt2spk[utt]
                continue
            utt2dur[utt] = _format_seconds(header[0])
            rates[header[1]] += 1
            wav_scp[utt] = scp_path(scanned.path)
        else:
            wav_scp[utt] = ffmpeg_pipe(scanned.path, sample_rate)
            piped += 1
        summary.formats[scanned.suffix] += 1
    if not utt2spk:
        raise ValueError(f"{root}: none of the {len(by_utt)} audio files can be read")

    _log_findings(summary, root, extensions, piped, sample_rate)
    other_rates = {rate: count for rate, count in rates.items() if rate != sample_rate}
    if other_rates:
        logger.info("%d files are not at %d Hz (%s); the feature stage resamples them", sum(other_rates.values()),
                    sample_rate, ", ".join(f"{count} at {rate} Hz" for rate, count in sorted(other_rates.items())))
    summary.has_utt2dur = len(utt2dur) == len(utt2spk)
    tables = {"utt2dur": utt2dur} if summary.has_utt2dur else {}
    write_data_dir(out_dir, wav_scp, utt2spk, tables=tables)
    validate_data_dir(out_dir)
    # The files left out, one line each with the reason (the summary above counts them).
    write_dropped(out_dir / DROPPED_NAME, left_out)
    summary.num_utts = len(utt2spk)
    summary.num_speakers = len(set(utt2spk.values()))
    logger.info("Prepared %s from %s: %d speakers, %d utterances (%s)%s", out_dir, root, summary.num_speakers,
                summary.num_utts, ", ".join(f"{count} {ext}" for ext, count in sorted(summary.formats.items())),
                "" if summary.has_utt2dur else f"; no utt2dur ({piped} file(s) have no soundfile header)")
    return summary


def _log_findings(
    summary: FolderSummary, root: Path, extensions: Sequence[str], piped: int, sample_rate: int
) -> None:
    """Logs what was skipped or left out, and whether the ffmpeg pipes can run."""
    if summary.skipped:
        logger.warning("%s: skipped %d entries that are not %s files: %s", root, sum(summary.skipped.values()),
                       "/".join(extensions), _describe_skipped(summary.skipped))
    if summary.empty_speakers:
        logger.warning("%s: %d speaker folder(s) hold no audio and are left out: %s", root,
                       len(summary.empty_speakers), _listed(summary.empty_speakers))
    if summary.unreadable:
        logger.warning("%s: %d file(s) have no readable audio header or no samples and are left out: %s", root,
                       len(summary.unreadable), _listed(summary.unreadable))
    if piped:
        logger.info("%d file(s) are decoded by ffmpeg pipes to mono %d Hz wav", piped, sample_rate)
        if shutil.which("ffmpeg") is None:
            logger.warning("ffmpeg is not on PATH here: the %d piped files cannot be read until it is", piped)
