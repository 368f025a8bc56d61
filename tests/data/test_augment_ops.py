"""Augmentation operations and the Augmenter: SNRs, aligned reverb, speed, determinism, config errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from speakernet.data.augment import ops
from speakernet.data.augment.augmenter import Augmenter
from speakernet.data.prepare.noise_dir import prepare_noise_dir

RATE = 16000


def _signal(seed: int, length: int = 4000) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, length).astype(np.float32)


@pytest.mark.parametrize("noise_length", [1000, 4000, 9000])  # shorter (tiled), equal, longer (cropped)
@pytest.mark.parametrize("snr", [0.0, 7.5, 30.0])
def test_add_noise_snr(noise_length: int, snr: float) -> None:
    speech, noise = _signal(0), _signal(1, noise_length) * 3
    mixed = ops.add_noise(speech, noise, snr, np.random.default_rng(0))
    assert mixed.shape == speech.shape and mixed.dtype == np.float32
    assert ops.snr_db(speech, mixed.astype(np.float64) - speech) == pytest.approx(snr, abs=0.1)


def test_fit_length_tiles_with_gap_and_crops() -> None:
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(ops.fit_length(np.array([1.0, 2.0]), 7, rng, gap=1), [1, 2, 0, 1, 2, 0, 1])
    cropped = ops.fit_length(np.arange(10.0), 4, rng)
    assert cropped.size == 4 and np.all(np.diff(cropped) == 1)


def test_babble_snr_and_talkers() -> None:
    speech = _signal(0)
    talkers = [_signal(seed, 3000) * seed for seed in range(2, 7)]
    mixed = ops.add_babble(speech, talkers, 13.0, np.random.default_rng(1))
    assert ops.snr_db(speech, mixed.astype(np.float64) - speech) == pytest.approx(13.0, abs=0.1)
    with pytest.raises(ValueError, match="at least one talker"):
        ops.add_babble(speech, [], 13.0, np.random.default_rng(1))


@pytest.mark.parametrize("delay", [0, 37])
def test_reverb_impulse_keeps_the_input(delay: int) -> None:
    speech = _signal(0)
    rir = np.zeros(200)
    rir[delay] = 0.5  # scaled to unit energy, so the level is kept too
    out = ops.reverberate(speech, rir)
    assert out.shape == speech.shape
    np.testing.assert_allclose(out, speech, atol=1e-6)


def test_reverb_aligns_at_the_direct_path() -> None:
    speech = np.zeros(1000, dtype=np.float32)
    speech[100] = 1.0
    rir = np.zeros(300)
    rir[20], rir[120] = 1.0, 0.5  # direct path at 20, one echo 100 samples later
    out = ops.reverberate(speech, rir)
    assert out.size == 1000 and int(np.argmax(out)) == 100
    assert out[200] == pytest.approx(0.5 / np.sqrt(1.25)) and out[100] == pytest.approx(1 / np.sqrt(1.25))


@pytest.mark.parametrize("speed", [0.9, 1.0, 1.1])
def test_speed_perturbation_length(speed: float) -> None:
    waveform = _signal(0, 11000)
    out = ops.perturb_speed(waveform, speed)
    assert abs(out.size - waveform.size / speed) <= 1
    assert ops.speed_label(5, 2, 100) == 205 and ops.speed_label(5, 0, 100) == 5


def test_op_errors() -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        ops.add_noise(np.zeros((2, 3)), _signal(0), 5.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN/Inf"):
        ops.add_noise(_signal(0), np.array([np.nan, 1.0]), 5.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="all zeros"):
        ops.reverberate(_signal(0), np.zeros(10))
    with pytest.raises(ValueError, match="speed must be positive"):
        ops.perturb_speed(_signal(0), 0.0)
    with pytest.raises(ValueError, match="label"):
        ops.speed_label(100, 1, 100)
    silent = np.zeros(100, dtype=np.float32)
    np.testing.assert_array_equal(ops.add_noise(silent, _signal(1), 5.0, np.random.default_rng(0)), silent)


@pytest.fixture
def source_dirs(tmp_path: Path) -> dict[str, str]:
    """Source dirs prepared by prepare_noise_dir: noise, speech and RIR files at 16 kHz."""
    dirs = {}
    for name, count, length in (("noise", 2, 6000), ("speech", 4, 3000), ("rirs", 2, 400)):
        root = tmp_path / f"{name}_audio"
        root.mkdir()
        for index in range(count):
            samples = _signal(10 * index + len(name), length)
            if name == "rirs":
                samples = samples * np.exp(-np.arange(length) / 50)
            soundfile.write(root / f"{name}{index}.wav", samples, RATE)
        prepare_noise_dir(root, tmp_path / name)
        dirs[name] = str(tmp_path / name)
    return dirs


def _config(dirs: dict[str, str], **overrides: object) -> dict:
    config = {"probability": 1.0, "reverb": {"dirs": [dirs["rirs"]]}, "noise": {"dirs": [dirs["noise"]]},
              "babble": {"dirs": [dirs["speech"]], "num_talkers": [3, 4]}, "music": {"dirs": [dirs["noise"]]}}
    config.update(overrides)
    return config


def test_augmenter_deterministic_under_a_seed(source_dirs: dict[str, str]) -> None:
    augmenter = Augmenter(_config(source_dirs, chain=True))
    speech = _signal(0)
    outputs = [augmenter.augment(speech, np.random.default_rng(seed)) for seed in (5, 5, 6)]
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
    assert outputs[0][1] == outputs[1][1]
    assert not np.array_equal(outputs[0][0], outputs[2][0])
    assert all(out.shape == speech.shape and np.max(np.abs(out)) == pytest.approx(1.0) for out, _ in outputs)


def test_augmenter_chooses_every_kind(source_dirs: dict[str, str]) -> None:
    augmenter = Augmenter(_config(source_dirs, probability=0.5))
    rng = np.random.default_rng(0)
    applied = [tuple(augmenter.augment(_signal(1), rng)[1]) for _ in range(60)]
    kinds = {name[0].split("@")[0].split("x")[0] for name in applied if name}
    assert kinds == {"reverb", "noise", "babble", "music"}
    assert 10 < sum(1 for name in applied if not name) < 50  # probability 0.5: some left clean
    assert all(len(name) <= 1 for name in applied)  # chain false: one operation at most


def test_augmenter_babble_snr_from_the_choices(source_dirs: dict[str, str]) -> None:
    augmenter = Augmenter({"probability": 1.0, "normalize": "none", "babble": {"dirs": [source_dirs["speech"]]}})
    speech = _signal(0)
    out, applied = augmenter.augment(speech, np.random.default_rng(3))
    snr = ops.snr_db(speech, out.astype(np.float64) - speech)
    assert min(abs(snr - choice) for choice in (20, 17, 15, 13)) < 0.1
    assert applied[0].startswith("babble")


def test_augmenter_speed(source_dirs: dict[str, str]) -> None:
    augmenter = Augmenter({"noise": {"dirs": [source_dirs["noise"]]}})
    assert augmenter.num_classes(10) == 30
    rng = np.random.default_rng(0)
    seen = {}
    for _ in range(30):
        out, label = augmenter.perturb_speed(_signal(0, 11000), 3, 10, rng)
        seen[label] = out.size
    assert seen == {3: 11000, 13: 12223, 23: 10000}


@pytest.mark.parametrize(("config", "message"), [
    ({}, "no source kind given"),
    ({"noise": {"dirs": []}}, "non-empty list of data dirs"),
    ({"noise": {"dirz": ["x"]}}, "unknown key.*dirz; valid: dirs"),
    ({"probabilty": 0.5}, "unknown key.*probabilty; valid:"),
    ({"probability": 1.5}, r"probability in \[0, 1\]"),
    ({"noise": {"dirs": ["NOISE"], "snr": [15, 0]}}, "low <= high"),
    ({"normalize": "rms"}, "normalize must be one of peak, none"),
    ({"speeds": [0.9, 1.1]}, "starting with 1.0"),
    ({"noise": {"dirs": ["missing-dir"]}}, "wav.scp"),
])
def test_augmenter_config_errors(source_dirs: dict[str, str], config: dict, message: str) -> None:
    if "noise" in config and config["noise"].get("dirs") == ["NOISE"]:
        config["noise"]["dirs"] = [source_dirs["noise"]]
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        Augmenter(config)
