"""Training from audio on the fly: crops, speed perturbation, the hook, workers, the trainer and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_data import AUDIO_OVERRIDES, make_audio_dir

from speakernet.config import ConfigError, load_config
from speakernet.data.audio import cut_segment, load_audio
from speakernet.data.audio_dataset import SPEEDS, AudioCropDataset, base_speakers, speed_perturbed_speakers
from speakernet.data.dataset import collate_crops, crop_or_pad
from speakernet.data.kaldi_dir import read_scp, read_segments, write_scp
from speakernet.data.sampler import BatchPlan
from speakernet.features.cmn import apply_cmn
from speakernet.features.fbank import FbankConfig
from speakernet.features.frontend import compute_features_and_energy, load_frontend
from speakernet.training import checkpoint as ckpt
from speakernet.training.trainer import train
from speakernet.utils.dropped import TRAIN_DROPPED_NAME, read_dropped

FRONTEND = FbankConfig(num_mel_bins=20)  # dither 0, the offline stage's defaults otherwise
CROP = 50


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_audio_dir(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="module")
def segments_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_audio_dir(tmp_path_factory.mktemp("segments"), segments=True)


def _dataset(data_dir: Path, **kwargs) -> AudioCropDataset:
    return AudioCropDataset(data_dir, CROP, 40, frontend=FRONTEND, **kwargs)


def _whole_audio(data_dir: Path, utt: str) -> np.ndarray:
    wav_scp = read_scp(data_dir / "wav.scp")
    if not (data_dir / "segments").is_file():
        return load_audio(wav_scp[utt])[0]
    recording, start, end = read_segments(data_dir / "segments")[utt]
    waveform, rate = load_audio(wav_scp[recording])
    return cut_segment(waveform, rate, start, end, wav_scp[recording])


def test_same_crop_seed_gives_the_same_crop(audio_dir: Path) -> None:
    dataset = _dataset(audio_dir)
    first, label = dataset[(3, 1234)]
    again, label_again = dataset[(3, 1234)]
    assert first.shape == (CROP, 20) and first.dtype == torch.float32
    assert torch.equal(first, again) and label == label_again
    assert any(not torch.equal(first, dataset[(3, seed)][0]) for seed in range(5))  # other seeds, other windows


@pytest.mark.parametrize("layout", ["files", "segments"])
def test_a_crop_is_the_offline_fbank_of_its_window(audio_dir: Path, segments_dir: Path, layout: str) -> None:
    # the window the feature dataset draws from the same seed, of the features of the whole utterance
    data_dir = audio_dir if layout == "files" else segments_dir
    dataset = _dataset(data_dir)
    for index in range(len(dataset)):
        offline, _ = compute_features_and_energy(_whole_audio(data_dir, dataset.utts[index]), FRONTEND)
        assert dataset.num_samples[index] == len(_whole_audio(data_dir, dataset.utts[index]))
        for seed in (0, 17):
            expected = apply_cmn(crop_or_pad(offline, CROP, np.random.default_rng(seed)))
            crop, _ = dataset[(index, seed)]
            np.testing.assert_allclose(crop.numpy(), expected, rtol=0, atol=1e-6)  # bit-identical in practice


def test_short_utterances_are_left_out_and_lengths_come_from_utt2dur(audio_dir: Path, tmp_path: Path) -> None:
    dataset = _dataset(audio_dir)
    assert dataset.dropped == {"spk00-short": "too_few_frames 18<40"}
    assert "spk00-short" not in dataset.utts
    # utt2dur (no header read) gives the same lengths
    copy = tmp_path / "data"
    copy.mkdir()
    for name in ("wav.scp", "utt2spk", "spk2utt"):
        (copy / name).write_text((audio_dir / name).read_text())
    write_scp(copy / "utt2dur", {utt: f"{n / 16000:.6f}" for utt, n in zip(dataset.utts, dataset.num_samples)}
              | {"spk00-short": "0.2"})
    assert _dataset(copy).num_samples == dataset.num_samples


def test_the_hook_gets_the_item_generator_and_its_output_is_used(audio_dir: Path) -> None:
    calls = []

    def reverse(waveform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        assert isinstance(rng, np.random.Generator)
        calls.append(waveform.copy())
        return waveform[::-1].copy()

    dataset = _dataset(audio_dir, augment=reverse)
    crop, _ = dataset[(2, 5)]
    assert len(calls) == 1 and len(calls[0]) == dataset.crop_samples
    expected = apply_cmn(compute_features_and_energy(calls[0][::-1].copy(), FRONTEND)[0])
    np.testing.assert_allclose(crop.numpy(), expected, rtol=0, atol=1e-5)
    assert not np.allclose(crop.numpy(), _dataset(audio_dir)[(2, 5)][0].numpy(), atol=1e-2)


def test_speed_perturbation_labels_and_lengths(audio_dir: Path) -> None:
    from scipy.signal import resample_poly

    dataset = _dataset(audio_dir, speed_perturb=True)
    plain = _dataset(audio_dir)
    speakers = dataset.num_speakers
    assert dataset.num_classes == 3 * speakers
    seen = set()
    for seed in range(60):
        index = seed % len(dataset)
        _, label = dataset[(index, seed)]
        speed_index = label // speakers
        assert 0 <= label < 3 * speakers and label % speakers == plain.labels[index]
        assert int(np.random.default_rng(seed).integers(len(SPEEDS))) == speed_index
        seen.add(speed_index)
    assert seen == {0, 1, 2}
    index = 0
    whole = _whole_audio(audio_dir, dataset.utts[index])
    for speed_index, (up, down) in ((1, (10, 9)), (2, (10, 11))):
        length = -(-len(whole) * up // down)
        read = lambda start, count: dataset._read(index, start, count)  # noqa: E731
        perturbed = dataset.cropper._read_perturbed(read, 0, length, up, down)
        assert len(perturbed) / len(whole) == pytest.approx(1 / SPEEDS[speed_index], rel=1e-3)
        # a window of the perturbed utterance is that window of the whole utterance resampled
        reference = resample_poly(whole.astype(np.float64), up, down)
        window = dataset.cropper._read_perturbed(read, 3200, dataset.crop_samples, up, down)
        np.testing.assert_allclose(window, reference[3200:3200 + dataset.crop_samples], atol=1e-4)


def test_speed_perturbed_class_names() -> None:
    classes = speed_perturbed_speakers(["a", "b"])
    assert classes == ["a", "b", "sp0.9-a", "sp0.9-b", "sp1.1-a", "sp1.1-b"]
    assert base_speakers(classes) == ["a", "b"]
    with pytest.raises(ValueError):
        base_speakers(["a", "b", "c"])


def test_loader_workers_give_the_same_batches(audio_dir: Path) -> None:
    dataset = _dataset(audio_dir, speed_perturb=True)
    plan = BatchPlan(dataset.labels, batch_size=4, seed=3)
    batches = {}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=list(plan.batches(0)), num_workers=workers,
                                             collate_fn=collate_crops)
        batches[workers] = list(loader)
    assert len(batches[0]) == len(plan)
    for (feats_0, labels_0), (feats_2, labels_2) in zip(batches[0], batches[2]):
        assert torch.equal(feats_0, feats_2) and torch.equal(labels_0, labels_2)


def test_config_keys_of_training_from_audio() -> None:
    config = load_config(None, ["data.source=audio", "data.use_vad=false", "data.frontend={low_freq: 40}"])
    assert config["data"]["frontend"] == {"low_freq": 40} and config["data"]["prefetch_factor"] == 2
    assert load_config(None)["data"]["source"] == "features"
    with pytest.raises(ConfigError, match="data.use_vad: false"):
        load_config(None, ["data.source=audio"])
    with pytest.raises(ConfigError, match="data.frontend"):
        load_config(None, ["data.source=audio", "data.use_vad=false", "data.frontend={no_such_option: 1}"])
    with pytest.raises(ConfigError, match="num_mel_bins"):
        load_config(None, ["data.source=audio", "data.use_vad=false", "data.frontend={num_mel_bins: 40}"])
    with pytest.raises(ConfigError, match="data.source: audio"):
        load_config(None, ["data.speed_perturb=true"])
    with pytest.raises(ConfigError, match="one of: features, audio"):
        load_config(None, ["data.source=wav"])
    with pytest.raises(ConfigError, match="prefetch_factor"):
        load_config(None, ["data.prefetch_factor=0"])


def test_an_audio_training_runs_and_records_its_frontend(audio_dir: Path, tmp_path: Path) -> None:
    exp = tmp_path / "exp"
    stats = train(load_config(None, AUDIO_OVERRIDES + ["training.max_steps=2", "data.speed_perturb=true"]),
                  audio_dir, exp)
    assert np.isfinite(stats["loss"])
    fbank, _ = load_frontend(exp)
    assert fbank == FRONTEND
    spk2label = read_scp(exp / "spk2label")
    assert len(spk2label) == 12 and spk2label["sp1.1-spk03"] == "11"
    state = ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest"))
    assert state["speakers"] == speed_perturbed_speakers([f"spk{s:02d}" for s in range(4)])
    assert state["step"] == 2
    assert read_dropped(exp / TRAIN_DROPPED_NAME) == {"spk00-short": "too_few_frames 18<40"}
    records = [json.loads(line) for line in (exp / "train_metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= record["data_wait"] <= 1.0 for record in records)


def test_resume_of_an_audio_training_is_exact(audio_dir: Path, tmp_path: Path) -> None:
    overrides = AUDIO_OVERRIDES + ["data.speed_perturb=true", "data.spec_augment.probability=0.5"]
    total, stop_at = 6, 3  # 4 batches an epoch: the stop is mid-epoch
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(load_config(None, overrides + [f"training.max_steps={total}"]), audio_dir, straight)
    train(load_config(None, overrides + [f"training.max_steps={stop_at}"]), audio_dir, resumed)
    train(load_config(None, overrides + [f"training.max_steps={total}"]), audio_dir, resumed, resume="latest")
    a, b = (ckpt.load_checkpoint(ckpt.resolve_checkpoint(exp, "latest")) for exp in (straight, resumed))
    assert a["step"] == b["step"] == total
    for part in ("model", "head"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs after resume at step {stop_at}"


def test_init_from_an_audio_training_keeps_its_classes_and_checks_the_frontend(audio_dir: Path,
                                                                                tmp_path: Path) -> None:
    first = tmp_path / "first"
    train(load_config(None, AUDIO_OVERRIDES + ["training.max_steps=1", "data.speed_perturb=true"]), audio_dir, first)
    init = [f"training.init_from={first}", "training.max_steps=1"]
    # speed perturbation on again, or off with the 3x head kept (WeSpeaker's large-margin fine-tuning)
    for speed_perturb in ("true", "false"):
        exp = tmp_path / f"second_{speed_perturb}"
        train(load_config(None, AUDIO_OVERRIDES + init + [f"data.speed_perturb={speed_perturb}"]), audio_dir, exp)
        assert list(read_scp(exp / "spk2label")) == list(read_scp(first / "spk2label"))
    with pytest.raises(ValueError, match="low_freq"):
        train(load_config(None, AUDIO_OVERRIDES + init + ["data.frontend={low_freq: 40}"]), audio_dir,
              tmp_path / "other_frontend")


@pytest.fixture(scope="module")
def noise_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A noise source dir (prepare_noise_dir) of two files of white noise, and an RIR dir of two echoes."""
    import soundfile

    from speakernet.data.prepare.noise_dir import prepare_noise_dir

    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(5)
    (root / "noise").mkdir()
    for index in range(2):
        soundfile.write(root / "noise" / f"n{index}.wav", 0.1 * rng.standard_normal(8000), 16000, subtype="PCM_16")
    prepare_noise_dir(root / "noise", root / "noise_dir")
    (root / "rirs").mkdir()
    for index in range(2):
        rir = np.zeros(800)
        rir[10], rir[300 + 100 * index] = 1.0, 0.5
        soundfile.write(root / "rirs" / f"r{index}.wav", rir, 16000, subtype="FLOAT")
    prepare_noise_dir(root / "rirs", root / "rir_dir")
    return root


def test_online_augmentation_is_the_items_own_and_the_same_with_any_number_of_workers(
        audio_dir: Path, noise_source: Path, tmp_path: Path) -> None:
    from speakernet.data.augment.augmenter import Augmenter

    augment = Augmenter({"probability": 1.0, "reverb_probability": 0.5, "noise": {
        "dirs": [str(noise_source / "noise_dir")], "snr": [0, 5]}, "reverb": {"dirs": [str(noise_source / "rir_dir")]}})
    clean, noisy = _dataset(audio_dir), _dataset(audio_dir, augment=augment)
    assert not torch.equal(clean[(2, 77)][0], noisy[(2, 77)][0])  # augmented ...
    assert torch.equal(noisy[(2, 77)][0], noisy[(2, 77)][0])  # ... by the item's own draws
    plan = BatchPlan(noisy.labels, batch_size=4, seed=3)
    batches = {}
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(noisy, batch_sampler=list(plan.batches(0)), num_workers=workers,
                                             collate_fn=collate_crops)
        batches[workers] = [feats for feats, _ in loader]
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2]))
    # through the config: a training with data.augment runs; a bad section is a config error naming it
    section = ("data.augment={probability: 1.0, noise: {dirs: [" + str(noise_source / "noise_dir") + "]}}")
    stats = train(load_config(None, AUDIO_OVERRIDES + ["training.max_steps=2", section]), audio_dir, tmp_path / "exp")
    assert np.isfinite(stats["loss"])
    with pytest.raises(ConfigError, match=r"config key 'data.augment': .*noise"):
        train(load_config(None, AUDIO_OVERRIDES + ["training.max_steps=1", "data.augment={noise: {snr: [0, 5]}}"]),
              audio_dir, tmp_path / "exp2")
    with pytest.raises(ConfigError, match=r"'data.augment.speeds': speed perturbation is data.speed_perturb"):
        load_config(None, AUDIO_OVERRIDES + ["data.augment={speeds: [1.0, 0.9]}"])
    with pytest.raises(ConfigError, match=r"'data.augment' is for data.source: audio"):
        load_config(None, ["data.augment={probability: 0.5}"])
