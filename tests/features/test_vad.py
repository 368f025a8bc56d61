"""Tests of the energy VAD against a per-frame loop of Kaldi's compute-vad and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from speakernet.features.vad import VadConfig, compute_vad


def _kaldi_vad_loop(log_energy, energy_threshold, energy_mean_scale, frames_context, proportion_threshold):
    # Per-frame transcription of Kaldi's ComputeVadEnergy (with the issue #383 fix: t2, not t).
    num_frames = len(log_energy)
    threshold = np.float32(energy_threshold)
    if energy_mean_scale != 0.0:
        threshold = threshold + np.float32(energy_mean_scale) * np.float32(np.sum(log_energy, dtype=np.float64) /
                                                                           num_frames)
    out = np.zeros(num_frames, dtype=np.float32)
    for t in range(num_frames):
        num = den = 0
        for t2 in range(t - frames_context, t + frames_context + 1):
            if 0 <= t2 < num_frames:
                den += 1
                if log_energy[t2] > threshold:
                    num += 1
        out[t] = 1.0 if num >= den * np.float32(proportion_threshold) else 0.0
    return out


@pytest.mark.parametrize("seed", range(12))
def test_matches_loop_on_random_inputs(seed):
    rng = np.random.default_rng(seed)
    num_frames = int(rng.integers(1, 400))
    # Mixture of "silence" and "speech" energies so both outcomes and window effects occur.
    log_energy = np.where(rng.random(num_frames) < 0.5, rng.normal(4, 2, num_frames), rng.normal(14, 2, num_frames))
    log_energy = log_energy.astype(np.float32)
    energy_threshold = float(rng.uniform(0, 8))
    energy_mean_scale = float(rng.choice([0.0, 0.5, 1.0]))
    frames_context = int(rng.integers(0, 8))
    proportion_threshold = float(rng.uniform(0.05, 0.95))
    ours = compute_vad(log_energy, energy_threshold, energy_mean_scale, frames_context, proportion_threshold)
    expected = _kaldi_vad_loop(log_energy, energy_threshold, energy_mean_scale, frames_context, proportion_threshold)
    assert ours.dtype == np.float32 and ours.shape == (num_frames,)
    np.testing.assert_array_equal(ours, expected)


def test_window_clipped_at_edges_hand_computed():
    # threshold 5; context 1; need half of the clipped window above.
    log_energy = np.array([0, 10, 0, 0, 0, 0, 10], dtype=np.float32)
    # t0: window [0,1] 1/2 -> voiced; t1: [0,2] 1/3 -> not; ... t6: [5,6] 1/2 -> voiced.
    expected = [1, 0, 0, 0, 0, 0, 1]
    np.testing.assert_array_equal(compute_vad(log_energy, 5.0, 0.0, 1, 0.5), expected)


def test_mean_scale_and_strict_threshold_hand_computed():
    log_energy = np.array([1, 2, 3, 4, 5, 6], dtype=np.float32)
    # threshold = 0 + 0.5 * mean(3.5) = 1.75
    np.testing.assert_array_equal(compute_vad(log_energy, 0.0, 0.5, 0, 0.5), [0, 1, 1, 1, 1, 1])
    # A frame exactly at the threshold (4.0) is not above it.
    np.testing.assert_array_equal(compute_vad(log_energy, 4.0, 0.0, 0, 0.5), [0, 0, 0, 0, 1, 1])


def test_voxceleb_config_dilates_an_isolated_loud_frame():
    # 5.5/0.5/2/0.12: a 5-frame window needs 0.6 -> 1 frame above, so one loud frame marks +-2.
    log_energy = np.full(20, 2.0, dtype=np.float32)
    log_energy[10] = 30.0  # threshold = 5.5 + 0.5 * mean(3.4) = 7.2
    expected = np.zeros(20, dtype=np.float32)
    expected[8:13] = 1
    np.testing.assert_array_equal(compute_vad(log_energy), expected)
    np.testing.assert_array_equal(compute_vad(log_energy, **VadConfig().to_dict()), expected)


def test_edge_cases_and_bad_options():
    assert compute_vad(np.zeros(0, dtype=np.float32)).shape == (0,)
    with pytest.raises(ValueError, match="1-D"):
        compute_vad(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        compute_vad(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="proportion"):
        compute_vad(np.ones(4), proportion_threshold=1.0)
    with pytest.raises(ValueError, match="frames_context"):
        VadConfig(frames_context=-1)
    with pytest.raises(ValueError, match="energy_mean_scale"):
        compute_vad(np.ones(4), energy_mean_scale=-0.5)
