"""Training crops of speakernet.data.dataset: VAD, seeded positions, per-crop CMN, labels."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from speakernet.data.dataset import FeatureCropDataset, collate_crops, crop_or_pad
from speakernet.data.kaldi_dir import DataDirError, read_scp, write_scp
from speakernet.data.sampler import BatchPlan

DIM = 3
CROP = 40
# utterance -> (speaker, frames, unvoiced frames at the start); spkC-u1 has fewer voiced frames
# than a crop (it gets repeat-padded), spkB-u2 fewer than min_frames=30 (it is left out)
UTTS = {
    "spkA-u1": ("spkA", 120, 10),
    "spkA-u2": ("spkA", 90, 5),
    "spkB-u1": ("spkB", 100, 0),
    "spkB-u2": ("spkB", 40, 15),
    "spkC-u1": ("spkC", 45, 10),
}


def _features(utt: str, frames: int) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, utt)))
    # a large per-dimension offset: a crop without mean removal is far from zero mean
    return (rng.normal(0.0, 1.0, (frames, DIM)) + np.array([50.0, -20.0, 7.0])).astype(np.float32)


def _vad(frames: int, unvoiced: int) -> np.ndarray:
    vad = np.ones(frames, dtype=np.float32)
    vad[:unvoiced] = 0.0
    return vad


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'feats.ark'},{data / 'feats.scp'}") as feats, \
            kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'vad.ark'},{data / 'vad.scp'}") as vads:
        for utt, (_, frames, unvoiced) in UTTS.items():
            feats(utt, _features(utt, frames))
            vads(utt, _vad(frames, unvoiced))
    write_scp(data / "utt2spk", {utt: spk for utt, (spk, _, _) in UTTS.items()})
    write_scp(data / "utt2num_frames", {utt: str(frames) for utt, (_, frames, _) in UTTS.items()})
    return data


def _voiced(utt: str) -> np.ndarray:
    _, frames, unvoiced = UTTS[utt]
    return _features(utt, frames)[unvoiced:]


def _expected_crop(utt: str, crop_seed: int) -> np.ndarray:
    """The documented crop, by hand: the VAD-kept frames, a window at the seed's start, mean removed."""
    voiced = _voiced(utt).astype(np.float64)
    if len(voiced) >= CROP:
        start = int(np.random.default_rng(crop_seed).integers(0, len(voiced) - CROP + 1))
        window = voiced[start : start + CROP]
    else:
        window = np.concatenate([voiced, voiced[: CROP - len(voiced)]])
    return window - window.mean(axis=0)


def test_crops_are_seeded_vad_windows_with_their_own_mean_removed(data_dir: Path) -> None:
    dataset = FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=30)
    assert dataset.utts == ["spkA-u1", "spkA-u2", "spkB-u1", "spkC-u1"]  # spkB-u2: 25 voiced frames < 30
    for index, utt in enumerate(dataset.utts):
        np.testing.assert_array_equal(dataset.load_features(index), _voiced(utt))  # unvoiced frames dropped
        for crop_seed in (0, 7, 123456):
            crop, _ = dataset[(index, crop_seed)]
            assert isinstance(crop, torch.Tensor) and crop.dtype == torch.float32
            assert crop.shape == (CROP, DIM)
            np.testing.assert_allclose(crop.mean(dim=0).numpy(), 0.0, atol=1e-4)  # per-crop CMN
            np.testing.assert_allclose(crop.numpy(), _expected_crop(utt, crop_seed), atol=1e-4)


def test_same_seed_same_crop_other_seeds_other_crops(data_dir: Path) -> None:
    dataset = FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=30)
    index = dataset.utts.index("spkA-u1")  # 110 voiced frames: 71 possible windows
    assert torch.equal(dataset[(index, 5)][0], dataset[(index, 5)][0])
    crops = [dataset[(index, seed)][0] for seed in range(10)]
    distinct = {tuple(crop[0].tolist()) for crop in crops}
    assert len(distinct) >= 8, "crops under different seeds should mostly start elsewhere"

    # the seeds come from the batch plan: another epoch gives the same utterance other crops
    plan = BatchPlan(dataset.labels, batch_size=2, seed=3)
    seeds = [{i: s for batch in plan.batches(epoch) for i, s in batch} for epoch in (0, 1)]
    assert seeds == [{i: s for batch in BatchPlan(dataset.labels, 2, seed=3).batches(e) for i, s in batch}
                     for e in (0, 1)]
    for i in set(seeds[0]) & set(seeds[1]):
        if dataset.utts[i] != "spkC-u1":  # a padded utterance has one crop only
            assert not torch.equal(dataset[(i, seeds[0][i])][0], dataset[(i, seeds[1][i])][0])


def test_crop_or_pad() -> None:
    feats = np.arange(10, dtype=np.float32)[:, None]
    rng = np.random.default_rng(0)
    starts = {int(crop_or_pad(feats, 4, rng)[0, 0]) for _ in range(200)}
    assert starts == set(range(7))  # every window, never past the end
    assert crop_or_pad(feats, 10, rng)[:, 0].tolist() == list(range(10))
    assert crop_or_pad(feats[:3], 7, rng)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]  # wrapped


def test_labels_follow_the_speakers(data_dir: Path) -> None:
    dataset = FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=30)
    assert dataset.spk2label == {"spkA": 0, "spkB": 1, "spkC": 2}  # C-sorted speakers by default
    assert dataset.labels.tolist() == [0, 0, 1, 2]
    for index, utt in enumerate(dataset.utts):
        assert dataset[(index, 0)][1] == dataset.spk2label[UTTS[utt][0]]

    given = {"spkC": 0, "spkA": 1, "spkB": 2, "spkZ": 3}  # e.g. the labels of a resumed checkpoint
    dataset = FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=30, spk2label=given)
    assert [dataset[(i, 0)][1] for i in range(len(dataset))] == [given[UTTS[u][0]] for u in dataset.utts]
    assert dataset.labels.tolist() == [1, 1, 2, 0]

    feats, labels = collate_crops([dataset[(i, 1)] for i in range(len(dataset))])
    assert feats.shape == (4, CROP, DIM) and labels.dtype == torch.long and labels.tolist() == [1, 1, 2, 0]


def test_without_vad_every_frame_counts(data_dir: Path) -> None:
    dataset = FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=30, use_vad=False)
    assert dataset.utts == list(UTTS)  # spkB-u2 has 40 frames in all
    index = dataset.utts.index("spkA-u1")
    np.testing.assert_array_equal(dataset.load_features(index), _features("spkA-u1", 120))


def test_bad_data_dirs_are_explained(data_dir: Path) -> None:
    with pytest.raises(DataDirError, match="speaker 'spkC' is not in the label set"):
        FeatureCropDataset(data_dir, crop_frames=CROP, spk2label={"spkA": 0, "spkB": 1})
    with pytest.raises(DataDirError, match="no utterance has at least 500"):
        FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=500)
    vad_scp = read_scp(data_dir / "vad.scp")
    del vad_scp["spkB-u1"]
    write_scp(data_dir / "vad.scp", vad_scp)
    with pytest.raises(DataDirError, match="no VAD entry") as info:
        FeatureCropDataset(data_dir, crop_frames=CROP)
    assert "spkB-u1" in str(info.value)
    write_scp(data_dir / "utt2spk", {"spkA-u1": "spkA"})
    with pytest.raises(DataDirError, match="has no speaker"):
        FeatureCropDataset(data_dir, crop_frames=CROP, use_vad=False)


def test_left_out_utterances_are_listed_with_their_reason(data_dir: Path) -> None:
    # the count and the list are the trainer's warning and file (tests/training/test_trainer.py)
    assert FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=30).dropped == {
        "spkB-u2": "too_few_voiced_frames 25<30"}
    assert FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=50, use_vad=False).dropped == {
        "spkB-u2": "too_few_frames 40<50", "spkC-u1": "too_few_frames 45<50"}
    assert FeatureCropDataset(data_dir, crop_frames=CROP, min_frames=20).dropped == {}
