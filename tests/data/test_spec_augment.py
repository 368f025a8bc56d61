"""SpecAugment masks: where they fall, how wide, and that the seed alone decides them."""

from __future__ import annotations

import numpy as np
import pytest

from speakernet.data.spec_augment import SpecAugment


def _masked_bands(original: np.ndarray, masked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    changed = masked != original
    return np.flatnonzero(changed.all(axis=0)), np.flatnonzero(changed.all(axis=1))


def test_masks_are_zeroed_bands_within_the_widths() -> None:
    feats = np.random.default_rng(0).normal(5.0, 1.0, size=(200, 80)).astype(np.float32)  # no zeros
    augment = SpecAugment(probability=1.0, freq_masks=1, freq_width=8, time_masks=1, time_width=10)
    widths_f, widths_t = set(), set()
    for seed in range(200):
        masked = augment(feats, np.random.default_rng(seed))
        bins, frames = _masked_bands(feats, masked)
        assert np.all(masked[:, bins] == 0.0) and np.all(masked[frames] == 0.0)
        for band in (bins, frames):  # one contiguous band each
            assert len(band) == 0 or band[-1] - band[0] + 1 == len(band)
        untouched = np.ones_like(feats, dtype=bool)
        untouched[:, bins] = False
        untouched[frames] = False
        np.testing.assert_array_equal(masked[untouched], feats[untouched])
        widths_f.add(len(bins))
        widths_t.add(len(frames))
    assert widths_f == set(range(9)) and widths_t == set(range(11))  # every width 0..max occurs, none larger


def test_the_seed_decides_the_masks_and_the_input_is_kept() -> None:
    feats = np.ones((50, 20), dtype=np.float32)
    augment = SpecAugment(probability=1.0, freq_masks=2, freq_width=5, time_masks=2, time_width=8)
    first = augment(feats, np.random.default_rng(7))
    np.testing.assert_array_equal(first, augment(feats, np.random.default_rng(7)))
    assert any(not np.array_equal(first, augment(feats, np.random.default_rng(s))) for s in range(8, 12))
    assert np.all(feats == 1.0)


def test_probability_decides_how_many_samples_are_masked() -> None:
    feats = np.ones((100, 40), dtype=np.float32)
    augment = SpecAugment(probability=0.3, freq_width=10, time_width=20)
    masked = sum(augment(feats, np.random.default_rng(seed)) is not feats for seed in range(2000))
    assert 0.26 < masked / 2000 < 0.34


def test_off_draws_no_random_numbers_and_bad_settings_are_named() -> None:
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    feats = np.ones((10, 4), dtype=np.float32)
    assert SpecAugment()(feats, rng) is feats
    assert SpecAugment(probability=1.0, freq_width=0, time_width=0)(feats, rng) is feats
    assert rng.bit_generator.state == state  # crops stay as without SpecAugment
    with pytest.raises(ValueError, match="data.spec_augment.probability"):
        SpecAugment(probability=1.5)
    with pytest.raises(ValueError, match="data.spec_augment.time_width"):
        SpecAugment(time_width=-1)
