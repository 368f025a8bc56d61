"""Energy-based voice activity detection with Kaldi ``compute-vad`` semantics.

Kaldi's rule (src/ivector/voice-activity-detection.cc, after the 2016 fix of kaldi-asr/kaldi
issue #383 that made ``--vad-frames-context`` take effect):

* ``threshold = energy_threshold + energy_mean_scale * mean(log_energy)`` (the mean term is
  dropped when ``energy_mean_scale`` is 0);
* for frame ``t``, over the window ``[t - context, t + context]`` clipped to the utterance,
  ``num`` = frames whose log-energy is strictly above the threshold and ``den`` = frames in
  the clipped window;
* frame ``t`` is voiced iff ``num >= den * proportion_threshold``.

Kaldi loops over frames and window positions; here the window counts come from a cumulative
sum so a long utterance costs a few vector operations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VadConfig:
    """Options of :func:`compute_vad` (Kaldi ``compute-vad`` names in brackets).

    Defaults are Kaldi's VoxCeleb v2 ``conf/vad.conf``.

    Attributes:
        energy_threshold: Constant term of the threshold (``--vad-energy-threshold``).
        energy_mean_scale: Weight of the utterance's mean log-energy (``--vad-energy-mean-scale``).
        frames_context: Frames on each side of the window (``--vad-frames-context``).
        proportion_threshold: Fraction of window frames that must be above the threshold
            (``--vad-proportion-threshold``), in (0, 1).
    """

    energy_threshold: float = 5.5
    energy_mean_scale: float = 0.5
    frames_context: int = 2
    proportion_threshold: float = 0.12

    def __post_init__(self) -> None:
        _check_options(self.energy_mean_scale, self.frames_context, self.proportion_threshold)

    def to_dict(self) -> dict:
        """The options as a plain dict."""
        return dataclasses.asdict(self)


def _check_options(energy_mean_scale: float, frames_context: int, proportion_threshold: float) -> None:
    if energy_mean_scale < 0:
        raise ValueError(f"energy_mean_scale must be >= 0, got {energy_mean_scale}")
    if frames_context < 0 or int(frames_context) != frames_context:
        raise ValueError(f"frames_context must be an integer >= 0, got {frames_context}")
    if not 0.0 < proportion_threshold < 1.0:
        raise ValueError(f"proportion_threshold must be in (0, 1), got {proportion_threshold}")


def compute_vad(
    log_energy: np.ndarray,
    energy_threshold: float = 5.5,
    energy_mean_scale: float = 0.5,
    frames_context: int = 2,
    proportion_threshold: float = 0.12,
) -> np.ndarray:
    """Marks each frame voiced (1) or not (0) from its log-energy, as Kaldi ``compute-vad``.

    Args:
        log_energy: Per-frame raw log-energy ``[frames]`` (column 0 of Kaldi MFCCs with
            ``--use-energy``; see :func:`speakernet.features.fbank.compute_fbank_and_energy`).
        energy_threshold: Constant term of the threshold.
        energy_mean_scale: Weight of the utterance mean log-energy added to the threshold.
        frames_context: Frames on each side of the smoothing window.
        proportion_threshold: Fraction of the (clipped) window that must be above the threshold.

    Returns:
        float32 ``[frames]`` of 0.0/1.0 (empty for empty input).

    Raises:
        ValueError: on input that is not 1-D or has NaN/Inf values, or on invalid options.
    """
    _check_options(energy_mean_scale, frames_context, proportion_threshold)
    energy = np.asarray(log_energy, dtype=np.float32)
    if energy.ndim != 1:
        raise ValueError(f"log_energy must be 1-D [frames], got shape {energy.shape}")
    num_frames = energy.shape[0]
    if num_frames == 0:
        return np.zeros(0, dtype=np.float32)
    if not np.isfinite(energy).all():
        raise ValueError("log_energy has NaN/Inf values")
    # Kaldi's arithmetic: float32 values and threshold, the sum accumulated in double.
    threshold = np.float32(energy_threshold)
    if energy_mean_scale != 0.0:
        threshold = threshold + np.float32(energy_mean_scale) * np.float32(energy.sum(dtype=np.float64) / num_frames)
    above = np.concatenate(([0], np.cumsum(energy > threshold)))
    frames = np.arange(num_frames)
    first = np.maximum(frames - frames_context, 0)
    last = np.minimum(frames + frames_context, num_frames - 1)
    num = above[last + 1] - above[first]
    den = last - first + 1
    # Kaldi compares an int count against a float product: keep the same float32 arithmetic.
    voiced = num >= den.astype(np.float32) * np.float32(proportion_threshold)
    return voiced.astype(np.float32)
