"""Offline augmentation, the Kaldi VoxCeleb v2 way: an augmented copy of a data dir, one kind per copy.

Every utterance ``<utt>`` of the input dir gets one augmented utterance ``<utt>-<kind>`` (Kaldi's suffix;
same speaker), written as a 16-bit wav file; the output is a data dir (``wav.scp``, ``utt2spk``,
``spk2utt``, ``utt2dur``, ``spk2gender`` when the input has it, ``dropped.tsv``) that ``combine_data``
joins with the clean dir. The kinds and their defaults are Kaldi's (``steps/data/augment_data_dir.py``,
``reverberate_data_dir.py`` as ``egs/voxceleb/v2/run.sh`` calls them):

- ``noise``: foreground noises from the sources placed back to back from the start, 1 s of silence
  between them, until the utterance is covered; each at its own SNR drawn from {15, 10, 5, 0} dB;
- ``music``: one background file (cropped at a random offset, or repeated) at an SNR from {15, 10, 8, 5};
- ``babble``: 3-7 speech files, each in the background at its own SNR from {20, 17, 15, 13};
- ``reverb``: an RIR, a source dir drawn uniformly first, then a file in it (Kaldi's
  ``smallroom 0.5, mediumroom 0.5``), and the output scaled back to the input's power
  (``wav-reverberate --normalize-output``).

An SNR is the speech's mean power over the whole utterance over the mean power of the added file
where it is placed (the part of a foreground noise inside the utterance; Kaldi takes the whole
noise file's power). The speech keeps its level in the additive kinds; an output that would clip
at 16 bits is scaled down as a whole (counted in the log), which keeps its SNR.

Each utterance's random draws come from a generator seeded by ``(seed, kind, utterance id)``, so
the files are the same bytes for any number of jobs, and a ``subset`` holds the same files as the
full copy has for those utterances.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from speakernet.data.audio import AudioError, cut_segment, load_audio
from speakernet.data.augment import ops
from speakernet.data.augment.augmenter import AudioSource
from speakernet.data.datadir import KaldiDataDir
from speakernet.data.kaldi_dir import c_sort_key
from speakernet.utils.dropped import DROPPED_NAME, log_dropped, write_dropped
from speakernet.utils.fileio import PathLike, atomic_dir
from speakernet.utils.logging import Progress

logger = logging.getLogger(__name__)


class SourceError(AudioError):
    """A source file (noise, music, speech, RIR) drawn for an utterance cannot be read."""


@dataclass(frozen=True)
class KindDefaults:
    """Kaldi VoxCeleb v2's settings of one kind: SNR choices (dB), background files per utterance, foreground."""

    snrs: tuple[float, ...] = ()
    num_files: tuple[int, int] = (1, 1)
    foreground: bool = False


#: The kinds and their Kaldi VoxCeleb v2 defaults.
KINDS: dict[str, KindDefaults] = {
    "reverb": KindDefaults(),
    "noise": KindDefaults(snrs=(15.0, 10.0, 5.0, 0.0), foreground=True),
    "music": KindDefaults(snrs=(15.0, 10.0, 8.0, 5.0)),
    "babble": KindDefaults(snrs=(20.0, 17.0, 15.0, 13.0), num_files=(3, 7)),
}
#: Silence between foreground noises (Kaldi's ``--fg-interval 1``), in seconds.
FOREGROUND_GAP_S = 1.0
#: Largest absolute sample written (a 16-bit file holds [-1, 32767/32768]).
_PEAK = 32767.0 / 32768.0
_TINY = 1e-20


@dataclass(frozen=True)
class OfflineConfig:
    """What one augmented copy does.

    Attributes:
        kind: One of :data:`KINDS`.
        sources: Source dirs (``wav.scp``) of the noises, music, babble speech or RIRs.
        snrs: SNR choices in dB (additive kinds).
        num_files: ``(low, high)`` background files per utterance, drawn uniformly (music, babble).
        seed: Seed of every random draw.
        sample_rate: Rate (Hz) of the output; inputs and sources are resampled to it.
    """

    kind: str
    sources: tuple[str, ...]
    snrs: tuple[float, ...]
    num_files: tuple[int, int]
    seed: int = 0
    sample_rate: int = 16000


def make_config(kind: str, sources: Sequence[PathLike], snrs: Sequence[float] | None = None,
                num_files: Sequence[int] | None = None, seed: int = 0, sample_rate: int = 16000) -> OfflineConfig:
    """Checks the options of a copy and fills in the kind's defaults (:data:`KINDS`).

    Raises:
        ValueError: on an unknown kind, no sources, a source dir without ``wav.scp``, SNRs given to
            ``reverb``, talker counts given to ``reverb`` or ``noise``, or a bad count.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind '{kind}'; valid: {', '.join(KINDS)}")
    if isinstance(sources, (str, Path)) or not sources:
        raise ValueError(f"{kind}: no source dirs given (--sources)")
    for source in sources:
        if not (Path(source) / "wav.scp").is_file():
            raise FileNotFoundError(f"{kind}: source dir {source} has no wav.scp")
    defaults = KINDS[kind]
    if snrs is not None and kind == "reverb":
        raise ValueError("reverb takes no SNRs (--snrs is for noise, music and babble)")
    if num_files is not None and kind in ("reverb", "noise"):
        raise ValueError(f"{kind} takes no number of talkers (--num-talkers is for music and babble)")
    snr_values = tuple(float(value) for value in (defaults.snrs if snrs is None else snrs))
    if kind != "reverb" and (not snr_values or not all(np.isfinite(snr_values))):
        raise ValueError(f"{kind}: SNRs must be a non-empty list of finite numbers, got {snrs!r}")
    counts = tuple(int(value) for value in (defaults.num_files if num_files is None else num_files))
    if len(counts) == 1:
        counts = (counts[0], counts[0])
    if len(counts) != 2 or counts[0] < 1 or counts[0] > counts[1]:
        raise ValueError(f"{kind}: number of talkers must be 'low,high' with 1 <= low <= high, got {num_files!r}")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    return OfflineConfig(kind, tuple(str(source) for source in sources), snr_values, (counts[0], counts[1]),
                         int(seed), int(sample_rate))


def utterance_rng(seed: int, kind: str, utt: str) -> np.random.Generator:
    """The generator of one utterance's draws: a function of ``(seed, kind, utt)`` only."""
    digest = hashlib.sha256(f"{kind}\0{utt}".encode()).digest()
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


class OfflineAugmenter:
    """Applies one kind to whole utterances (see the module docstring).

    Args:
        config: From :func:`make_config`.

    Raises:
        ValueError: when the source dirs hold no audio.
    """

    def __init__(self, config: OfflineConfig):
        self.config = config
        defaults = KINDS[config.kind]
        self.foreground = defaults.foreground
        self.gap = int(round(FOREGROUND_GAP_S * config.sample_rate))
        if config.kind == "reverb":  # one source per dir: a room type is drawn first, as Kaldi weighs them
            self.sources = [AudioSource([source], config.sample_rate, what=f"reverb {source}")
                            for source in config.sources]
        else:
            self.sources = [AudioSource(list(config.sources), config.sample_rate, what=config.kind)]

    def _draw_file(self, rng: np.random.Generator) -> np.ndarray:
        source = self.sources[int(rng.integers(len(self.sources)))]
        index = int(rng.integers(len(source)))
        try:
            return source.get(index)
        except AudioError as error:
            raise SourceError(error.spec, f"source file {source.entries[index][0]}: {error}") from error

    def _draw_snr(self, rng: np.random.Generator) -> float:
        return self.config.snrs[int(rng.integers(len(self.config.snrs)))]

    def augment(self, speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The augmented waveform (float64, the speech's length; not yet guarded against clipping).

        Raises:
            AudioError: when a source file drawn cannot be read.
        """
        speech = np.asarray(speech, dtype=np.float64)
        speech_power = ops.power(speech)
        if self.config.kind == "reverb":
            out = ops.reverberate(speech, self._draw_file(rng)).astype(np.float64)
            out_power = ops.power(out)
            return out * np.sqrt(speech_power / out_power) if out_power > _TINY else out
        added = np.zeros(speech.size)
        if self.foreground:
            start = 0
            while start < speech.size:
                noise = self._draw_file(rng).astype(np.float64)[:speech.size - start]
                added[start:start + noise.size] += ops.scale_to_snr(speech, noise, self._draw_snr(rng))
                start += noise.size + self.gap
        else:
            low, high = self.config.num_files
            for _ in range(int(rng.integers(low, high + 1))):
                fitted = ops.fit_length(self._draw_file(rng), speech.size, rng)
                added += ops.scale_to_snr(speech, fitted, self._draw_snr(rng))
        return speech + added


@dataclass(frozen=True)
class _Job:
    """One recording (or utterance) to augment: its ``wav.scp`` value and its utterances with their cut."""

    spec: str
    utts: tuple[tuple[str, float | None, float | None], ...]  # (utt, segment start s, end s) or (utt, None, None)


_WORKER: dict[str, object] = {}


def _init_worker(config: OfflineConfig, audio_dir: str) -> None:
    _WORKER["augmenter"] = OfflineAugmenter(config)
    _WORKER["audio_dir"] = audio_dir


def _output_name(utt: str, kind: str) -> str:
    return f"{utt}-{kind}"


def _run_job(job: _Job) -> list[tuple[str, int, bool, str | None]]:
    """Augments a job's utterances; ``(utt, samples, scaled against clipping, error)`` each."""
    augmenter: OfflineAugmenter = _WORKER["augmenter"]  # type: ignore[assignment]
    audio_dir = Path(str(_WORKER["audio_dir"]))
    config = augmenter.config
    results: list[tuple[str, int, bool, str | None]] = []
    try:
        recording, _ = load_audio(job.spec, config.sample_rate)
    except AudioError as error:
        return [(utt, 0, False, f"unreadable_audio {error}") for utt, _, _ in job.utts]
    for utt, start, end in job.utts:
        try:
            speech = recording if start is None else cut_segment(recording, config.sample_rate, start, end, job.spec)
            out = augmenter.augment(speech, utterance_rng(config.seed, config.kind, utt))
        except SourceError as error:
            results.append((utt, 0, False, f"unreadable_source {error}"))
            continue
        except AudioError as error:
            results.append((utt, 0, False, f"unreadable_audio {error}"))
            continue
        peak = float(np.max(np.abs(out))) if out.size else 0.0
        scaled = peak > _PEAK
        if scaled:
            out = out * (_PEAK / peak)
        name = _output_name(utt, config.kind)
        path = audio_dir / f"{name}.wav"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        soundfile.write(tmp, out.astype(np.float32), config.sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
        results.append((utt, int(out.size), scaled, None))
    return results


def _jobs(data: KaldiDataDir, utts: Sequence[str]) -> list[_Job]:
    if data.wav_scp is None:
        raise FileNotFoundError("the data dir has no wav.scp")
    if data.segments is None:
        missing = [utt for utt in utts if utt not in data.wav_scp]
        if missing:
            raise ValueError(f"{len(missing)} utterance(s) not in wav.scp, e.g. {missing[0]}")
        return [_Job(data.wav_scp[utt], ((utt, None, None),)) for utt in utts]
    by_recording: dict[str, list[tuple[str, float | None, float | None]]] = {}
    for utt in utts:
        if utt not in data.segments:
            raise ValueError(f"utterance {utt} is not in segments")
        recording, start, end = data.segments[utt]
        if recording not in data.wav_scp:
            raise ValueError(f"segments: recording '{recording}' of {utt} is not in wav.scp")
        by_recording.setdefault(recording, []).append((utt, float(start), float(end)))
    return [_Job(data.wav_scp[recording], tuple(items)) for recording, items in by_recording.items()]


def choose_subset(utts: Sequence[str], size: int, seed: int) -> list[str]:
    """A seeded random ``size`` of ``utts`` (all of them when there are fewer), C-sorted."""
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    ordered = sorted(utts, key=c_sort_key)
    if size >= len(ordered):
        return ordered
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5B5E7])
    chosen = rng.choice(len(ordered), size=size, replace=False)
    return sorted((ordered[index] for index in chosen), key=c_sort_key)


def augment_data_dir(
    data_dir: PathLike,
    out_dir: PathLike,
    config: OfflineConfig,
    nj: int = 1,
    audio_dir: PathLike | None = None,
    subset: int | None = None,
) -> KaldiDataDir:
    """Writes an augmented copy of ``data_dir`` (one ``<utt>-<kind>`` per utterance) to ``out_dir``.

    Args:
        data_dir: Input data dir (``wav.scp``, ``utt2spk``, optional ``segments``).
        out_dir: Output data dir; appears complete or not at all (an existing one is replaced).
        config: From :func:`make_config`.
        nj: Parallel processes (the files do not depend on it).
        audio_dir: Where the wav files go (default ``out_dir/audio``).
        subset: Augment only a seeded random ``subset`` of the utterances (Kaldi's subset of the copies).

    Returns:
        The written data dir.

    Raises:
        ValueError: on a bad ``nj``/``subset``, a malformed data dir or sources without audio.
        FileNotFoundError: on a missing data dir, ``wav.scp`` or source dir.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if nj < 1:
        raise ValueError(f"nj must be at least 1, got {nj}")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data dir {data_dir} does not exist")
    data = KaldiDataDir.load(data_dir)
    utts = data.utts
    if subset is not None:
        utts = choose_subset(utts, subset, config.seed)
    jobs = _jobs(data, utts)
    OfflineAugmenter(config)  # fails here, once, if the sources hold no audio
    results: list[tuple[str, int, bool, str | None]] = []
    with atomic_dir(out_dir) as tmp:
        final_audio = Path(audio_dir).absolute() if audio_dir is not None else out_dir.absolute() / "audio"
        write_audio = final_audio if audio_dir is not None else tmp / "audio"
        write_audio.mkdir(parents=True, exist_ok=True)
        nj = min(nj, max(1, len(jobs)))
        logger.info("%s: %s copy of %d utterances with %d job(s) into %s", data_dir, config.kind, len(utts), nj,
                    out_dir)
        with Progress(len(utts), f"augmenting {data_dir} ({config.kind})", "utts", log=logger) as progress:
            if nj == 1:
                _init_worker(config, str(write_audio))
                for job in jobs:
                    results.extend(_run_job(job))
                    progress.update(len(job.utts))
            else:
                context = multiprocessing.get_context("spawn")  # no inherited thread pools
                chunksize = max(1, min(16, len(jobs) // (4 * nj)))
                with context.Pool(nj, initializer=_init_worker, initargs=(config, str(write_audio))) as pool:
                    for part in pool.imap_unordered(_run_job, jobs, chunksize=chunksize):
                        results.extend(part)
                        progress.update(len(part))
        dropped = {_output_name(utt, config.kind): error for utt, _, _, error in results if error is not None}
        done = {utt: samples for utt, samples, _, error in results if error is None}
        missing = [utt for utt in utts if utt not in done and _output_name(utt, config.kind) not in dropped]
        if missing:  # a job that returned fewer utterances than it was given
            raise RuntimeError(f"{len(missing)} utterance(s) came out of no job, e.g. {missing[0]}")
        scaled = sum(1 for _, _, was_scaled, error in results if was_scaled and error is None)
        if scaled:
            logger.info("%d of %d outputs scaled down to fit 16 bits (their SNR is kept)", scaled, len(done))
        out = KaldiDataDir(
            utt2spk={_output_name(utt, config.kind): data.utt2spk[utt] for utt in done},
            wav_scp={_output_name(utt, config.kind): str(final_audio / f"{_output_name(utt, config.kind)}.wav")
                     for utt in done},
            utt2dur={_output_name(utt, config.kind): samples / config.sample_rate for utt, samples in done.items()},
        )
        if data.spk2gender is not None:
            speakers = set(out.utt2spk.values())
            out.spk2gender = {spk: gender for spk, gender in data.spk2gender.items() if spk in speakers}
        if not out.utt2spk:
            raise ValueError(f"{data_dir}: no utterance could be augmented (see the errors above)")
        out.save(tmp)
        write_dropped(tmp / DROPPED_NAME, dropped)
    log_dropped(logger, f"{data_dir}: {config.kind} copy", dropped, len(utts), out_dir / DROPPED_NAME,
                "fix or remove the unreadable files to keep them")
    return out
