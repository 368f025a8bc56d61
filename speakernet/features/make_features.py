"""The parallel feature-extraction stage: data dir -> fbank + VAD archives, feats.scp, vad.scp.

Layout (``F`` = feature dir, ``D`` = data dir, ``J`` = 1..nj)::

    F/fbank.J.ark, F/fbank.J.scp      float32 [frames, num_mel_bins] per utterance
    F/vad.J.ark,   F/vad.J.scp        float32 [frames] of 0/1 per utterance
    F/utt2num_frames.J                frames per utterance
    F/log/make_fbank.J.log            the job's log (stdout and stderr)
    F/log/make_fbank.json             options and data dir shared by the jobs
    F/log/make_fbank.J.utts           the job's utterances
    D/feats.scp, D/vad.scp, D/utt2num_frames   written only when every job succeeded

Each job is a command ``python -m speakernet.bin.make_features --job J --feat-dir F``, run by the
launcher ``--cmd`` chooses (:mod:`speakernet.utils.launch`: ``run.pl``, local subprocesses, by default;
``slurm.pl ...``, a Slurm job array, writing ``F/log/q/``).
A job reads all its utterances even when some fail, then fails with the full list of bad
keys (written to ``F/log/make_fbank.J.failed``), so the user sees every bad key at once.
Archives are written under temporary names and renamed only when the job succeeds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Sequence

from speakernet.data.datadir_ops import split_contiguous
from speakernet.data.kaldi_dir import DataDirError, c_sort_key, read_scp, write_scp
from speakernet.data.validate import validate_data_dir
from speakernet.features.fbank import FbankConfig
from speakernet.features.frontend import (FRONTEND_CONFIG_NAME, FeatureConfig, frontend_from_dict, frontend_to_dict,
                                          save_frontend)
from speakernet.features.vad import VadConfig
from speakernet.utils.fileio import (OutputError, PathLike, as_output_error, atomic_write, ensure_writable_dir,
                                     exclusive_lock)
from speakernet.utils.faults import fault_point
from speakernet.utils.launch import Launcher, launcher_from_command
from speakernet.utils.stage_jobs import (MAX_KEYS_IN_MESSAGE, PROGRESS_INTERVAL_S, check_parent, claim_dir, run_jobs,
                                         set_single_thread)

logger = logging.getLogger(__name__)

JOB_CONFIG_NAME = "make_fbank.json"
# kaldiio/Kaldi compression method 2 = kSpeechFeature (per-column 8-bit quantisation).
COMPRESSION_METHOD = 2


class FeatureExtractionError(RuntimeError):
    """One or more feature-extraction jobs failed.

    Attributes:
        failed_jobs: The job numbers that failed.
        failed_utts: The utterance keys the failed jobs reported as bad (may be empty when a
            job crashed before reporting).
    """

    def __init__(self, message: str, failed_jobs: Sequence[int], failed_utts: Sequence[str]):
        super().__init__(message)
        self.failed_jobs = list(failed_jobs)
        self.failed_utts = list(failed_utts)


def list_utterances(data_dir: PathLike) -> list[str]:
    """The utterances of a data dir (``segments`` keys, else ``wav.scp`` keys), C-sorted.

    Also checks that they are exactly the keys of ``utt2spk``.

    Args:
        data_dir: Kaldi data directory.

    Returns:
        The utterance ids in C-locale order.

    Raises:
        DataDirError: on a missing directory or file, or utterances that do not match utt2spk.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataDirError(data_dir, "data directory does not exist")
    for name in ("wav.scp", "utt2spk"):
        if not (data_dir / name).is_file():
            raise DataDirError(data_dir / name, "file does not exist (needed to make features)")
    source = data_dir / "segments" if (data_dir / "segments").exists() else data_dir / "wav.scp"
    utts = list(read_scp(source))
    utt2spk = read_scp(data_dir / "utt2spk")
    missing = [utt for utt in utts if utt not in utt2spk]
    extra = [utt for utt in utt2spk if utt not in set(utts)]
    if missing:
        raise DataDirError(data_dir / "utt2spk", f"{len(missing)} utterances of {source.name} are missing "
                           f"(first: {missing[:5]}); run fix_data_dir", key=missing[0])
    if extra:
        raise DataDirError(source, f"{len(extra)} utterances of utt2spk are missing (first: {extra[:5]}); "
                           "run fix_data_dir", key=extra[0])
    if not utts:
        raise DataDirError(source, "no utterances")
    return sorted(utts, key=c_sort_key)


def _job_paths(feat_dir: Path, job: int) -> dict[str, Path]:
    return {
        "fbank_ark": feat_dir / f"fbank.{job}.ark",
        "fbank_scp": feat_dir / f"fbank.{job}.scp",
        "vad_ark": feat_dir / f"vad.{job}.ark",
        "vad_scp": feat_dir / f"vad.{job}.scp",
        "num_frames": feat_dir / f"utt2num_frames.{job}",
        "log": feat_dir / "log" / f"make_fbank.{job}.log",
        "utts": feat_dir / "log" / f"make_fbank.{job}.utts",
        "failed": feat_dir / "log" / f"make_fbank.{job}.failed",
        "stats": feat_dir / "log" / f"make_fbank.{job}.stats.json",
        "progress": feat_dir / "log" / f"make_fbank.{job}.progress",
    }


def _remove_stale_jobs(feat_dir: Path, nj: int) -> None:
    pattern = re.compile(r"^(?:fbank|vad)\.(\d+)\.(?:ark|scp)$|^utt2num_frames\.(\d+)$")
    for path in feat_dir.iterdir():
        match = pattern.match(path.name)
        if match and int(match.group(1) or match.group(2)) > nj:
            path.unlink()


_JOB_TEMP = re.compile(r"^\.(?:fbank|vad)\.\d+\.(?:ark|scp)\.tmp$")


def _remove_job_temps(feat_dir: Path) -> None:
    """Removes the jobs' temporary archives a killed run left (the caller holds the dir's lock).

    Before the jobs start, so a re-run after a kill or a full disk does not need room for the
    old half-written archives beside the new ones.
    """
    for path in feat_dir.iterdir():
        if _JOB_TEMP.match(path.name):
            path.unlink()
            logger.info("removed %s, left by an interrupted run", path)


def make_features(
    data_dir: PathLike,
    feat_dir: PathLike,
    nj: int = 1,
    fbank_config: FeatureConfig = FbankConfig(),
    vad_config: VadConfig = VadConfig(),
    compress: bool = False,
    launcher: Launcher | str | None = None,
) -> None:
    """Computes fbank features and energy VAD for every utterance of a data dir, in parallel.

    Writes ``feats.scp``, ``vad.scp`` and ``utt2num_frames`` (C-sorted, atomically) into the
    data dir, with the front-end options in ``frontend.json`` (training copies it into the exp
    dir, so extraction and the CLI compute the same features), once every job succeeded and
    every utterance came out. Existing ones are removed first, so a failed run never leaves a
    feats.scp pointing into rewritten archives. Re-running overwrites the job archives cleanly.
    The run holds ``feat_dir/.lock``: a second run into the same dir stops at once instead of
    colliding with this one's temporary archives.

    Args:
        data_dir: Kaldi data dir with ``wav.scp`` and ``utt2spk`` (optional ``segments``).
        feat_dir: Where the archives and ``log/`` go; one feature dir per data dir.
        nj: Number of parallel jobs (lowered to the number of utterances if larger).
        fbank_config: Filterbank options; audio is resampled to ``fbank_config.sample_rate``.
        vad_config: Energy VAD options.
        compress: Store features with Kaldi's lossy compression (kSpeechFeature).
        launcher: What runs the jobs: a :class:`~speakernet.utils.launch.Launcher` or a command
            string such as ``run.pl`` or ``slurm.pl --partition cpu --mem 4G``; None: ``run.pl``
            (local subprocesses).

    Raises:
        DataDirError: on a missing or inconsistent data dir.
        ValueError: on a bad ``nj`` or a feature dir that belongs to another data dir.
        DirInUseError: while another run makes features into the same feature dir.
        FeatureExtractionError: when a job fails; the message names the jobs, their logs
            (whose tails are also logged) and the bad utterance keys.
    """
    if nj < 1:
        raise ValueError(f"nj must be >= 1, got {nj}")
    if not isinstance(launcher, Launcher):
        launcher = launcher_from_command(launcher)
    data_dir = Path(data_dir).resolve()
    feat_dir = Path(feat_dir).resolve()
    utts = list_utterances(data_dir)  # a bad data dir is reported before anything is created
    with exclusive_lock(feat_dir / ".lock", "a features run"):
        _make_features(data_dir, feat_dir, utts, nj, fbank_config, vad_config, compress, launcher)


def _make_features(data_dir: Path, feat_dir: Path, utts: list[str], nj: int, fbank_config: FeatureConfig,
                   vad_config: VadConfig, compress: bool, launcher: Launcher) -> None:
    """:func:`make_features` under its lock, for the utterances ``utts`` of ``data_dir``."""
    try:
        ensure_writable_dir(data_dir)
    except OutputError as error:  # before anything is computed or removed
        raise OutputError(error.errno, f"{error.strerror}; feats.scp, vad.scp and utt2num_frames go there: make "
                          f"features of a writable copy (python -m speakernet.bin.combine_data COPY {data_dir})",
                          str(data_dir)) from None
    # Old outputs are about to be invalidated (the job archives get rewritten); remove them
    # before validating, so a stale feats.scp from an earlier data dir cannot block a re-run.
    for name in ("feats.scp", "vad.scp", "utt2num_frames", FRONTEND_CONFIG_NAME):
        try:
            (data_dir / name).unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise as_output_error(error, data_dir / name) from None
        logger.info("removed old %s", data_dir / name)
    validate_data_dir(data_dir)  # features are what this stage (re)makes, so they are not required
    if nj > len(utts):
        logger.warning("nj=%d is more than the %d utterances of %s; using nj=%d", nj, len(utts), data_dir, len(utts))
        nj = len(utts)
    (feat_dir / "log").mkdir(parents=True, exist_ok=True)
    claim_dir(feat_dir, data_dir, "feature")
    _remove_job_temps(feat_dir)

    with atomic_write(feat_dir / "log" / JOB_CONFIG_NAME) as handle:
        json.dump({"data_dir": str(data_dir), "nj": nj, "compress": compress,
                   "fbank": frontend_to_dict(fbank_config), "vad": vad_config.to_dict()}, handle, indent=2)
    chunks = split_contiguous(utts, nj)
    for job, chunk in enumerate(chunks, start=1):
        paths = _job_paths(feat_dir, job)
        for name in ("failed", "progress"):
            with contextlib.suppress(FileNotFoundError):
                paths[name].unlink()
        with atomic_write(paths["utts"]) as handle:
            handle.writelines(f"{utt}\n" for utt in chunk)

    logger.info("making fbank+VAD for %d utterances of %s in %s with %d jobs through %s (logs in %s)",
                len(utts), data_dir, feat_dir, nj, launcher.command_name, feat_dir / "log")
    wall = run_jobs(launcher, "speakernet.bin.make_features", "--feat-dir", feat_dir, "make_fbank", "feature", nj,
                    lambda job, name: _job_paths(feat_dir, job)[name], len(utts), f"features of {data_dir.name}",
                    FeatureExtractionError)

    feats: dict[str, str] = {}
    vads: dict[str, str] = {}
    num_frames: dict[str, str] = {}
    audio_seconds = 0.0
    for job in range(1, nj + 1):
        paths = _job_paths(feat_dir, job)
        feats.update(read_scp(paths["fbank_scp"]))
        vads.update(read_scp(paths["vad_scp"]))
        num_frames.update(read_scp(paths["num_frames"]))
        audio_seconds += json.loads(paths["stats"].read_text(encoding="utf-8"))["audio_seconds"]
    for name, table in (("feats", feats), ("vad", vads), ("utt2num_frames", num_frames)):
        missing = [utt for utt in utts if utt not in table]
        if missing:
            raise FeatureExtractionError(
                f"{len(missing)} utterances have no {name} output although every job succeeded "
                f"(first: {missing[:MAX_KEYS_IN_MESSAGE]}); see {feat_dir / 'log'}", [], missing)
        if len(table) != len(utts):
            extra = sorted(set(table) - set(utts), key=c_sort_key)
            raise FeatureExtractionError(
                f"the jobs' {name} outputs hold {len(extra)} utterances that are not in {data_dir} "
                f"(first: {extra[:MAX_KEYS_IN_MESSAGE]}); see {feat_dir / 'log'}", [], extra)
    _remove_stale_jobs(feat_dir, nj)
    write_scp(data_dir / "utt2num_frames", num_frames)
    write_scp(data_dir / "vad.scp", vads)
    write_scp(data_dir / "feats.scp", feats)
    save_frontend(data_dir, fbank_config, vad_config)
    logger.info("made features for %d utterances (%.1f s of audio) in %.1f s wall: %.1fx real time, %.1f utts/s",
                len(utts), audio_seconds, wall, audio_seconds / max(wall, 1e-9), len(utts) / max(wall, 1e-9))


def _rewrite_scp(tmp_scp: Path, tmp_ark: Path, final_ark: Path, final_scp: Path) -> None:
    # kaldiio records the (temporary) ark path in the scp; point the entries at the final name.
    lines = []
    with open(tmp_scp, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            key, value = line.rstrip("\n").split(" ", 1)
            ark_path, offset = value.rsplit(":", 1)
            if ark_path != str(tmp_ark):
                raise DataDirError(tmp_scp, f"unexpected archive path '{ark_path}'", number, key)
            lines.append(f"{key} {final_ark}:{offset}\n")
    with atomic_write(final_scp) as handle:
        handle.writelines(lines)


def run_feature_job(feat_dir: PathLike, job: int) -> None:
    """Runs one job of :func:`make_features` (called in the job's own process).

    Reads the options from ``<feat_dir>/log/make_fbank.json`` and the utterances from
    ``<feat_dir>/log/make_fbank.<job>.utts``; writes the job's fbank and VAD archives and
    ``utt2num_frames.<job>``, renaming them into place only if every utterance succeeded.

    Args:
        feat_dir: The feature dir prepared by :func:`make_features`.
        job: 1-based job number.

    Raises:
        FeatureExtractionError: if any utterance failed (all bad keys are logged and written
            to ``<feat_dir>/log/make_fbank.<job>.failed`` first).
    """
    set_single_thread()
    import kaldiio
    import numpy as np

    from speakernet.data.audio import AudioError, iter_data_dir_audio
    from speakernet.features.frontend import compute_features_and_energy
    from speakernet.features.vad import compute_vad

    feat_dir = Path(feat_dir).resolve()
    options = json.loads((feat_dir / "log" / JOB_CONFIG_NAME).read_text(encoding="utf-8"))
    fbank_config = frontend_from_dict(options["fbank"])
    vad_config = VadConfig(**options["vad"])
    data_dir = Path(options["data_dir"])
    paths = _job_paths(feat_dir, job)
    utts = paths["utts"].read_text(encoding="utf-8").split()
    logger.info("job %d: %d utterances of %s, fbank %s, vad %s", job, len(utts), data_dir, fbank_config, vad_config)

    tmp = {name: paths[name].with_name(f".{paths[name].name}.tmp") for name in ("fbank_ark", "fbank_scp",
                                                                                  "vad_ark", "vad_scp")}
    errors: dict[str, str] = {}

    def record(error: AudioError) -> None:
        fail(error.utt or "?", str(error))

    def fail(utt: str, message: str) -> None:
        errors[utt] = message
        logger.error("%s", message)

    num_frames: dict[str, int] = {}
    audio_seconds = 0.0
    start_time = time.perf_counter()
    compression = COMPRESSION_METHOD if options["compress"] else None
    reported = start_time
    # The previous run's archives of this job are stale (the parent removed the scp files that
    # pointed into them); removing them first means a re-run after a full disk needs no room for both.
    for name in ("fbank_ark", "fbank_scp", "vad_ark", "vad_scp", "num_frames", "stats"):
        with contextlib.suppress(FileNotFoundError):
            paths[name].unlink()
    current = paths["fbank_ark"]  # the output being written, for a write error's message
    try:
        with kaldiio.WriteHelper(f"ark,scp:{tmp['fbank_ark']},{tmp['fbank_scp']}",
                                 compression_method=compression) as fbank_writer, \
                kaldiio.WriteHelper(f"ark,scp:{tmp['vad_ark']},{tmp['vad_scp']}") as vad_writer:
            for utt, waveform, rate in iter_data_dir_audio(data_dir, utts, fbank_config.sample_rate, record):
                try:
                    fbank, log_energy = compute_features_and_energy(waveform, fbank_config)
                except ValueError as error:
                    fail(utt, f"utterance '{utt}': fbank failed: {error}")
                    continue
                if fbank.shape[0] == 0:
                    fail(utt, f"utterance '{utt}': audio of {waveform.shape[0] / rate:.3f} s is shorter than one "
                              f"frame ({fbank_config.frame_length_ms} ms)")
                    continue
                vad = compute_vad(log_energy, **vad_config.to_dict())
                if not vad.any():
                    logger.warning("no frame of utterance '%s' was judged voiced", utt)
                current = paths["fbank_ark"]
                fbank_writer(utt, fbank)
                current = paths["vad_ark"]
                vad_writer(utt, vad.astype(np.float32))
                num_frames[utt] = fbank.shape[0]
                audio_seconds += waveform.shape[0] / rate
                fault_point("features.utt")
                check_parent(lambda message: FeatureExtractionError(message, [], []))
                if time.perf_counter() - reported > PROGRESS_INTERVAL_S:
                    reported = time.perf_counter()
                    paths["progress"].write_text(f"{len(num_frames) + len(errors)}\n", encoding="utf-8")
        missing = [utt for utt in utts if utt not in num_frames and utt not in errors]
        for utt in missing:
            errors[utt] = f"utterance '{utt}' produced no output"
        if errors:
            bad = sorted(errors, key=c_sort_key)
            with atomic_write(paths["failed"]) as handle:
                handle.writelines(f"{utt}\n" for utt in bad)
            raise FeatureExtractionError(f"job {job}: {len(bad)} of {len(utts)} utterances failed: {' '.join(bad)}",
                                         [job], bad)
        os.replace(tmp["fbank_ark"], paths["fbank_ark"])
        _rewrite_scp(tmp["fbank_scp"], tmp["fbank_ark"], paths["fbank_ark"], paths["fbank_scp"])
        os.replace(tmp["vad_ark"], paths["vad_ark"])
        _rewrite_scp(tmp["vad_scp"], tmp["vad_ark"], paths["vad_ark"], paths["vad_scp"])
    except OSError as error:  # kaldiio's writes raise Errno 28 without a file name
        raise as_output_error(error, current, permissions=False) from None
    finally:
        for path in tmp.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    write_scp(paths["num_frames"], {utt: str(frames) for utt, frames in num_frames.items()})
    wall = time.perf_counter() - start_time
    with atomic_write(paths["stats"]) as handle:
        json.dump({"num_utts": len(num_frames), "audio_seconds": audio_seconds, "wall_seconds": wall}, handle)
    logger.info("job %d done: %d utterances, %.1f s of audio in %.1f s: %.1fx real time, %.1f utts/s", job,
                len(num_frames), audio_seconds, wall, audio_seconds / max(wall, 1e-9),
                len(num_frames) / max(wall, 1e-9))
