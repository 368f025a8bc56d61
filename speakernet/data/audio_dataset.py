"""Training data from audio on the fly: random crops of the waveforms of a data dir, fbank per crop.

The alternative to precomputed features (``data.source: audio``). Items and output are those of
:class:`speakernet.data.dataset.FeatureCropDataset`: an item is ``(utterance index, crop seed)``
and all of its randomness (speed, crop position, augmentation, SpecAugment) comes from a
generator seeded with the crop seed, so DataLoader workers and a resumed run load the same crops.

Without speed perturbation or augmentation, a crop is the features of a ``crop_frames`` window
of the offline fbank, starting at the frame the feature dataset would draw from the same seed
(``use_vad`` off): the window is cut from the audio at a whole frame shift, and Kaldi's fbank
frames depend only on their own samples.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from speakernet.data.audio import AudioError, audio_num_samples, load_audio_range
from speakernet.data.dataset import crop_or_pad
from speakernet.data.kaldi_dir import DataDirError, read_scp, read_segments, utt2spk_to_spk2utt
from speakernet.data.spec_augment import SpecAugment
from speakernet.features.cmn import apply_cmn
from speakernet.features.fbank import FbankConfig
from speakernet.features.frontend import compute_features_and_energy

logger = logging.getLogger(__name__)

#: An augmentation hook: ``augment(waveform, rng) -> waveform`` (float32 samples, the item's generator).
Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]

#: WeSpeaker's speeds, in label order: class ``label + num_speakers * index`` is the speaker at ``SPEEDS[index]``.
SPEEDS = (1.0, 0.9, 1.1)
# (up, down) of resample_poly: a speed-s copy has len * up / down samples (tempo and pitch change, as sox speed)
_SPEED_RATIOS = {1.0: (1, 1), 0.9: (10, 9), 1.1: (10, 11)}
# Source samples read beyond each end of a speed-perturbed window, so the resampling filter's
# edge (about 10 source samples for 10/9 and 10/11) falls outside the window.
_RESAMPLE_CONTEXT = 32


def speed_perturbed_speakers(speakers: Sequence[str]) -> list[str]:
    """The classes of a speed-perturbed training: ``<spk>``, then ``sp0.9-<spk>``, then ``sp1.1-<spk>``."""
    return [f"{'' if speed == 1.0 else f'sp{speed}-'}{spk}" for speed in SPEEDS for spk in speakers]


def base_speakers(classes: Sequence[str]) -> list[str]:
    """The speakers of :func:`speed_perturbed_speakers`' class list (its first third).

    Raises:
        ValueError: if ``classes`` is not such a list.
    """
    count = len(classes) // len(SPEEDS)
    speakers = list(classes[:count])
    if len(classes) != count * len(SPEEDS) or speed_perturbed_speakers(speakers) != list(classes):
        raise ValueError("the class list is not that of a speed-perturbed training (<spk>, sp0.9-<spk>, "
                         "sp1.1-<spk>)")
    return speakers


class AudioCropDataset(torch.utils.data.Dataset):
    """Random fixed-length crops of the audio of a data dir, as fbank with per-crop CMN.

    Args:
        data_dir: Data dir with ``wav.scp``, ``utt2spk`` and optionally ``segments``. Lengths
            come from ``segments``, else ``utt2dur``, else ``utt2num_frames`` (frames of
            ``frontend``'s frame options), else the audio headers; no audio is decoded here.
        crop_frames: Crop length in fbank frames; the crop is the exact number of samples
            that gives them (:attr:`crop_samples`).
        min_frames: Utterances with fewer frames are left out (listed in :attr:`dropped`).
        spk2label: Speaker -> class index; by default the C-sorted speakers of the dir.
        frontend: The fbank options (those of the offline feature stage by default).
        spec_augment: Masks applied to each normalised crop (None: none).
        augment: Hook applied to each cropped waveform with the item's generator (None: none).
        speed_perturb: Each item at a speed drawn uniformly from :data:`SPEEDS`; the copy at
            ``SPEEDS[i]`` has label ``label + len(spk2label) * i``.

    Attributes:
        dropped: Utterance -> reason (``too_few_frames 37<100``), in ``utt2spk`` order.
    """

    def __init__(
        self,
        data_dir: str | Path,
        crop_frames: int = 200,
        min_frames: int = 100,
        spk2label: dict[str, int] | None = None,
        frontend: FbankConfig = FbankConfig(),
        spec_augment: SpecAugment | None = None,
        augment: Augment | None = None,
        speed_perturb: bool = False,
    ):
        data_dir = Path(data_dir)
        utt2spk = read_scp(data_dir / "utt2spk")
        if spk2label is None:
            spk2label = {spk: i for i, spk in enumerate(utt2spk_to_spk2utt(utt2spk))}
        self.cropper = AudioCropper(crop_frames, frontend, spec_augment, augment, speed_perturb, len(spk2label))
        self.crop_frames, self.crop_samples = crop_frames, self.cropper.crop_samples
        self.frontend = frontend
        self.speed_perturb = speed_perturb
        rate = frontend.sample_rate
        wav_scp = read_scp(data_dir / "wav.scp")
        self.spk2label = spk2label
        self.num_speakers = len(spk2label)
        segments = read_segments(data_dir / "segments") if (data_dir / "segments").is_file() else None
        utt2dur = _read_numbers(data_dir / "utt2dur", float)
        utt2num_frames = _read_numbers(data_dir / "utt2num_frames", int)

        self.utts: list[str] = []
        self.specs: list[str] = []
        self.offsets: list[int] = []  # first sample of the utterance in its recording
        self.num_samples: list[int] = []
        labels: list[int] = []
        self.dropped: dict[str, str] = {}
        for utt, spk in utt2spk.items():
            if spk not in spk2label:
                raise DataDirError(data_dir / "utt2spk", f"speaker '{spk}' is not in the label set", key=utt)
            offset = 0
            if segments is not None:
                if utt not in segments:
                    raise DataDirError(data_dir / "segments", "utterance in utt2spk has no segment", key=utt)
                recording, start, end = segments[utt]
                if recording not in wav_scp:
                    raise DataDirError(data_dir / "segments", f"recording '{recording}' is not in wav.scp", key=utt)
                spec, offset = wav_scp[recording], int(round(start * rate))
                try:
                    length = (audio_num_samples(spec, rate) if end == -1 else int(round(end * rate))) - offset
                except AudioError as error:
                    raise error.for_utt(utt) from None
            else:
                if utt not in wav_scp:
                    raise DataDirError(data_dir / "wav.scp", "utterance in utt2spk has no audio", key=utt)
                spec = wav_scp[utt]
                if utt in utt2dur:
                    length = int(round(utt2dur[utt] * rate))
                elif utt in utt2num_frames:  # the fewest samples that give that many frames
                    length = frontend.frame_length + (utt2num_frames[utt] - 1) * frontend.frame_shift
                else:
                    try:
                        length = audio_num_samples(spec, rate)
                    except AudioError as error:
                        raise error.for_utt(utt) from None
            frames = frontend.num_frames(max(length, 0))
            if frames < min_frames:
                self.dropped[utt] = f"too_few_frames {frames}<{min_frames}"
                continue
            self.utts.append(utt)
            self.specs.append(spec)
            self.offsets.append(offset)
            self.num_samples.append(length)
            labels.append(spk2label[spk])
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.utts) == 0:
            raise DataDirError(data_dir, f"no utterance has at least {min_frames} frames")
        logger.info("%s: %d utterances of %d speakers for training from audio (%d with fewer than %d frames left "
                    "out)%s", data_dir, len(self.utts), len(set(labels)), len(self.dropped), min_frames,
                    "; speed perturbation 0.9/1.0/1.1" if speed_perturb else "")

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def num_classes(self) -> int:
        """Classes of the labels: the speakers, three times over with speed perturbation."""
        return self.num_speakers * (len(SPEEDS) if self.speed_perturb else 1)

    def _read(self, index: int, start: int, count: int) -> np.ndarray:
        """Samples ``[start, start + count)`` of utterance ``index`` (fewer at its end)."""
        count = min(count, self.num_samples[index] - start)
        try:
            return load_audio_range(self.specs[index], self.offsets[index] + start, count, self.frontend.sample_rate)
        except AudioError as error:
            raise error.for_utt(self.utts[index]) from None

    def load_crop_waveform(self, index: int, rng: np.random.Generator, speed_index: int = 0) -> np.ndarray:
        """A random window of :attr:`crop_samples` samples of utterance ``index`` at ``SPEEDS[speed_index]``
        (see :meth:`AudioCropper.crop_waveform`)."""
        return self.cropper.crop_waveform(lambda start, count: self._read(index, start, count),
                                          self.num_samples[index], rng, speed_index)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, crop_seed = item
        return self.cropper.crop(lambda start, count: self._read(index, start, count), self.num_samples[index],
                                 int(self.labels[index]), crop_seed)


#: Reads samples ``[start, start + count)`` of one utterance (fewer at its end).
SampleReader = Callable[[int, int], np.ndarray]


class AudioCropper:
    """One training crop of an utterance: speed, window, augmentation, fbank, CMN, SpecAugment.

    The path every dataset of audio shares (:class:`AudioCropDataset` reads the window from its
    file, :class:`speakernet.data.shards.ShardDataset` from a waveform in memory), so the same
    utterance and crop seed give the same crop, bit for bit, from either.

    Args:
        crop_frames: Crop length in fbank frames.
        frontend: The fbank options.
        spec_augment: Masks applied to each normalised crop (None: none).
        augment: Hook applied to each cropped waveform with the item's generator (None: none).
        speed_perturb: A speed drawn uniformly from :data:`SPEEDS` per item.
        num_speakers: Speakers of the labels: the copy at ``SPEEDS[i]`` has label ``label + num_speakers * i``.
    """

    def __init__(self, crop_frames: int, frontend: FbankConfig, spec_augment: SpecAugment | None,
                 augment: Augment | None, speed_perturb: bool, num_speakers: int):
        for option in ("num_frames", "frame_length", "frame_shift"):
            if not hasattr(frontend, option):
                raise ValueError(f"front-end '{frontend.kind}' has no frame arithmetic ({option}); training from "
                                 "audio takes the kaldi front-end")
        self.crop_frames = crop_frames
        self.frontend = frontend
        self.spec_augment = spec_augment
        self.augment = augment
        self.speed_perturb = speed_perturb
        self.num_speakers = num_speakers
        self.crop_samples = frontend.frame_length + (crop_frames - 1) * frontend.frame_shift

    def _read_perturbed(self, read: SampleReader, start: int, count: int, up: int, down: int) -> np.ndarray:
        """Samples ``[start, start + count)`` of the utterance resampled by ``up / down`` (fewer at its end)."""
        if up == down:
            return read(start, count)
        from scipy.signal import resample_poly

        # a multiple of `down`, so that the piece's resampled samples fall on the whole utterance's
        source_start = max(0, (start * down // up - _RESAMPLE_CONTEXT) // down * down)
        source_stop = -(-(start + count) * down // up) + _RESAMPLE_CONTEXT
        piece = read(source_start, source_stop - source_start)
        resampled = resample_poly(piece.astype(np.float64), up, down).astype(np.float32)
        first = start - source_start * up // down
        return resampled[first:first + count]

    def crop_waveform(self, read: SampleReader, num_samples: int, rng: np.random.Generator,
                      speed_index: int = 0) -> np.ndarray:
        """A random window of :attr:`crop_samples` samples of an utterance at ``SPEEDS[speed_index]``.

        The window starts at a whole frame shift, drawn like :func:`crop_or_pad` draws a start
        frame; a shorter utterance is repeat-padded (wrapped).

        Args:
            read: Reads samples of the utterance.
            num_samples: The utterance's length in samples.
            rng: The item's generator.
            speed_index: Index into :data:`SPEEDS`.
        """
        up, down = _SPEED_RATIOS[SPEEDS[speed_index]]
        length = num_samples if up == down else -(-num_samples * up // down)  # resample_poly's output length
        frames = self.frontend.num_frames(length)
        if frames >= self.crop_frames:
            start = int(rng.integers(0, frames - self.crop_frames + 1)) * self.frontend.frame_shift
            waveform = self._read_perturbed(read, start, self.crop_samples, up, down)
        else:
            waveform = self._read_perturbed(read, 0, length, up, down)
        if waveform.shape[0] < self.crop_samples:  # short, or a header or utt2dur a little longer than the audio
            waveform = np.pad(waveform, (0, self.crop_samples - waveform.shape[0]), mode="wrap")
        return waveform[: self.crop_samples]

    def crop(self, read: SampleReader, num_samples: int, label: int, crop_seed: int) -> tuple[torch.Tensor, int]:
        """The normalised ``[crop_frames, num_mel_bins]`` crop of an utterance and its (speed's) label.

        Args:
            read: Reads samples of the utterance.
            num_samples: The utterance's length in samples.
            label: The speaker's class index.
            crop_seed: Seeds every random draw of the item (speed, window, augmentation, masks).
        """
        rng = np.random.default_rng(crop_seed)
        speed_index = int(rng.integers(len(SPEEDS))) if self.speed_perturb else 0
        waveform = self.crop_waveform(read, num_samples, rng, speed_index)
        if self.augment is not None:
            waveform = np.asarray(self.augment(waveform, rng), dtype=np.float32)
        feats, _ = compute_features_and_energy(waveform, self.frontend)
        if feats.shape[0] != self.crop_frames:  # an augmentation that changed the length
            feats = crop_or_pad(feats, self.crop_frames, rng)
        crop = apply_cmn(feats)  # per-crop CMN, mean only
        if self.spec_augment is not None:
            crop = self.spec_augment(crop, rng)
        return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32)), label + self.num_speakers * speed_index


def _read_numbers(path: Path, kind: type) -> dict:
    """An ``utt2dur``/``utt2num_frames`` file as utterance -> number ({} when there is none)."""
    if not path.is_file():
        return {}
    table = {}
    for utt, value in read_scp(path).items():
        try:
            table[utt] = kind(value)
        except ValueError:
            raise DataDirError(path, f"not a number: {value!r}", key=utt) from None
    return table
