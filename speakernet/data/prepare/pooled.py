"""A pooled real-speech benchmark from small public corpora, split by speaker.

Each corpus alone gives an optimistic EER (its same-speaker recordings mostly share one
session), so the benchmark pools them, splits *speakers* (never utterances) into train and
test per corpus, and adds cross-corpus non-target trials. Supported layouts (roots are arguments):

* LibriSpeech ``<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac``: each file is cut into
  non-overlapping segments (a Kaldi ``segments`` file), so a speaker with one long
  recording still has several utterances. Speaker ``ls-<spk>``.
* Speech Commands ``<word>/<speaker-hash>_nohash_<n>.flac|wav`` (folders starting with ``_``,
  e.g. ``_background_noise_``, are skipped). Speaker ``sc-<hash>``.
* Arabic Speech Commands ``dataset/<word>/<speaker>_NO_<rep>.flac``. Speaker ``ar-<speaker>``.
* Free Spoken Digit Dataset ``recordings/<digit>_<name>_<idx>.wav`` (8 kHz; the feature stage
  resamples). Speaker ``fs-<name>``.

Outputs under ``out_dir``: ``train`` and ``test`` data directories (``wav.scp`` keyed by recording,
``segments``, ``utt2spk``, ``spk2utt``, ``utt2dur``), ``test/trials`` (all trials, including
cross-corpus non-targets) and ``test/trials_<corpus>`` (trials whose two sides come from that corpus).
"""

from __future__ import annotations

import logging
import shutil
import math
import re
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import soundfile

from speakernet.data.prepare import (
    AUDIO_EXTENSIONS,
    ScannedFile,
    id_token,
    scan_audio_tree,
    scp_path,
    write_data_dir,
)
from speakernet.data.split import choose_speakers, count_for_fraction
from speakernet.utils.fileio import PathLike

logger = logging.getLogger(__name__)

# Corpus name -> speaker-id prefix.
CORPUS_PREFIXES = {"librispeech": "ls", "speech_commands": "sc", "arabic": "ar", "fsdd": "fs"}

_SPEECH_COMMANDS_NAME = re.compile(r"^([0-9A-Za-z]+)_nohash_(\d+)$")
_ARABIC_NAME = re.compile(r"^([0-9A-Za-z]+)_NO_(\d+)$")
_FSDD_NAME = re.compile(r"^(\d+)_([0-9A-Za-z]+)_(\d+)$")


@dataclass(frozen=True)
class PooledUtterance:
    """One utterance of the pooled corpus.

    Attributes:
        utt: Utterance id (speaker-prefixed).
        speaker: Speaker id (corpus-prefixed).
        corpus: Corpus name (a key of :data:`CORPUS_PREFIXES`).
        group: What the utterance says or when it was recorded (word, digit, chapter); target
            trials prefer partners from another group.
        recording: Recording id (the ``wav.scp`` key).
        path: Absolute audio path.
        start: Segment start in seconds.
        end: Segment end in seconds.
    """

    utt: str
    speaker: str
    corpus: str
    group: str
    recording: str
    path: str
    start: float
    end: float


@dataclass
class PooledSummary:
    """Counts of a pooled preparation.

    Attributes:
        speakers: ``(split, corpus)`` -> number of speakers.
        utterances: ``(split, corpus)`` -> number of utterances.
        trials: trial-list file name -> ``(total, target)``.
        dirs: split name -> data directory.
    """

    speakers: dict[tuple[str, str], int] = field(default_factory=dict)
    utterances: dict[tuple[str, str], int] = field(default_factory=dict)
    trials: dict[str, tuple[int, int]] = field(default_factory=dict)
    dirs: dict[str, Path] = field(default_factory=dict)


def _duration_ms(path: str) -> float:
    """Audio duration in seconds, floored to the millisecond so a segment never ends past the file."""
    info = soundfile.info(path)
    return math.floor(info.frames * 1000 / info.samplerate) / 1000


def _bad_name(scanned: ScannedFile, expected: str) -> ValueError:
    return ValueError(f"{scanned.path}: file name does not match the corpus layout '{expected}'")


# Builds (speaker, group, utt) from the match of a file's stem and the file.
IdBuilder = Callable[[re.Match[str], ScannedFile], tuple[str, str, str]]


def _whole_files(
    files: Sequence[ScannedFile], corpus: str, name: re.Pattern[str], layout: str, ids: IdBuilder
) -> list[PooledUtterance]:
    """One utterance per file; each stem must match ``name`` (else a ValueError quoting ``layout``)."""
    utts = []
    for scanned in files:
        match = name.match(scanned.stem)
        if match is None:
            raise _bad_name(scanned, layout)
        speaker, group, utt = ids(match, scanned)
        utts.append(PooledUtterance(utt, speaker, corpus, group, utt, scp_path(scanned.path), 0.0,
                                    _duration_ms(scanned.path)))
    return utts


def _word_ids(prefix: str) -> IdBuilder:
    """Ids of a keyword corpus (``<word>/<speaker>_<sep>_<n>``): ``<prefix>-<speaker>-<word>-<n>``, group: word."""

    def ids(match: re.Match[str], scanned: ScannedFile) -> tuple[str, str, str]:
        speaker, number = match.groups()
        word = id_token(scanned.dirs[0])
        return f"{prefix}-{speaker}", word, f"{prefix}-{speaker}-{word}-{number}"

    return ids


def _subdir_or_root(root: PathLike, name: str) -> Path:
    """``root/name`` if that directory exists (the corpus' parent was given), else ``root``."""
    root = Path(root)
    return root / name if (root / name).is_dir() else root


def collect_librispeech(root: PathLike, segment_seconds: float = 3.0) -> list[PooledUtterance]:
    """Lists LibriSpeech files cut into non-overlapping segments of ``segment_seconds``.

    A tail of at least half a segment becomes its own (shorter) segment; a file shorter than
    one segment is kept whole.

    Args:
        root: A LibriSpeech subset directory (``<spk>/<chapter>/<spk>-<chapter>-<utt>.flac``).
        segment_seconds: Segment length in seconds.

    Returns:
        The segments, utterance ids ``ls-<spk>-<chapter>-<utt>-<k>`` (k zero-padded).

    Raises:
        ValueError: on a non-positive segment length or a file name not matching its folders.
    """
    if segment_seconds <= 0:
        raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
    utts = []
    prefix = CORPUS_PREFIXES["librispeech"]
    for scanned in scan_audio_tree(root, depth=2, extensions=AUDIO_EXTENSIONS):
        speaker, chapter = (id_token(name) for name in scanned.dirs)
        if not scanned.stem.startswith(f"{speaker}-{chapter}-"):
            raise _bad_name(scanned, "<spk>/<chapter>/<spk>-<chapter>-<utt>.flac")
        recording = f"{prefix}-{scanned.stem}"
        path = scp_path(scanned.path)
        duration = _duration_ms(scanned.path)
        bounds = []
        start = 0.0
        while start + segment_seconds <= duration + 1e-9:
            bounds.append((start, round(start + segment_seconds, 3)))
            start = round(start + segment_seconds, 3)
        if (duration - start >= segment_seconds / 2 or not bounds) and duration > start:
            bounds.append((start, duration))
        for index, (begin, end) in enumerate(bounds):
            utts.append(PooledUtterance(f"{recording}-{index:03d}", f"{prefix}-{speaker}", "librispeech", chapter,
                                        recording, path, begin, end))
    return utts


def collect_speech_commands(root: PathLike) -> list[PooledUtterance]:
    """Lists Speech Commands files ``<word>/<hash>_nohash_<n>`` as ``sc-<hash>-<word>-<n>`` (group: word).

    Raises:
        ValueError: on a file name not matching the layout.
    """
    files = [f for f in scan_audio_tree(root, depth=1, extensions=AUDIO_EXTENSIONS) if not f.dirs[0].startswith("_")]
    return _whole_files(files, "speech_commands", _SPEECH_COMMANDS_NAME, "<word>/<speaker-hash>_nohash_<n>.flac",
                        _word_ids(CORPUS_PREFIXES["speech_commands"]))


def collect_arabic(root: PathLike) -> list[PooledUtterance]:
    """Lists Arabic Speech Commands files ``<word>/<spk>_NO_<rep>`` as ``ar-<spk>-<word>-<rep>`` (group: word).

    Args:
        root: The ``dataset`` folder (or its parent).

    Raises:
        ValueError: on a file name not matching the layout.
    """
    files = scan_audio_tree(_subdir_or_root(root, "dataset"), depth=1, extensions=AUDIO_EXTENSIONS)
    ids = _word_ids(CORPUS_PREFIXES["arabic"])
    return _whole_files(files, "arabic", _ARABIC_NAME, "<word>/<speaker>_NO_<rep>.flac", ids)


def _fsdd_ids(match: re.Match[str], scanned: ScannedFile) -> tuple[str, str, str]:
    digit, name, index = match.groups()
    prefix = CORPUS_PREFIXES["fsdd"]
    return f"{prefix}-{name}", digit, f"{prefix}-{name}-{digit}-{index}"


def collect_fsdd(root: PathLike) -> list[PooledUtterance]:
    """Lists Free Spoken Digit files ``<digit>_<name>_<idx>`` as ``fs-<name>-<digit>-<idx>`` (group: digit).

    Args:
        root: The ``recordings`` folder (or its parent).

    Raises:
        ValueError: on a file name not matching the layout.
    """
    files = scan_audio_tree(_subdir_or_root(root, "recordings"), depth=0, extensions=AUDIO_EXTENSIONS)
    return _whole_files(files, "fsdd", _FSDD_NAME, "recordings/<digit>_<name>_<idx>.wav", _fsdd_ids)


def split_speakers(speakers: Sequence[str], test_fraction: float, seed: int, corpus: str) -> set[str]:
    """Picks the test speakers of one corpus, deterministically for a (seed, corpus) pair.

    Args:
        speakers: The corpus' speakers.
        test_fraction: Fraction of speakers for test, in [0, 1]. Strictly between 0 and 1, at
            least one speaker lands on each side when there are two or more.
        seed: Random seed.
        corpus: Corpus name (mixed into the seed, so corpora are split independently).

    Returns:
        The test speakers.

    Raises:
        ValueError: if ``test_fraction`` is outside [0, 1].
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    rng = np.random.default_rng([seed, zlib.crc32(corpus.encode("utf-8"))])
    return choose_speakers(speakers, count_for_fraction(len(speakers), test_fraction), rng)


def make_pooled_trials(
    utts: Sequence[PooledUtterance], pairs_per_utt: int = 5, seed: int = 0
) -> list[tuple[str, str, str]]:
    """Builds verification trials over the test utterances.

    Every utterance (in sorted order) is paired with up to ``pairs_per_utt`` utterances of its own
    speaker (partners from another group, i.e. another word, digit or chapter, first), up to
    ``pairs_per_utt`` utterances of other speakers of its corpus, and up to ``pairs_per_utt``
    utterances of other corpora (drawn round-robin over the corpora, so a big corpus does not
    dominate). No utterance is paired with itself and an unordered pair appears once.

    Args:
        utts: Test utterances.
        pairs_per_utt: The "K" of each of the three kinds of partner.
        seed: Random seed.

    Returns:
        ``(enroll, test, "target"|"nontarget")`` sorted by (enroll, test).

    Raises:
        ValueError: on a negative ``pairs_per_utt``.
    """
    if pairs_per_utt < 0:
        raise ValueError(f"pairs_per_utt must be >= 0, got {pairs_per_utt}")
    rng = np.random.default_rng(seed)
    ordered = sorted(utts, key=lambda u: u.utt)
    by_speaker: dict[str, list[PooledUtterance]] = {}
    by_corpus: dict[str, list[PooledUtterance]] = {}
    for utt in ordered:
        by_speaker.setdefault(utt.speaker, []).append(utt)
        by_corpus.setdefault(utt.corpus, []).append(utt)
    corpora = sorted(by_corpus)
    seen: set[tuple[str, str]] = set()
    trials: list[tuple[str, str, str]] = []

    def shuffled(items: Sequence[PooledUtterance]) -> Iterator[PooledUtterance]:
        return (items[index] for index in rng.permutation(len(items)))

    def round_robin(pools: list[Iterator[PooledUtterance]]) -> Iterator[PooledUtterance]:
        while pools:
            for pool in list(pools):
                item = next(pool, None)
                if item is None:
                    pools.remove(pool)
                else:
                    yield item

    def take(utt: PooledUtterance, candidates: Iterator[PooledUtterance], label: str) -> None:
        taken = 0
        for other in candidates:
            if taken >= pairs_per_utt:
                return
            pair = (utt.utt, other.utt) if utt.utt < other.utt else (other.utt, utt.utt)
            if pair in seen:
                continue
            seen.add(pair)
            trials.append((utt.utt, other.utt, label))
            taken += 1

    for utt in ordered:
        same = [other for other in by_speaker[utt.speaker] if other.utt != utt.utt]
        other_group = [other for other in same if other.group != utt.group]
        same_group = [other for other in same if other.group == utt.group]
        take(utt, chain(shuffled(other_group), shuffled(same_group)), "target")
        take(utt, (other for other in shuffled(by_corpus[utt.corpus]) if other.speaker != utt.speaker), "nontarget")
        others = [corpora[index] for index in rng.permutation(len(corpora)) if corpora[index] != utt.corpus]
        take(utt, round_robin([shuffled(by_corpus[corpus]) for corpus in others]), "nontarget")
    trials.sort()
    return trials


def _count(trials: Sequence[tuple[str, str, str]]) -> tuple[int, int]:
    return len(trials), sum(1 for trial in trials if trial[2] == "target")


def prepare_pooled(
    out_dir: PathLike,
    librispeech_root: PathLike | None = None,
    speech_commands_root: PathLike | None = None,
    arabic_root: PathLike | None = None,
    fsdd_root: PathLike | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    segment_seconds: float = 3.0,
    pairs_per_utt: int = 5,
    min_utts_per_speaker: int = 2,
    adapt_fraction: float = 0.0,
) -> PooledSummary:
    """Prepares the pooled speaker-disjoint benchmark (``out_dir/train``, ``out_dir/test`` + trials).

    With ``adapt_fraction`` > 0, that fraction of each corpus' held-out speakers goes to
    ``out_dir/adapt`` instead of test: unlabelled in-domain data (each utterance its own
    "speaker" in utt2spk) for the back-ends' mean and AS-norm cohort, disjoint from the training
    and the test speakers; at least two test speakers per corpus stay in test.

    Args:
        out_dir: Where ``train`` and ``test`` are written.
        librispeech_root: LibriSpeech subset directory, or None.
        speech_commands_root: Speech Commands directory (``<word>/...``), or None.
        arabic_root: Arabic Speech Commands ``dataset`` directory, or None.
        fsdd_root: Free Spoken Digit ``recordings`` directory, or None.
        test_fraction: Fraction of each corpus' speakers held out for test.
        seed: Seed of the speaker split and of the trial sampling.
        segment_seconds: LibriSpeech segment length in seconds.
        pairs_per_utt: Trials per test utterance of each kind (target, same-corpus nontarget,
            cross-corpus nontarget); see :func:`make_pooled_trials`.
        min_utts_per_speaker: Speakers with fewer utterances are left out.
        adapt_fraction: Fraction of each corpus' held-out speakers for the unlabelled adapt set.

    Returns:
        The counts, also logged.

    Raises:
        ValueError: if no corpus root is given, or on a bad argument or file name.
        FileNotFoundError: on a missing corpus directory.
    """
    collectors: list[tuple[str, PathLike | None, Callable[[PathLike], list[PooledUtterance]]]] = [
        ("librispeech", librispeech_root, lambda root: collect_librispeech(root, segment_seconds)),
        ("speech_commands", speech_commands_root, collect_speech_commands),
        ("arabic", arabic_root, collect_arabic),
        ("fsdd", fsdd_root, collect_fsdd),
    ]
    if all(root is None for _, root, _ in collectors):
        raise ValueError("give at least one corpus root")
    if not 0.0 <= adapt_fraction < 1.0:
        raise ValueError(f"adapt_fraction must be in [0, 1), got {adapt_fraction}")
    summary = PooledSummary()
    splits: dict[str, list[PooledUtterance]] = {"train": [], "test": []}
    if adapt_fraction > 0:
        splits["adapt"] = []
    present: list[str] = []
    for corpus, root, collect in collectors:
        if root is None:
            continue
        started = time.perf_counter()
        utts = collect(root)
        elapsed = max(time.perf_counter() - started, 1e-9)
        if not utts:
            raise FileNotFoundError(f"{root}: no {corpus} audio found")
        logger.info("%s: %d utterances (%.1f h) read in %.2f s (%.0f files/s)", corpus, len(utts),
                    sum(u.end - u.start for u in utts) / 3600, elapsed, len({u.path for u in utts}) / elapsed)
        counts: dict[str, int] = {}
        for utt in utts:
            counts[utt.speaker] = counts.get(utt.speaker, 0) + 1
        kept = sorted(spk for spk, count in counts.items() if count >= min_utts_per_speaker)
        if len(kept) < len(counts):
            logger.info("%s: left out %d of %d speakers with fewer than %d utterances", corpus,
                        len(counts) - len(kept), len(counts), min_utts_per_speaker)
        test_speakers = split_speakers(kept, test_fraction, seed, corpus)
        adapt_speakers: set[str] = set()
        if adapt_fraction > 0 and len(test_speakers) > 2:
            adapt_speakers = split_speakers(sorted(test_speakers), adapt_fraction, seed, f"{corpus}/adapt")
            while len(test_speakers) - len(adapt_speakers) < 2:  # keep target and non-target test trials
                adapt_speakers.remove(max(adapt_speakers))
            test_speakers = test_speakers - adapt_speakers
        kept_set = set(kept)
        present.append(corpus)
        for split in splits:
            if split == "adapt":
                chosen = [u for u in utts if u.speaker in adapt_speakers]
            else:
                chosen = [u for u in utts
                          if u.speaker in kept_set and u.speaker not in adapt_speakers
                          and (u.speaker in test_speakers) == (split == "test")]
            splits[split].extend(chosen)
            summary.speakers[(split, corpus)] = len({u.speaker for u in chosen})
            summary.utterances[(split, corpus)] = len(chosen)

    started = time.perf_counter()
    trials = make_pooled_trials(splits["test"], pairs_per_utt, seed)
    logger.info("Built %d trials in %.2f s", len(trials), time.perf_counter() - started)
    corpus_of = {u.utt: u.corpus for u in splits["test"]}
    trial_lists = {"trials": trials}
    for corpus in present:
        trial_lists[f"trials_{corpus}"] = [t for t in trials if corpus_of[t[0]] == corpus_of[t[1]] == corpus]
    summary.trials = {name: _count(trial_list) for name, trial_list in trial_lists.items()}

    out_dir = Path(out_dir)
    for split, utts in splits.items():
        if not utts and split == "adapt":
            # Too few held-out speakers to spare some for adaptation (each corpus keeps two test
            # speakers): no adapt dir, so the recipes run without the *-adapt rows.
            logger.warning("No adapt speakers: every corpus has too few held-out speakers to spare some "
                           "(adapt_fraction=%s); %s is not written", adapt_fraction, out_dir / split)
            if (out_dir / split).exists():
                shutil.rmtree(out_dir / split)  # a stale one from an earlier run with more speakers
            continue
        if not utts:
            logger.warning("The %s split is empty (test_fraction=%s)", split, test_fraction)
        summary.dirs[split] = write_data_dir(
            out_dir / split,
            {u.recording: u.path for u in utts},
            {u.utt: u.utt if split == "adapt" else u.speaker for u in utts},  # adapt: unlabelled
            segments={u.utt: (u.recording, u.start, u.end) for u in utts},
            tables={"utt2dur": {u.utt: f"{u.end - u.start:.3f}" for u in utts}},
            trials=trial_lists if split == "test" else None,
        )
    _log_summary(summary, present)
    return summary


def _log_summary(summary: PooledSummary, corpora: Sequence[str]) -> None:
    for split in sorted({split for split, _ in summary.speakers}, key=("train", "test", "adapt").index):
        parts = ", ".join(f"{corpus} {summary.speakers[(split, corpus)]} spk/{summary.utterances[(split, corpus)]} utt"
                          for corpus in corpora)
        total_spk = sum(summary.speakers[(split, corpus)] for corpus in corpora)
        total_utt = sum(summary.utterances[(split, corpus)] for corpus in corpora)
        logger.info("%s: %d speakers, %d utterances (%s)", split, total_spk, total_utt, parts)
    for name, (total, targets) in summary.trials.items():
        logger.info("test/%s: %d trials (%d target, %d nontarget)", name, total, targets, total - targets)
