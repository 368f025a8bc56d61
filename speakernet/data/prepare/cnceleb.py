"""CN-Celeb1/2 (official layouts) -> Kaldi data directories and the evaluation trial list.

CN-Celeb1 root::

    data/<id>/<genre>-<session>-<n>.flac|wav   all speakers (dev < id00800, eval id00800-id00999)
    dev/dev.lst                                 dev (training) speakers, one per line
    eval/enroll/<id>-enroll.flac|wav            one concatenated enrolment file per eval speaker
    eval/test/<id>-<genre>-<session>-<n>.flac|wav
    eval/lists/enroll.lst                       <id>-enroll enroll/<id>-enroll.wav
    eval/lists/enroll.map                       <id>-enroll <id>/<f>.wav ...   (paths under data/)
    eval/lists/trials.lst                       <id>-enroll test/<f>.wav 0|1

CN-Celeb2 root: ``data/<id>/...`` and ``spk.lst``. The lists always say ``.wav``; the released files
are ``.flac``, so every listed file is resolved by its stem to the extension found on disk.

Outputs (under ``out_dir``): ``cnceleb_train`` (with ``min_train_duration``, its short utterances
merged per speaker and genre, WeSpeaker's way: :mod:`.combine_short`; and ``utt2dur``); ``eval_test`` with ``trials``
(``<id>-enroll <test-utt> target|nontarget``); and the enrolment side in one or both forms:

* ``eval_enroll`` ("concat"): one utterance per enrolment id, the official ``eval/enroll`` file;
* ``eval_enroll_map`` ("average"): every utterance listed in ``enroll.map``, each mapped by
  ``utt2spk`` to its enrolment id ``<id>-enroll``, so the per-speaker mean (``spk_xvector``) is the
  averaged enrolment embedding WeSpeaker reports as CNC-Eval-Avg.

In both forms the enrolment "speaker" is ``<id>-enroll``, the key used by the trial list.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import soundfile

from speakernet.data.audio import audio_header, ffmpeg_concat_pipe
from speakernet.data.kaldi_dir import DataDirError, read_id_list
from speakernet.data.prepare import (
    AUDIO_EXTENSIONS,
    ScannedFile,
    iter_list_fields,
    scan_audio_tree,
    scp_path,
    unique_by_key,
    write_data_dir,
)
from speakernet.data.prepare.combine_short import combine_short_utterances
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

ENROLL_MODES = ("concat", "average", "both")
# Decoded wav first: if a corpus was converted next to its flac files, read the faster format.
EXTENSION_PREFERENCE = (".wav", ".flac")
_TRIED = "/".join(EXTENSION_PREFERENCE)
FIRST_EVAL_SPEAKER = 800
_SPEAKER_ID = re.compile(r"^id(\d+)$")


def resolve_audio(path: Path) -> Path | None:
    """Returns ``path`` if it exists, else the same stem with another audio extension, else None."""
    if path.is_file():
        return path
    for ext in EXTENSION_PREFERENCE:
        candidate = path.with_suffix(ext)
        if candidate.is_file():
            return candidate
    return None


def _speaker_files(data_dir: Path, speakers: list[str] | None, list_path: Path | None) -> dict[str, ScannedFile]:
    """Lists ``data_dir/<spk>/*`` for the given speakers (all speakers when None) as utt -> file."""
    files = scan_audio_tree(data_dir, depth=1, extensions=AUDIO_EXTENSIONS)
    by_speaker: dict[str, list[ScannedFile]] = {}
    for scanned in files:
        by_speaker.setdefault(scanned.dirs[0], []).append(scanned)
    if speakers is None:
        speakers = sorted(by_speaker)
    pairs = []
    for speaker in speakers:
        if speaker not in by_speaker:
            where = list_path if list_path is not None else data_dir
            raise DataDirError(where, f"speaker has no audio under {data_dir / speaker}", key=speaker)
        pairs.extend((f"{speaker}-{scanned.stem}", scanned) for scanned in by_speaker[speaker])
    return unique_by_key(pairs, EXTENSION_PREFERENCE)


def _cnceleb1_dev_speakers(root: Path) -> tuple[list[str] | None, Path | None]:
    dev_list = root / "dev" / "dev.lst"
    if dev_list.is_file():
        speakers = read_id_list(dev_list)
        logger.info("CN-Celeb1 dev speakers from %s: %d", dev_list, len(speakers))
        return speakers, dev_list
    speakers = []
    for entry in sorted((root / "data").iterdir()):
        match = _SPEAKER_ID.match(entry.name)
        if entry.is_dir() and match and int(match.group(1)) < FIRST_EVAL_SPEAKER:
            speakers.append(entry.name)
    logger.warning("%s not found; taking the %d speakers below id%05d in data/ as dev speakers", dev_list,
                   len(speakers), FIRST_EVAL_SPEAKER)
    return speakers, None


def _read_enroll_lst(path: Path, eval_dir: Path) -> dict[str, str]:
    """``enroll.lst`` -> enrolment id -> absolute audio path (resolved under ``eval/``)."""
    enroll: dict[str, str] = {}
    for number, (key, relative) in iter_list_fields(path, 2, "'<id>-enroll enroll/<id>-enroll.wav'"):
        if key in enroll:
            raise DataDirError(path, "duplicate enrolment id", number, key)
        found = resolve_audio(eval_dir / relative)
        if found is None:
            raise DataDirError(path, f"no audio for '{relative}' under {eval_dir} (tried {_TRIED})", number, key)
        enroll[key] = scp_path(found)
    return enroll


def _read_enroll_map(path: Path, data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``enroll.map`` -> (utt -> absolute audio path, utt -> enrolment id); utt = ``<id>-enroll-<stem>``."""
    wav_scp: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    seen: set[str] = set()
    layout = "'<id>-enroll <spk>/<file>.wav ...'"
    # Any number of files per line, so the field count is checked here.
    for number, (key, *relatives) in iter_list_fields(path, None, layout):
        if not relatives:
            raise DataDirError(path, f"expected {layout}, got no files", number, key)
        if key in seen:
            raise DataDirError(path, "duplicate enrolment id", number, key)
        seen.add(key)
        for relative in relatives:
            found = resolve_audio(data_dir / relative)
            if found is None:
                raise DataDirError(path, f"no audio for '{relative}' under {data_dir} (tried {_TRIED})", number, key)
            utt = f"{key}-{Path(relative).stem}"
            if utt in utt2spk:
                raise DataDirError(path, f"'{relative}' gives a duplicate utterance id '{utt}'", number, key)
            wav_scp[utt] = scp_path(found)
            utt2spk[utt] = key
    return wav_scp, utt2spk


def merge_short_training_utterances(
    train: dict[str, ScannedFile], min_duration: float, audio_dir: PathLike | None = None
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Merges short training utterances within each (speaker, genre), WeSpeaker's CN-Celeb way.

    Args:
        train: Utterance (``<spk>-<genre>-<session>-<n>``) -> its file.
        min_duration: Minimum duration in seconds of a merged utterance.
        audio_dir: None: a merged utterance's ``wav.scp`` value is an ffmpeg pipe playing its parts in
            order (no copy; each read starts ffmpeg). Else its audio is written there, as
            ``<spk>/<utt>.wav`` (the parts' samples joined, 16-bit), as WeSpeaker does: read many
            times faster, for training from audio.

    Returns:
        ``(wav_scp, utt2spk, utt2dur)`` of the merged set, ``utt2dur`` the sum of the parts' (seconds).

    Raises:
        DataDirError: on a file whose audio header cannot be read, or parts of different sample rates.
    """
    utt2dur: dict[str, float] = {}
    for utt, scanned in train.items():
        header = audio_header(scanned.path)
        if header is None:
            raise DataDirError(scanned.path, "cannot read the audio header (needed to merge short utterances)",
                               key=utt)
        utt2dur[utt] = header[0] / header[1]
    # The genre is the file name's first field: <genre>-<session>-<n>.
    groups = {utt: f"{scanned.dirs[0]}-{scanned.stem.split('-', 1)[0]}" for utt, scanned in train.items()}
    merged = combine_short_utterances(utt2dur, groups, min_duration)
    wav_scp: dict[str, str] = {}
    for utt, parts in merged.items():
        paths = [train[part].path for part in parts]
        if len(parts) == 1:
            wav_scp[utt] = scp_path(paths[0])
        elif audio_dir is None:
            wav_scp[utt] = ffmpeg_concat_pipe(paths)
        else:
            wav_scp[utt] = scp_path(_write_joined(paths, Path(audio_dir) / train[parts[0]].dirs[0] / f"{utt}.wav", utt))
    utt2spk = {utt: train[parts[0]].dirs[0] for utt, parts in merged.items()}
    durations = {utt: f"{sum(utt2dur[part] for part in parts):.4f}" for utt, parts in merged.items()}
    return wav_scp, utt2spk, durations


def _write_joined(paths: list[str], out: Path, utt: str) -> Path:
    """Writes the files' samples one after the other as a 16-bit wav file (atomically)."""
    pieces, rates = [], set()
    for path in paths:
        samples, rate = soundfile.read(path, dtype="int16", always_2d=True)
        pieces.append(samples[:, 0])
        rates.add(rate)
    if len(rates) > 1:
        raise DataDirError(paths[0], f"the parts of a merged utterance have different sample rates {sorted(rates)}",
                           key=utt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    soundfile.write(tmp, np.concatenate(pieces), rates.pop(), subtype="PCM_16", format="WAV")
    os.replace(tmp, out)
    return out


def read_cnceleb_trials(
    path: PathLike, enroll_ids: set[str], test_utts: set[str]
) -> list[tuple[str, str, str]]:
    """Converts ``trials.lst`` (``<id>-enroll test/<f>.wav 0|1``) into Kaldi trials.

    Args:
        path: The official trial list.
        enroll_ids: Enrolment ids that were prepared.
        test_utts: Test utterance ids (file stems) that were prepared.

    Returns:
        ``(<id>-enroll, <test stem>, "target"|"nontarget")`` in file order.

    Raises:
        DataDirError: on a malformed line, an unknown label, an unknown enrolment id or a test
            file that does not exist, naming the list file, line and key.
    """
    path = Path(path)
    trials: list[tuple[str, str, str]] = []
    for number, (enroll, test_path, label) in iter_list_fields(path, 3, "'<id>-enroll test/<file>.wav 0|1'"):
        if label not in ("0", "1"):
            raise DataDirError(path, f"label must be 1 or 0, got '{label}'", number, enroll)
        if enroll not in enroll_ids:
            raise DataDirError(path, "enrolment id is not in the enrolment list", number, enroll)
        test = Path(test_path).stem
        if test not in test_utts:
            raise DataDirError(path, f"test audio '{test_path}' does not exist under eval/test", number, test)
        trials.append((enroll, test, "target" if label == "1" else "nontarget"))
    return trials


def prepare_cnceleb(
    cnceleb1_root: PathLike,
    out_dir: PathLike,
    cnceleb2_root: PathLike | None = None,
    enroll_mode: str = "both",
    min_train_duration: float = 0.0,
    merged_audio_dir: PathLike | None = None,
) -> dict[str, Path]:
    """Prepares the CN-Celeb training set and the CN-Celeb1 evaluation set.

    Args:
        cnceleb1_root: CN-Celeb1 root (``data/``, ``dev/``, ``eval/``).
        out_dir: Where the data directories are written.
        cnceleb2_root: Optional CN-Celeb2 root (``data/``, ``spk.lst``) added to training.
        enroll_mode: ``"concat"`` (official enrolment files -> ``eval_enroll``), ``"average"``
            (``enroll.map`` utterances -> ``eval_enroll_map``) or ``"both"``.
        min_train_duration: > 0: training utterances shorter than this (seconds) are merged with
            their neighbours of the same speaker and genre until they reach it (WeSpeaker uses 5).
        merged_audio_dir: With ``min_train_duration``: where the merged utterances' audio is written
            (None: ffmpeg pipes in ``wav.scp``, nothing written); see :func:`merge_short_training_utterances`.

    Returns:
        Data directory name -> path for every directory written.

    Raises:
        ValueError: on an unknown ``enroll_mode``, a negative ``min_train_duration``, or a
            ``merged_audio_dir`` without merging.
        FileNotFoundError: on a missing corpus directory or list.
        DataDirError: on a malformed list, a listed file that does not exist (naming the list
            file, line and key) or a speaker in both CN-Celeb1 and CN-Celeb2.
    """
    if enroll_mode not in ENROLL_MODES:
        raise ValueError(f"enroll_mode must be one of {ENROLL_MODES}, got '{enroll_mode}'")
    if min_train_duration < 0:
        raise ValueError(f"--min-train-duration must not be negative, got {min_train_duration}")
    if merged_audio_dir is not None and min_train_duration == 0:
        raise ValueError("--merged-audio-dir holds merged utterances: it needs --min-train-duration > 0")
    root = Path(cnceleb1_root).resolve()
    out_dir = Path(out_dir)
    data_dir = root / "data"
    eval_dir = root / "eval"
    lists_dir = eval_dir / "lists"
    for needed in (data_dir, eval_dir / "test", lists_dir):
        if not needed.is_dir():
            raise FileNotFoundError(f"{needed}: not found; is {root} a CN-Celeb1 root?")

    dev_speakers, dev_list = _cnceleb1_dev_speakers(root)
    train = _speaker_files(data_dir, dev_speakers, dev_list)
    if cnceleb2_root is not None:
        root2 = Path(cnceleb2_root).resolve()
        spk_list = root2 / "spk.lst"
        speakers2 = read_id_list(spk_list) if spk_list.is_file() else None
        if speakers2 is None:
            logger.warning("%s not found; taking every speaker directory under %s", spk_list, root2 / "data")
        train2 = _speaker_files(root2 / "data", speakers2, spk_list if speakers2 is not None else None)
        overlap = {scanned.dirs[0] for scanned in train2.values()} & {scanned.dirs[0] for scanned in train.values()}
        if overlap:
            raise DataDirError(spk_list, "speaker is both in CN-Celeb1 dev and CN-Celeb2", key=min(overlap))
        train.update(train2)

    # Everything is read and checked before anything is written, so a bad list leaves no partial output
    # (merged audio, when asked for, is written after every list has been read).
    dirs: dict[str, tuple[dict[str, str], dict[str, str], dict[str, list[tuple[str, str, str]]]]] = {}
    enroll_sets: list[set[str]] = []
    if enroll_mode in ("concat", "both"):
        enroll = _read_enroll_lst(lists_dir / "enroll.lst", eval_dir)
        dirs["eval_enroll"] = (enroll, {key: key for key in enroll}, {})
        enroll_sets.append(set(enroll))
    if enroll_mode in ("average", "both"):
        map_scp, map_utt2spk = _read_enroll_map(lists_dir / "enroll.map", data_dir)
        dirs["eval_enroll_map"] = (map_scp, map_utt2spk, {})
        enroll_sets.append(set(map_utt2spk.values()))
    if len(enroll_sets) == 2 and enroll_sets[0] != enroll_sets[1]:
        differing = enroll_sets[0] ^ enroll_sets[1]
        raise DataDirError(lists_dir / "enroll.map", f"enroll.lst and enroll.map list different enrolment ids "
                                                     f"({len(differing)} differ)", key=min(differing))

    test_files = scan_audio_tree(eval_dir / "test", depth=0, extensions=AUDIO_EXTENSIONS)
    test = unique_by_key(((scanned.stem, scanned) for scanned in test_files), EXTENSION_PREFERENCE)
    trials = read_cnceleb_trials(lists_dir / "trials.lst", enroll_sets[0], set(test))
    targets = sum(1 for trial in trials if trial[2] == "target")
    logger.info("CN-Celeb eval trials: %d (%d target, %d nontarget)", len(trials), targets, len(trials) - targets)
    dirs["eval_test"] = (
        {utt: scp_path(scanned.path) for utt, scanned in test.items()},
        # Test files are named <spk>-<genre>-<session>-<n>: the speaker is the first field.
        {utt: utt.split("-", 1)[0] for utt in test},
        {"trials": trials},
    )
    # Last, as it reads every training file's header (and may write the merged audio).
    train_tables: dict[str, dict[str, str]] = {}
    if min_train_duration > 0:
        train_scp, train_utt2spk, train_tables["utt2dur"] = merge_short_training_utterances(
            train, min_train_duration, merged_audio_dir)
        dirs["cnceleb_train"] = (train_scp, train_utt2spk, {})
    else:
        dirs["cnceleb_train"] = (
            {utt: scp_path(scanned.path) for utt, scanned in train.items()},
            {utt: scanned.dirs[0] for utt, scanned in train.items()},
            {},
        )
    return {name: write_data_dir(out_dir / name, wav_scp, utt2spk, trials=trial_lists,
                                 tables=train_tables if name == "cnceleb_train" else None)
            for name, (wav_scp, utt2spk, trial_lists) in dirs.items()}
