"""The parallel shard stage: data dir -> ``S/shard-N.tar`` + ``S/shard-N.json``, ``D/shards.list``.

The utterances of the data dir, in an order drawn from ``seed`` (so that each shard mixes the speakers), are
cut into shards of at most ``utts_per_shard`` (as few as that allows, of sizes differing by one at most); the
shards are dealt to ``nj`` jobs (contiguous runs), each ``python -m speakernet.bin.make_shards
--shard-dir S --job J`` run by the launcher ``--cmd`` chooses, as for the feature stage. Layout::

    S/shard-000000.tar, S/shard-000000.json   a shard and its index (speakernet.data.shards.format)
    S/log/make_shards.json                     options and data dir shared by the jobs
    S/log/make_shards.J.shards                 the job's shards: one line each, its number then its utterances
    S/log/make_shards.J.log                    the job's log
    S/log/make_shards.J.failed                 the job's bad utterances, when it had some
    D/shards.list                              written only when every job succeeded

A shard whose tar and index exist and whose index holds the fingerprint of its inputs (the
utterances, their speakers, ``wav.scp`` values and segments, the source files' sizes and times, the
rate and format) is left as it is: a re-run after a kill or a change rewrites only the shards
that need it, and the same inputs always give the same bytes. A job reads every utterance of a
shard even when some fail, then fails with the full list of bad keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from speakernet.data.audio import AudioError, iter_data_dir_audio
from speakernet.data.datadir_ops import split_contiguous
from speakernet.data.kaldi_dir import c_sort_key, read_scp, read_segments
from speakernet.data.shards.format import (AUDIO_FORMATS, FORMAT_VERSION, SHARD_LIST_NAME, ShardError, ShardWriter,
                                           read_index, shard_path, write_shard_list)
from speakernet.features.make_features import list_utterances
from speakernet.utils.faults import fault_point
from speakernet.utils.fileio import OutputError, PathLike, as_output_error, atomic_write, ensure_writable_dir, \
    exclusive_lock
from speakernet.utils.launch import Launcher, launcher_from_command
from speakernet.utils.stage_jobs import (MAX_KEYS_IN_MESSAGE, PROGRESS_INTERVAL_S, check_parent, claim_dir, run_jobs,
                                         set_single_thread)

logger = logging.getLogger(__name__)

JOB_CONFIG_NAME = "make_shards.json"


class ShardingError(RuntimeError):
    """One or more shard jobs failed.

    Attributes:
        failed_jobs: The job numbers that failed.
        failed_utts: The utterance keys they reported as bad.
    """

    def __init__(self, message: str, failed_jobs: Sequence[int], failed_utts: Sequence[str]):
        super().__init__(message)
        self.failed_jobs = list(failed_jobs)
        self.failed_utts = list(failed_utts)


def _job_paths(shard_dir: Path, job: int) -> dict[str, Path]:
    log = shard_dir / "log"
    return {name: log / f"make_shards.{job}.{suffix}" for name, suffix in
            (("log", "log"), ("shards", "shards"), ("failed", "failed"), ("stats", "stats.json"),
             ("progress", "progress"))}


def make_shards(data_dir: PathLike, shard_dir: PathLike, utts_per_shard: int = 1000, nj: int = 1,
                sample_rate: int = 16000, audio_format: str = "flac", launcher: Launcher | str | None = None,
                seed: int = 0) -> Path:
    """Writes the shards of every utterance of a data dir, in parallel, and ``D/shards.list``.

    Args:
        data_dir: Kaldi data dir with ``wav.scp`` and ``utt2spk`` (optional ``segments``).
        shard_dir: Where the shards and ``log/`` go; one shard dir per data dir.
        utts_per_shard: Utterances per shard at most (the shards are as few as that allows, their sizes
            differing by one at most).
        nj: Number of parallel jobs (lowered to the number of shards if larger).
        sample_rate: Rate of the stored audio (others are resampled); the training front-end's.
        audio_format: ``flac`` or ``wav`` (see :func:`speakernet.data.shards.format.encode_audio`).
        launcher: What runs the jobs (``run.pl``, ``slurm.pl ...`` or a Launcher); None: ``run.pl``.
        seed: Seeds the order in which the utterances are dealt to the shards.

    Returns:
        The path of ``shards.list``.

    Raises:
        DataDirError: on a missing or inconsistent data dir.
        ValueError: on bad options or a shard dir that belongs to another data dir.
        ShardingError: when a job fails; the message names the jobs, their logs and the bad keys.
    """
    if nj < 1 or utts_per_shard < 1:
        raise ValueError(f"nj and utts_per_shard must be >= 1, got {nj} and {utts_per_shard}")
    if audio_format not in AUDIO_FORMATS:
        raise ValueError(f"unknown shard audio format '{audio_format}'; choose one of {', '.join(AUDIO_FORMATS)}")
    if not isinstance(launcher, Launcher):
        launcher = launcher_from_command(launcher)
    data_dir, shard_dir = Path(data_dir).resolve(), Path(shard_dir).resolve()
    utts = list_utterances(data_dir)  # a bad data dir is reported before anything is created
    try:
        ensure_writable_dir(data_dir)
    except OutputError as error:
        raise OutputError(error.errno, f"{error.strerror}; shards.list goes there: make shards of a writable copy "
                          f"(python -m speakernet.bin.combine_data COPY {data_dir})", str(data_dir)) from None
    with exclusive_lock(shard_dir / ".lock", "a shards run"):
        return _make_shards(data_dir, shard_dir, utts, utts_per_shard, nj, sample_rate, audio_format, launcher, seed)


def _make_shards(data_dir: Path, shard_dir: Path, utts: list[str], utts_per_shard: int, nj: int, sample_rate: int,
                 audio_format: str, launcher: Launcher, seed: int) -> Path:
    # The shards are about to change: a list of them must not outlive a failed run.
    with contextlib.suppress(FileNotFoundError):
        (data_dir / SHARD_LIST_NAME).unlink()
    # Dealt in a seeded random order, so that a shard (and a shuffle buffer's window of its stream) mixes the
    # speakers, instead of holding a few speakers' sorted utterances; as many shards as `utts_per_shard`
    # needs, of sizes that differ by one at most.
    dealt = [utts[index] for index in np.random.default_rng(seed).permutation(len(utts))]
    shards = split_contiguous(dealt, -(-len(utts) // utts_per_shard))
    if nj > len(shards):
        logger.warning("nj=%d is more than the %d shards of %s; using nj=%d", nj, len(shards), data_dir, len(shards))
        nj = len(shards)
    (shard_dir / "log").mkdir(parents=True, exist_ok=True)
    claim_dir(shard_dir, data_dir, "shard")
    with atomic_write(shard_dir / "log" / JOB_CONFIG_NAME) as handle:
        json.dump({"data_dir": str(data_dir), "nj": nj, "sample_rate": sample_rate, "audio_format": audio_format,
                   "utts_per_shard": utts_per_shard, "seed": seed, "num_shards": len(shards)}, handle, indent=2)
    numbers = list(range(len(shards)))
    for job, chunk in enumerate(split_contiguous(numbers, nj), start=1):
        paths = _job_paths(shard_dir, job)
        for name in ("failed", "progress", "stats"):
            with contextlib.suppress(FileNotFoundError):
                paths[name].unlink()
        with atomic_write(paths["shards"]) as handle:
            handle.writelines(f"{number} {' '.join(shards[number])}\n" for number in chunk)

    logger.info("making %d shards of up to %d utterances (%d in all) of %s in %s with %d jobs through %s (logs in "
                "%s)", len(shards), utts_per_shard, len(utts), data_dir, shard_dir, nj, launcher.command_name,
                shard_dir / "log")
    wall = run_jobs(launcher, "speakernet.bin.make_shards", "--shard-dir", shard_dir, "make_shards", "shard", nj,
                    lambda job, name: _job_paths(shard_dir, job)[name], len(utts), f"shards of {data_dir.name}",
                    ShardingError)

    totals = {"written": 0, "kept": 0, "utts": 0, "audio_seconds": 0.0}
    for job in range(1, nj + 1):
        stats = json.loads(_job_paths(shard_dir, job)["stats"].read_text(encoding="utf-8"))
        for key in totals:
            totals[key] += stats[key]
    # Every utterance in exactly one shard, as planned: checked on the indexes the jobs wrote.
    paths = [shard_path(shard_dir, number) for number in numbers]
    for number, path in enumerate(paths):
        index = read_index(path)
        if sorted(index.utts) != sorted(shards[number]):
            raise ShardingError(f"shard {path} does not hold the utterances it should although its job succeeded; "
                                f"see {shard_dir / 'log'}", [], [])
    _remove_stale_shards(shard_dir, len(shards))
    list_path = write_shard_list(data_dir, paths)
    hours = totals["audio_seconds"] / 3600
    logger.info("wrote %d shards and kept %d unchanged: %d utterances (%.2f h of audio) in %.1f s wall, %.1f utts/s, "
                "%.3f h of audio/s; %s lists the %d shards", totals["written"], totals["kept"], totals["utts"], hours,
                wall, totals["utts"] / max(wall, 1e-9), hours / max(wall, 1e-9), list_path, len(paths))
    return list_path


def _remove_stale_shards(shard_dir: Path, count: int) -> None:
    """Removes the shards numbered ``count`` and above (an earlier run of more data or smaller shards)."""
    pattern = re.compile(r"^shard-(\d+)\.(?:tar|json)$")
    for path in shard_dir.iterdir():
        match = pattern.match(path.name)
        if match and int(match.group(1)) >= count:
            path.unlink()


def shard_fingerprint(utts: Sequence[str], data_dir: Path, utt2spk: dict[str, str], wav_scp: dict[str, str],
                      segments: dict | None, sample_rate: int, audio_format: str) -> str:
    """SHA-256 of what a shard is made from: its utterances, speakers, audio sources (with the files'
    sizes and modification times) and segments, the rate and the format."""
    items = []
    for utt in utts:
        segment = list(segments[utt]) if segments is not None else None
        spec = wav_scp[segment[0]] if segment is not None else wav_scp[utt]
        stat = None
        if not spec.rstrip().endswith("|"):
            with contextlib.suppress(OSError):
                info = os.stat(spec.strip())
                stat = [info.st_size, info.st_mtime_ns]
        items.append([utt, utt2spk[utt], spec, segment, stat])
    text = json.dumps([FORMAT_VERSION, sample_rate, audio_format, str(data_dir), items])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _up_to_date(path: Path, fingerprint: str) -> bool:
    try:
        return read_index(path).fingerprint == fingerprint
    except ShardError:
        return False


class _BadShard(Exception):
    """Raised inside a shard's writer to discard it (some utterance failed)."""


def run_shard_job(shard_dir: PathLike, job: int) -> None:
    """Runs one job of :func:`make_shards` (in the job's own process).

    Raises:
        ShardingError: if any utterance failed (all bad keys are logged and written to
            ``S/log/make_shards.<job>.failed`` first).
    """
    set_single_thread()
    shard_dir = Path(shard_dir).resolve()
    options = json.loads((shard_dir / "log" / JOB_CONFIG_NAME).read_text(encoding="utf-8"))
    data_dir, rate, audio_format = Path(options["data_dir"]), int(options["sample_rate"]), options["audio_format"]
    paths = _job_paths(shard_dir, job)
    plan = [line.split() for line in paths["shards"].read_text(encoding="utf-8").splitlines() if line.strip()]
    utt2spk = read_scp(data_dir / "utt2spk")
    wav_scp = read_scp(data_dir / "wav.scp")
    segments = read_segments(data_dir / "segments") if (data_dir / "segments").is_file() else None
    logger.info("job %d: shards %s-%s of %s (%d utterances)", job, plan[0][0], plan[-1][0], data_dir,
                sum(len(line) - 1 for line in plan))
    errors: dict[str, str] = {}
    stats = {"written": 0, "kept": 0, "utts": 0, "audio_seconds": 0.0}
    done, reported, start_time = 0, time.perf_counter(), time.perf_counter()

    def record(error: AudioError) -> None:
        errors[error.utt or "?"] = str(error)
        logger.error("%s", error)

    for number, *utts in plan:
        path = shard_path(shard_dir, int(number))
        fingerprint = shard_fingerprint(utts, data_dir, utt2spk, wav_scp, segments, rate, audio_format)
        if _up_to_date(path, fingerprint):
            stats["kept"] += 1
            done += len(utts)
            continue
        failed_before = len(errors)
        try:
            with ShardWriter(path, rate, audio_format, fingerprint) as writer:
                for utt, waveform, _ in iter_data_dir_audio(data_dir, utts, rate, record):
                    writer.add(utt, utt2spk[utt], waveform)
                    stats["audio_seconds"] += waveform.shape[0] / rate
                    done += 1
                    fault_point("shards.utt")
                    check_parent(lambda message: ShardingError(message, [], []))
                    if time.perf_counter() - reported > PROGRESS_INTERVAL_S:
                        reported = time.perf_counter()
                        paths["progress"].write_text(f"{done}\n", encoding="utf-8")
                if len(errors) > failed_before:
                    raise _BadShard
        except _BadShard:
            continue
        except OSError as error:
            raise as_output_error(error, path, permissions=False) from None
        stats["written"] += 1
        stats["utts"] += len(utts)
        if writer.float_utts:
            logger.info("%s: %d utterances are not 16-bit audio (float or resampled sources): stored as 32-bit "
                        "float WAV", path, writer.float_utts)
    if errors:
        bad = sorted(errors, key=c_sort_key)
        with atomic_write(paths["failed"]) as handle:
            handle.writelines(f"{utt}\n" for utt in bad)
        shown = " ".join(bad[:MAX_KEYS_IN_MESSAGE]) + (f" (and {len(bad) - MAX_KEYS_IN_MESSAGE} more)"
                                                       if len(bad) > MAX_KEYS_IN_MESSAGE else "")
        raise ShardingError(f"job {job}: {len(bad)} utterances failed: {shown}", [job], bad)
    wall = time.perf_counter() - start_time
    with atomic_write(paths["stats"]) as handle:
        json.dump({**stats, "wall_seconds": wall}, handle)
    logger.info("job %d done: %d shards written (%d utterances, %.1f s of audio) and %d unchanged in %.1f s: %.1f "
                "utts/s", job, stats["written"], stats["utts"], stats["audio_seconds"], stats["kept"], wall,
                stats["utts"] / max(wall, 1e-9))
