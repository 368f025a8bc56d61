"""SpeechBrain's filterbank front-end (``speechbrain.lobes.features.Fbank``), for imported SpeechBrain models.

SpeechBrain's ECAPA-TDNN checkpoint was trained on these features, not on Kaldi's, so an imported
model needs them to give SpeechBrain's embeddings (docs REFERENCE.md, "Front-end"):

- a centred STFT: the waveform (float in [-1, 1]) is zero-padded by ``n_fft // 2`` samples on
  both sides and frame ``t`` is centred on sample ``t * hop``, so ``frames = 1 + samples // hop``;
- a periodic Hamming window of 25 ms, a 400-point FFT (not a power of two), no dither,
  pre-emphasis or DC removal;
- the power spectrum times SpeechBrain's triangular mel filters (mel = 2595 log10(1 + f / 700),
  each filter symmetric in Hz with the half-width of its lower neighbour's spacing);
- ``10 log10(max(power, 1e-10))``, then clipped from below at the utterance's maximum minus
  ``top_db`` (80 dB) over all frames and bins.

The per-utterance mean subtraction SpeechBrain applies next (``InputNormalization``, sentence
level, no variance normalisation) is the toolkit's CMN, applied where extraction applies it.

Frames are independent of each other until the final clip, so the features are computed in
blocks of frames: memory stays proportional to a block, not to the recording, which keeps an
hour-long file cheap. The per-frame log-energy for energy VAD is Kaldi's raw energy
(``log(sum x^2)`` on the int16 scale) of the same centred frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from speakernet.features.fbank import INT16_SCALE, check_frame_options, check_waveform

#: Frames per block of the blockwise computation (about 1 MiB of float32 per 1,000 frames of spectrum).
BLOCK_FRAMES = 2000


@dataclass(frozen=True)
class SpeechBrainFbankConfig:
    """Options of SpeechBrain's ``Fbank`` (its argument names in brackets).

    Attributes:
        num_mel_bins: Mel filters (``n_mels``).
        frame_length_ms: Window length in milliseconds (``win_length``).
        frame_shift_ms: Hop in milliseconds (``hop_length``).
        sample_rate: Waveform rate in Hz (``sample_rate``).
        n_fft: FFT size in samples (``n_fft``); the spectrum has ``n_fft // 2 + 1`` bins.
        low_freq: Lowest filter edge in Hz (``f_min``).
        high_freq: Highest filter edge in Hz (``f_max``).
        top_db: Dynamic range kept below the utterance's maximum, in dB (``top_db``).
        amin: Floor of the mel power before the log (``amin``).
    """

    kind: ClassVar[str] = "speechbrain"

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    sample_rate: int = 16000
    n_fft: int = 400
    low_freq: float = 0.0
    high_freq: float = 8000.0
    top_db: float = 80.0
    amin: float = 1e-10

    def __post_init__(self) -> None:
        check_frame_options(self)
        if self.n_fft < self.frame_length:
            raise ValueError(f"n_fft ({self.n_fft}) must be at least the window ({self.frame_length} samples)")
        if not 0 <= self.low_freq < self.high_freq <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= low_freq < high_freq <= Nyquist ({self.sample_rate / 2} Hz), "
                             f"got low_freq={self.low_freq}, high_freq={self.high_freq}")
        if self.top_db <= 0 or self.amin <= 0:
            raise ValueError(f"top_db and amin must be positive, got {self.top_db}/{self.amin}")

    @property
    def frame_length(self) -> int:
        """Window length in samples (SpeechBrain rounds, Kaldi truncates)."""
        return int(round(self.sample_rate * self.frame_length_ms / 1000))

    @property
    def frame_shift(self) -> int:
        """Hop in samples."""
        return int(round(self.sample_rate * self.frame_shift_ms / 1000))

    def num_frames(self, num_samples: int) -> int:
        """Frames of a centred STFT of ``num_samples`` samples (0 for no samples)."""
        return 0 if num_samples <= 0 else 1 + num_samples // self.frame_shift

    def to_dict(self) -> dict:
        """The options as a plain dict (the front-end record adds the ``kind``)."""
        return dataclasses.asdict(self)


def _to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)


def _to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_matrix(config: SpeechBrainFbankConfig) -> np.ndarray:
    """SpeechBrain's triangular filters as a ``[n_fft // 2 + 1, num_mel_bins]`` float32 matrix.

    The filter edges are spaced evenly on the mel scale; filter ``m`` peaks at edge ``m + 1`` and
    falls to zero one lower spacing (in Hz) away on both sides. The bins sit at
    ``linspace(0, sample_rate // 2, n_fft // 2 + 1)`` Hz, as SpeechBrain places them.
    """
    edges = _to_hz(np.linspace(_to_mel(np.float64(config.low_freq)), _to_mel(np.float64(config.high_freq)),
                               config.num_mel_bins + 2))
    centres, half_widths = edges[1:-1], edges[1:-1] - edges[:-2]
    bins = np.linspace(0.0, config.sample_rate // 2, config.n_fft // 2 + 1)
    slope = (bins[:, None] - centres[None, :]) / half_widths[None, :]
    return np.maximum(0.0, np.minimum(1.0 + slope, 1.0 - slope)).astype(np.float32)


def _hamming(length: int) -> np.ndarray:
    """The periodic Hamming window of ``length`` samples (``torch.hamming_window``'s default)."""
    return (0.54 - 0.46 * np.cos(2.0 * math.pi * np.arange(length) / length)).astype(np.float32)


def compute_sb_fbank_and_energy(waveform: np.ndarray,
                                config: SpeechBrainFbankConfig = SpeechBrainFbankConfig()
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Computes SpeechBrain's log-mel features and the per-frame raw log-energy.

    Args:
        waveform: float 1-D samples in [-1, 1] at ``config.sample_rate``.
        config: Front-end options.

    Returns:
        ``(fbank, log_energy)``: float32 ``[frames, num_mel_bins]`` (dB) and float32 ``[frames]``,
        ``frames = config.num_frames(len(waveform))``.

    Raises:
        ValueError: on a waveform that is not 1-D float or has NaN/Inf samples.
    """
    import torch

    waveform = check_waveform(waveform)
    num_frames = config.num_frames(waveform.shape[0])
    dim = config.num_mel_bins
    fbank = np.empty((num_frames, dim), dtype=np.float32)
    energy = np.empty(num_frames, dtype=np.float32)
    if num_frames == 0:
        return fbank, energy
    n_fft, hop, length = config.n_fft, config.frame_shift, config.frame_length
    # torch.stft centres a shorter window inside the n_fft frame; so does this.
    window = np.zeros(n_fft, dtype=np.float32)
    offset = (n_fft - length) // 2
    window[offset:offset + length] = _hamming(length)
    window_t = torch.from_numpy(window)
    mel = torch.from_numpy(mel_matrix(config))
    half = n_fft // 2
    samples = waveform.shape[0]
    for first in range(0, num_frames, BLOCK_FRAMES):
        last = min(num_frames, first + BLOCK_FRAMES)
        # Samples [first*hop - half, (last-1)*hop + half], zero outside the signal (the centred padding).
        start, stop = first * hop - half, (last - 1) * hop - half + n_fft
        block = np.zeros(stop - start, dtype=np.float32)
        lo, hi = max(start, 0), min(stop, samples)
        if hi > lo:
            block[lo - start:hi - start] = waveform[lo:hi]
        frames = torch.from_numpy(block).unfold(0, n_fft, hop)
        power = torch.fft.rfft(frames * window_t, n=n_fft).abs().square()
        fbank[first:last] = (10.0 * torch.log10(torch.clamp(power @ mel, min=config.amin))).numpy()
        # Raw energy as Kaldi's VAD reads it: the window's samples before windowing, on the int16 scale.
        raw = frames[:, offset:offset + length].double() * INT16_SCALE
        energy[first:last] = torch.log(torch.clamp(raw.square().sum(dim=1), min=float(np.finfo(np.float32).eps)))
    np.maximum(fbank, fbank.max() - config.top_db, out=fbank)
    return fbank, energy
