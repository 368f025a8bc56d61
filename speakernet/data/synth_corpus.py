"""The built-in synthetic corpus: speakers, sessions, data dirs and trials, made in parallel jobs.

Every voice comes from :mod:`speakernet.data.synth`. Everything is seeded from ``(seed, subset,
speaker, session, utterance)``, so the output is byte-identical whatever the number of jobs.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from speakernet.data.kaldi_dir import c_sort_key, utt2spk_to_spk2utt, write_scp, write_trials
from speakernet.data.synth import (
    SessionChannel,
    SpeakerProfile,
    _rng,
    sample_session,
    sample_speaker,
    synthesize_utterance,
)
from speakernet.utils.fileio import OutputError, PathLike, atomic_dir, atomic_write
from speakernet.utils.logging import Progress

logger = logging.getLogger(__name__)

# Bumped whenever the synthesis changes, so a corpus made by an older version is regenerated.
SYNTH_VERSION = 1
SUBSET_CODES = {"train": 0, "test": 1}
_KIND_SPEAKER, _KIND_SESSION, _KIND_UTTERANCE = 0, 1, 2


@lru_cache(maxsize=256)
def _speaker(seed: int, subset_code: int, speaker_index: int) -> SpeakerProfile:
    return sample_speaker(_rng(seed, subset_code, _KIND_SPEAKER, speaker_index))


@lru_cache(maxsize=1024)
def _session(seed: int, subset_code: int, speaker_index: int, session_index: int) -> SessionChannel:
    return sample_session(_rng(seed, subset_code, _KIND_SESSION, speaker_index, session_index))


@dataclass(frozen=True)
class _UttJob:
    utt_id: str
    subset_code: int
    speaker_index: int
    session_index: int
    utt_index: int
    wav_path: str
    seed: int
    sample_rate: int
    min_duration_s: float
    max_duration_s: float


def _run_job(job: _UttJob) -> tuple[str, int]:
    """Synthesises and writes one utterance; returns ``(utt_id, num_samples)``."""
    rng = _rng(job.seed, job.subset_code, _KIND_UTTERANCE, job.utt_index)
    # Durations are whole 10 ms steps so utt2dur is exact.
    step = job.sample_rate // 100
    low, high = round(job.min_duration_s * 100), round(job.max_duration_s * 100)
    num_samples = int(rng.integers(low, high + 1)) * step
    wave = synthesize_utterance(
        _speaker(job.seed, job.subset_code, job.speaker_index),
        _session(job.seed, job.subset_code, job.speaker_index, job.session_index),
        rng,
        num_samples,
        job.sample_rate,
    )
    pcm = np.clip(np.round(wave * 32767.0), -32768, 32767).astype(np.int16)
    # Encode in memory: soundfile's own file writer syncs to disk on close, which dominates the cost.
    buffer = io.BytesIO()
    sf.write(buffer, pcm, job.sample_rate, subtype="PCM_16", format="WAV")
    try:
        Path(job.wav_path).parent.mkdir(parents=True, exist_ok=True)
        Path(job.wav_path).write_bytes(buffer.getvalue())
    except OSError as error:  # a full disk: the caller names the corpus dir, not this temporary path
        raise OutputError(error.errno, error.strerror, job.wav_path) from None
    return job.utt_id, num_samples


def _corpus_bytes(jobs: Sequence[_UttJob]) -> float:
    """Expected size of the corpus's audio: the mean duration of 16-bit mono PCM per utterance."""
    return sum((job.min_duration_s + job.max_duration_s) / 2 * job.sample_rate * 2 + 44 for job in jobs)


def _width(count: int, minimum: int) -> int:
    return max(minimum, len(str(count)))


def _subset_jobs(
    subset: str,
    prefix: str,
    num_speakers: int,
    utts_per_speaker: int,
    sessions_per_speaker: int,
    work_dir: Path,
    settings: dict[str, Any],
) -> list[_UttJob]:
    """Names the speakers, sessions and utterances of one subset (C-sort = numeric order)."""
    spk_width = _width(num_speakers, 4)
    sess_width = _width(sessions_per_speaker, 2)
    utt_width = _width(utts_per_speaker, 3)
    jobs = []
    for spk_index in range(num_speakers):
        spk = f"{prefix}{spk_index + 1:0{spk_width}d}"
        for n in range(utts_per_speaker):
            session_index = n % sessions_per_speaker
            utt = f"{spk}-s{session_index + 1:0{sess_width}d}-{n // sessions_per_speaker + 1:0{utt_width}d}"
            jobs.append(
                _UttJob(
                    utt_id=utt,
                    subset_code=SUBSET_CODES[subset],
                    speaker_index=spk_index,
                    session_index=session_index,
                    utt_index=spk_index * utts_per_speaker + n,
                    wav_path=str(work_dir / "wav" / spk / f"{utt}.wav"),
                    **settings,
                )
            )
    return jobs


def make_trials(
    utt2spk: dict[str, str],
    utt2session: dict[str, str],
    targets_per_utt: int,
    nontargets_per_utt: int,
    seed: int,
) -> list[tuple[str, str, str]]:
    """Pairs every test utterance with same-speaker and different-speaker utterances.

    Target partners are drawn from other sessions of the speaker first (then the same
    session), non-target partners from other speakers; there are no self-pairs and each
    unordered pair appears once.

    Args:
        utt2spk: Test utterance -> speaker.
        utt2session: Test utterance -> session id.
        targets_per_utt: Target trials drawn for each utterance as enrolment.
        nontargets_per_utt: Non-target trials drawn for each utterance as enrolment.
        seed: Seed of the pairing.

    Returns:
        ``(enroll, test, label)`` C-sorted by enrolment then test utterance.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SUBSET_CODES["test"], 99)))
    utts = sorted(utt2spk, key=c_sort_key)
    spk2utt = utt2spk_to_spk2utt(utt2spk)
    pairs: dict[tuple[str, str], str] = {}
    for utt in utts:
        same = [u for u in spk2utt[utt2spk[utt]] if u != utt]
        cross = [u for u in same if utt2session[u] != utt2session[utt]]
        within = [u for u in same if utt2session[u] == utt2session[utt]]
        chosen = list(rng.permutation(np.array(cross, dtype=object)))[:targets_per_utt] if cross else []
        if len(chosen) < targets_per_utt and within:
            chosen += list(rng.permutation(np.array(within, dtype=object)))[: targets_per_utt - len(chosen)]
        others = [u for u in utts if utt2spk[u] != utt2spk[utt]]
        if others:
            picks = rng.choice(len(others), size=min(nontargets_per_utt, len(others)), replace=False)
            chosen_non = [others[i] for i in sorted(picks)]
        else:
            chosen_non = []
        for other, label in [(u, "target") for u in chosen] + [(u, "nontarget") for u in chosen_non]:
            key = (utt, other) if c_sort_key(utt) < c_sort_key(other) else (other, utt)
            pairs.setdefault(key, label)
    keys = sorted(pairs, key=lambda pair: (c_sort_key(pair[0]), c_sort_key(pair[1])))
    return [(enroll, test, pairs[(enroll, test)]) for enroll, test in keys]


# A worker process costs seconds to start (spawn re-imports numpy and this package) and an
# utterance about 50 ms to make: below this many utterances per worker, fewer workers finish sooner.
MIN_UTTS_PER_WORKER = 200


def _generate_all(jobs: Sequence[_UttJob], nj: int) -> dict[str, int]:
    """Runs the jobs in up to ``nj`` processes; job seeds make the output independent of ``nj``."""
    lengths: dict[str, int] = {}
    if nj > 1 + len(jobs) // MIN_UTTS_PER_WORKER:
        fewer = 1 + len(jobs) // MIN_UTTS_PER_WORKER
        logger.info("%d utterances: %d job(s) instead of %d (starting a worker costs more than it saves)",
                    len(jobs), fewer, nj)
        nj = fewer
    with Progress(len(jobs), "synthesising the corpus", "utts", log=logger) as progress:
        if nj <= 1:
            for job in jobs:
                utt, length = _run_job(job)
                lengths[utt] = length
                progress.update(1)
            return lengths
        # spawn: workers never inherit thread pools (torch, BLAS) from the parent.
        context = multiprocessing.get_context("spawn")
        chunksize = max(1, min(32, len(jobs) // (4 * nj)))
        with context.Pool(nj) as pool:
            for utt, length in pool.imap_unordered(_run_job, jobs, chunksize=chunksize):
                lengths[utt] = length
                progress.update(1)
    return lengths


def _write_subset(data_dir: Path, jobs: Sequence[_UttJob], lengths: dict[str, int], audio_root: Path) -> None:
    """Writes wav.scp (absolute final paths), utt2spk, spk2utt and utt2dur of one subset."""
    utt2spk = {job.utt_id: job.utt_id.split("-", 1)[0] for job in jobs}
    missing = [job.utt_id for job in jobs if job.utt_id not in lengths]
    if missing:
        raise RuntimeError(f"{len(missing)} utterances were not generated, e.g. '{missing[0]}'")
    write_scp(data_dir / "wav.scp", {job.utt_id: str(audio_root / "wav" / utt2spk[job.utt_id] / f"{job.utt_id}.wav")
                                     for job in jobs})
    write_scp(data_dir / "utt2spk", utt2spk)
    write_scp(data_dir / "spk2utt", utt2spk_to_spk2utt(utt2spk))
    write_scp(data_dir / "utt2dur", {job.utt_id: f"{lengths[job.utt_id] / job.sample_rate:.2f}" for job in jobs})


def generate_corpus(
    out_dir: PathLike,
    num_train_speakers: int = 200,
    num_test_speakers: int = 40,
    utts_per_speaker: int = 20,
    test_utts_per_speaker: int = 10,
    sessions_per_speaker: int = 4,
    duration_range_s: tuple[float, float] = (2.0, 4.0),
    sample_rate: int = 16000,
    trials_per_utt: int = 5,
    seed: int = 0,
    nj: int = 1,
) -> dict[str, Any]:
    """Generates the synthetic corpus: audio, Kaldi data dirs for train and test, test trials.

    Layout: ``out_dir/wav/<spk>/<utt>.wav`` (16-bit PCM), ``out_dir/data/train`` and
    ``out_dir/data/test`` with ``wav.scp`` (absolute paths), ``utt2spk``, ``spk2utt``,
    ``utt2dur``; the test dir also has ``trials``. Train speakers are ``tr0001...``, test
    speakers ``te0001...``, utterances ``<spk>-s<session>-<n>``. The whole directory is
    built under a temporary name and moved into place; ``out_dir/.done`` records the
    arguments, and a re-run with the same arguments returns at once.

    Args:
        out_dir: Corpus directory (created; replaced if it holds a corpus made with other arguments).
        num_train_speakers: Training speakers.
        num_test_speakers: Test speakers (disjoint from training).
        utts_per_speaker: Utterances per training speaker.
        test_utts_per_speaker: Utterances per test speaker.
        sessions_per_speaker: Sessions (channels) per speaker; utterances cycle over them.
        duration_range_s: ``(min, max)`` utterance duration (s), drawn uniformly in 10 ms steps.
        sample_rate: Sampling rate (Hz).
        trials_per_utt: Target and non-target partners drawn per test utterance.
        seed: Seed of everything.
        nj: Parallel processes (does not change the output).

    Returns:
        Summary: ``args`` (as recorded in ``.done``), ``train``/``test`` (``num_speakers``,
        ``num_utts``, ``hours``; test also ``num_trials``, ``num_target``, ``num_nontarget``),
        ``audio_seconds``, ``wall_seconds`` and ``skipped`` (True when an existing corpus was kept).

    Raises:
        ValueError: on invalid sizes, or when ``out_dir`` exists and holds files that are not
            a synthetic corpus (so they are never deleted).
    """
    out_dir = Path(out_dir)
    low, high = float(duration_range_s[0]), float(duration_range_s[1])
    if not 0.2 <= low <= high:
        raise ValueError(f"duration_range_s must satisfy 0.2 <= min <= max, got {duration_range_s}")
    for name, value in [("num_train_speakers", num_train_speakers), ("num_test_speakers", num_test_speakers),
                        ("utts_per_speaker", utts_per_speaker), ("test_utts_per_speaker", test_utts_per_speaker),
                        ("sessions_per_speaker", sessions_per_speaker), ("sample_rate", sample_rate)]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if num_test_speakers < 2 or test_utts_per_speaker < 2:
        raise ValueError("the test set needs >= 2 speakers with >= 2 utterances each to have both trial labels")
    if sample_rate % 100:
        raise ValueError(f"sample_rate must be a multiple of 100 Hz, got {sample_rate}")
    args = {
        "version": SYNTH_VERSION,
        "num_train_speakers": num_train_speakers,
        "num_test_speakers": num_test_speakers,
        "utts_per_speaker": utts_per_speaker,
        "test_utts_per_speaker": test_utts_per_speaker,
        "sessions_per_speaker": sessions_per_speaker,
        "duration_range_s": [low, high],
        "sample_rate": sample_rate,
        "trials_per_utt": trials_per_utt,
        "seed": seed,
        "out_dir": str(out_dir.resolve()),
    }
    done_path = out_dir / ".done"
    if done_path.is_file():
        try:
            record = json.loads(done_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            record = {}
        complete = all((out_dir / "data" / name).is_file() for name in ("train/wav.scp", "test/trials"))
        if record.get("args") == args and complete:
            logger.info("%s is complete (same arguments in %s), skipping", out_dir, done_path)
            return {"args": args, **record.get("summary", {}), "skipped": True}
        logger.info("%s was made with other arguments, regenerating", out_dir)
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in {"wav", "data", ".done"})
        if foreign:
            raise ValueError(
                f"{out_dir} exists and holds {foreign[:5]}, not a synthetic corpus; refusing to replace it"
            )

    start = time.time()
    settings = {"seed": seed, "sample_rate": sample_rate, "min_duration_s": low, "max_duration_s": high}
    audio_root = out_dir.resolve()
    with atomic_dir(out_dir) as work:
        subsets = {
            "train": _subset_jobs("train", "tr", num_train_speakers, utts_per_speaker, sessions_per_speaker,
                                  work, settings),
            "test": _subset_jobs("test", "te", num_test_speakers, test_utts_per_speaker, sessions_per_speaker,
                                 work, settings),
        }
        all_jobs = subsets["train"] + subsets["test"]
        logger.info("synthesising %d utterances with %d jobs into %s", len(all_jobs), nj, out_dir)
        try:
            lengths = _generate_all(all_jobs, nj)
        except OutputError as error:  # raised in a worker, about a file of the temporary dir
            raise OutputError(error.errno, f"{error.strerror}; the corpus needs about "
                              f"{_corpus_bytes(all_jobs) / 2**20:.0f} MiB", str(out_dir)) from None
        summary: dict[str, Any] = {}
        total_samples = 0
        for subset, jobs in subsets.items():
            _write_subset(work / "data" / subset, jobs, lengths, audio_root)
            samples = sum(lengths[job.utt_id] for job in jobs)
            total_samples += samples
            summary[subset] = {
                "num_speakers": num_train_speakers if subset == "train" else num_test_speakers,
                "num_utts": len(jobs),
                "hours": round(samples / sample_rate / 3600.0, 4),
            }
        test_jobs = subsets["test"]
        trials = make_trials(
            {job.utt_id: job.utt_id.split("-", 1)[0] for job in test_jobs},
            {job.utt_id: job.utt_id.rsplit("-", 1)[0] for job in test_jobs},
            trials_per_utt,
            trials_per_utt,
            seed,
        )
        write_trials(work / "data" / "test" / "trials", trials)
        num_target = sum(1 for trial in trials if trial[2] == "target")
        summary["test"].update({"num_trials": len(trials), "num_target": num_target,
                                "num_nontarget": len(trials) - num_target})
        elapsed = time.time() - start
        audio_s = total_samples / sample_rate
        summary["audio_seconds"] = round(audio_s, 2)
        summary["wall_seconds"] = round(elapsed, 2)
        with atomic_write(work / ".done") as handle:
            json.dump({"args": args, "summary": summary}, handle, indent=2, sort_keys=True)
    logger.info(
        "generated %.2f h of audio (%d utts, %d trials) in %.1f s: %.1fx real time",
        audio_s / 3600.0, len(all_jobs), len(trials), elapsed, audio_s / max(elapsed, 1e-9),
    )
    return {"args": args, **summary, "skipped": False}
