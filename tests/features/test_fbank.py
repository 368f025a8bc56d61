"""Tests of the fbank front-end (against kaldi-native-fbank and a numpy Kaldi reference) and of CMN."""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import pytest
import torch

from speakernet.features.cmn import apply_cmn
from speakernet.features.fbank import FbankConfig, _run_knf, compute_fbank, compute_fbank_and_energy


def _speechlike(num_samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000
    tone = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 1375 * t + 0.3)
    return (tone + 0.02 * rng.standard_normal(num_samples) + 0.05).astype(np.float32)  # + DC offset


def _knf_direct(waveform: np.ndarray, num_bins: int, use_energy: bool = False, snip_edges: bool = True) -> np.ndarray:
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = snip_edges
    opts.mel_opts.num_bins = num_bins
    opts.use_energy = use_energy
    extractor = knf.OnlineFbank(opts)
    extractor.accept_waveform(16000, (waveform * 32768).astype(np.float32))
    extractor.input_finished()
    return np.stack([np.array(extractor.get_frame(i)) for i in range(extractor.num_frames_ready)])


def _kaldi_mel_banks(num_bins: int, padded: int, rate: float, low: float, high: float) -> np.ndarray:
    # Kaldi MelBanks: triangles equally spaced on mel = 1127 ln(1 + f/700), over the first
    # padded/2 FFT bins (the Nyquist bin gets no weight).
    def mel(freq):
        return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)

    mel_low, mel_high = mel(low), mel(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bins_mel = mel(np.arange(padded // 2) * rate / padded)
    weights = np.zeros((num_bins, padded // 2 + 1))
    for b in range(num_bins):
        left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
        rising = (bins_mel > left) & (bins_mel <= center)
        falling = (bins_mel > center) & (bins_mel < right)
        weights[b, :padded // 2][rising] = (bins_mel[rising] - left) / (center - left)
        weights[b, :padded // 2][falling] = (right - bins_mel[falling]) / (right - center)
    return weights


def _reference_frame(waveform: np.ndarray, frame: int, num_bins: int) -> tuple[np.ndarray, float]:
    """Kaldi fbank of one frame, written out step by step in float64."""
    length, shift, padded = 400, 160, 512
    x = waveform[frame * shift: frame * shift + length].astype(np.float64) * 32768
    x = x - x.mean()  # remove DC offset
    log_energy = np.log(max(np.dot(x, x), np.finfo(np.float32).eps))  # raw energy: before pre-emphasis/window
    x = np.concatenate(([x[0] - 0.97 * x[0]], x[1:] - 0.97 * x[:-1]))  # pre-emphasis, Kaldi's first sample
    n = np.arange(length)
    x = x * (0.5 - 0.5 * np.cos(2 * np.pi * n / (length - 1))) ** 0.85  # povey window
    power = np.abs(np.fft.rfft(x, padded)) ** 2
    mel_energies = _kaldi_mel_banks(num_bins, padded, 16000.0, 20.0, 8000.0) @ power
    return np.log(np.maximum(mel_energies, np.finfo(np.float32).eps)), log_energy


def test_matches_kaldi_native_fbank_exactly():
    waveform = _speechlike(16000 + 123)
    ours = compute_fbank(waveform)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours, _knf_direct(waveform, 80))


def test_energy_variant_has_identical_mel_columns_and_knf_energy():
    waveform = _speechlike(8000, seed=3)
    fbank, log_energy = compute_fbank_and_energy(waveform)
    np.testing.assert_array_equal(fbank, compute_fbank(waveform))
    direct = _knf_direct(waveform, 80, use_energy=True)
    np.testing.assert_array_equal(log_energy, direct[:, 0])
    assert log_energy.shape == (fbank.shape[0],) and log_energy.dtype == np.float32


@pytest.mark.parametrize("frame", [0, 7])
def test_matches_handwritten_kaldi_reference(frame):
    waveform = _speechlike(4000, seed=1)
    fbank, log_energy = compute_fbank_and_energy(waveform, FbankConfig(num_mel_bins=40))
    reference, reference_energy = _reference_frame(waveform, frame, 40)
    np.testing.assert_allclose(fbank[frame], reference, rtol=0, atol=1e-4)
    assert log_energy[frame] == pytest.approx(reference_energy, abs=1e-5)


def test_reference_detects_a_wrong_window():
    # The reference must be sharp enough to tell windows apart, or the test above proves nothing.
    waveform = _speechlike(4000, seed=1)
    hamming = compute_fbank(waveform, FbankConfig(num_mel_bins=40, window_type="hamming"))
    reference, _ = _reference_frame(waveform, 0, 40)
    assert np.abs(hamming[0] - reference).max() > 1e-2


@pytest.mark.parametrize("num_samples", [400, 401, 559, 560, 561, 16000, 48123])
def test_snip_edges_frame_count(num_samples):
    feats = compute_fbank(_speechlike(num_samples))
    assert feats.shape == (1 + (num_samples - 400) // 160, 80)
    assert FbankConfig().num_frames(num_samples) == feats.shape[0]


def test_shorter_than_a_frame_gives_no_frames():
    assert compute_fbank(_speechlike(399)).shape == (0, 80)


def test_no_snip_edges_frame_count_matches_config():
    config = FbankConfig(snip_edges=False)
    for num_samples in (300, 1000, 16080):
        feats = compute_fbank(_speechlike(num_samples), config)
        assert feats.shape[0] == config.num_frames(num_samples) == (num_samples + 80) // 160
        np.testing.assert_array_equal(feats, _knf_direct(_speechlike(num_samples), 80, snip_edges=False))


@pytest.mark.parametrize("snip_edges", [True, False])
def test_blockwise_features_are_bit_identical_to_one_whole_call(snip_edges):
    # 25 s: the default 10 s blocks end mid-frame twice; odd block sizes split frames every way.
    long = _speechlike(25 * 16000 + 77, seed=4)
    config = FbankConfig(snip_edges=snip_edges)
    whole = _knf_direct(long, 80, use_energy=True, snip_edges=snip_edges)
    fbank, log_energy = compute_fbank_and_energy(long, config)
    np.testing.assert_array_equal(fbank, whole[:, 1:])
    np.testing.assert_array_equal(log_energy, whole[:, 0])
    np.testing.assert_array_equal(compute_fbank(long, config), _knf_direct(long, 80, snip_edges=snip_edges))
    short = long[: 2 * 16000 + 5]
    expected = _knf_direct(short, 80, use_energy=True, snip_edges=snip_edges)
    for block_samples in (7, 160, 399, 400, 401, 16000):
        blocked, energy = _run_knf(short, config, use_energy=True, block_samples=block_samples)
        np.testing.assert_array_equal(blocked, expected[:, 1:])
        np.testing.assert_array_equal(energy, expected[:, 0])
    double = long.astype(np.float64)  # float64 input: scaled and rounded to float32 as one call does
    np.testing.assert_array_equal(compute_fbank(double, config), _knf_direct(double, 80, snip_edges=snip_edges))


def test_bad_inputs_and_options_raise():
    with pytest.raises(ValueError, match="1-D"):
        compute_fbank(np.zeros((2, 800), dtype=np.float32))
    with pytest.raises(ValueError, match="float"):
        compute_fbank(np.zeros(800, dtype=np.int16))
    bad = _speechlike(800)
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_fbank(bad)
    with pytest.raises(ValueError, match="window_type"):
        FbankConfig(window_type="kaiser")
    with pytest.raises(ValueError, match="high_freq"):
        FbankConfig(high_freq=9000)


# --- CMN (applied to fbank before the model) ---


def test_apply_cmn_numpy_torch_and_batch():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((50, 8)).astype(np.float32) + 3.0
    out = apply_cmn(feats)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out, feats - feats.mean(axis=0), atol=1e-5)
    tensor_out = apply_cmn(torch.from_numpy(feats))
    assert isinstance(tensor_out, torch.Tensor)
    np.testing.assert_allclose(tensor_out.numpy(), out, atol=1e-5)
    batch = np.stack([feats, feats * 2])
    np.testing.assert_allclose(apply_cmn(batch)[1], apply_cmn(feats * 2), atol=1e-5)
    with pytest.raises(ValueError):
        apply_cmn(np.zeros(5))
