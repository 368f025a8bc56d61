"""SpecAugment on filterbank crops: random frequency bands and time spans set to zero.

Applied to the mean-normalised training crops (zero is then the crop's mean), after the crop,
with the crop's own random generator: each sample gets its own masks, and they depend only on
the sampler's plan and seed, so training stays reproducible and resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masking (Park et al., 2019), per sample with probability ``probability``.

    Each of ``freq_masks`` masks zeroes ``f ~ U{0..freq_width}`` adjacent bins starting at a uniform
    bin; each of ``time_masks`` zeroes ``t ~ U{0..time_width}`` adjacent frames likewise (WeSpeaker's
    ``spec_aug`` defaults: one of each, 8 bins and 10 frames).

    Args:
        probability: Chance that a sample is masked at all (0 turns SpecAugment off).
        freq_masks: Frequency masks per masked sample.
        freq_width: Largest frequency mask, in bins.
        time_masks: Time masks per masked sample.
        time_width: Largest time mask, in frames.
    """

    probability: float = 0.0
    freq_masks: int = 1
    freq_width: int = 8
    time_masks: int = 1
    time_width: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"data.spec_augment.probability must be in [0, 1], got {self.probability}")
        for name in ("freq_masks", "freq_width", "time_masks", "time_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"data.spec_augment.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "SpecAugment":
        """Builds it from the ``data.spec_augment`` config section."""
        return cls(**dict(section))

    @property
    def enabled(self) -> bool:
        """Whether any sample can be masked."""
        return self.probability > 0.0 and (self.freq_masks * self.freq_width + self.time_masks * self.time_width) > 0

    def __call__(self, feats: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Masks a crop.

        Args:
            feats: ``[frames, bins]`` features (not changed).
            rng: The sample's random generator.

        Returns:
            A masked copy, or ``feats`` itself when the sample is not masked. Without
            :attr:`enabled` no random number is drawn.
        """
        if not self.enabled or rng.random() >= self.probability:
            return feats
        masked = feats.copy()
        frames, bins = masked.shape
        for _ in range(self.freq_masks):
            width = int(rng.integers(0, min(self.freq_width, bins) + 1))
            start = int(rng.integers(0, bins - width + 1))
            masked[:, start : start + width] = 0.0
        for _ in range(self.time_masks):
            width = int(rng.integers(0, min(self.time_width, frames) + 1))
            start = int(rng.integers(0, frames - width + 1))
            masked[start : start + width, :] = 0.0
        return masked
